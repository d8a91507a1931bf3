"""The benchmarks run, at tiny sizes, and print their tables (their figures come from full
runs, quoted in the docs with the CPU they ran on)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_library_speed_prints_its_comparison(mnist_dir):
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "library_speed.py"), "--pairs", "1",
                        "--epochs", "2", "--limit", "512", "--data-dir", str(mnist_dir)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [line for line in p.stdout.splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| library", "| cli", "| library, no flush"]
    assert "CPU: " in p.stdout and "target (" in p.stdout
    assert "| yes |" in rows[1]  # the caller's flush setting is given back
