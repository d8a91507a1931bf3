"""The benchmarks run, at tiny sizes, and print their tables (their figures come from full
runs, quoted in the docs with the CPU they ran on)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    # one thread: on a shared CPU, threads waiting for a core make these tiny runs crawl
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                          capture_output=True, text=True, timeout=300, env=env)


def _table(stdout: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the one Markdown table a benchmark prints, as cells."""
    lines = [line.strip() for line in stdout.splitlines() if line.startswith("|")]
    assert len(lines) >= 3, stdout
    header, rule, *rows = ([c.strip() for c in line[1:-1].split("|")] for line in lines)
    assert all(set(c) <= set("-:") for c in rule), lines[1]
    assert all(len(r) == len(header) for r in rows), stdout  # a failed row has its own shape
    return header, rows


def _number(cell: str) -> float:
    return float(cell.replace(",", "").replace("*", "").rstrip("x"))


@pytest.mark.slow
def test_conv_layers_prints_each_layer(mnist_dir):
    p = _run("conv_layers.py", "--rounds", "1", "--steps", "2", "--data-dir", str(mnist_dir))
    assert p.returncode == 0, p.stderr[-2000:]
    header, rows = _table(p.stdout)
    assert header == ["layer", "aelab op", "aelab ms", "oneDNN ms", "oneDNN / aelab"]
    assert [r[0].split()[0] for r in rows[:-1]] == [str(i) for i in range(len(rows) - 1)]
    assert rows[-1][0] == "all layers, forward + backward"
    assert all(_number(c) > 0 for r in rows for c in r[2:])


@pytest.mark.slow
def test_train_throughput_prints_its_comparison(mnist_dir):
    p = _run("train_throughput.py", "--pairs", "1", "--limit", "256", "--models", "linear",
             "--data-dir", str(mnist_dir))
    assert p.returncode == 0, p.stderr[-2000:]
    header, rows = _table(p.stdout)
    assert header[:3] == ["model", "seed pipeline img/s", "aelab img/s"]
    assert [r[0] for r in rows] == ["linear"]
    assert _number(rows[0][1]) > 0 and _number(rows[0][2]) > 0


@pytest.mark.slow
def test_serve_load_prints_each_scenario(mnist_dir):
    p = _run("serve_load.py", "--requests", "20", "--clients", "2", "--warmup", "2",
             "--data-dir", str(mnist_dir))
    assert p.returncode in (0, 1), p.stderr[-2000:]  # 1: a latency target missed on a busy CPU
    header, rows = _table(p.stdout)
    assert header[:4] == ["endpoint", "model", "requests", "server p50"]
    assert [tuple(r[:3]) for r in rows] == [("decode", "conv", "5"), ("decode", "linear", "5"),
                                            ("reconstruct", "conv", "5"), ("reconstruct", "linear", "5")]
    assert "errors" not in p.stdout and "server resident memory:" in p.stdout
    assert re.search(r"^targets \(.*\): (met|MISSED)$", p.stdout, re.M)


@pytest.mark.slow
def test_gpu_train_dry_run_on_the_cpu_prints_its_table_and_profile(mnist_dir):
    p = _run("gpu_train.py", "--device", "cpu", "--epochs", "2", "--limit", "128",
             "--variants", "eager", "bf16", "--profile-steps", "3", "--data-dir", str(mnist_dir))
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    header, rows = _table(p.stdout)
    assert header[:4] == ["model", "variant", "step", "train s (sum of epochs)"]
    assert [tuple(r[:2]) for r in rows] == [("linear", "eager"), ("linear", "bf16"),
                                            ("conv", "eager"), ("conv", "bf16")]
    assert {r[2] for r in rows} <= {"fused-dense", "fused-conv", "autograd"}
    assert [r[4] for r in rows if r[1] == "eager"] == ["1.00", "1.00"]
    assert all(_number(c) >= 0 for r in rows for c in r[3:])  # figures, not errors
    assert all(_number(r[7]) > 0 and 0 < _number(r[8]) < 1 for r in rows)  # img/s, test MSE
    profiles = re.findall(r"^(linear|conv)/(eager|bf16): 3 steps in ", p.stdout, re.M)
    assert [m[0] for m in profiles] == ["linear", "conv"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible")
def test_gpu_train_without_a_gpu_says_so():
    p = _run("gpu_train.py")
    assert p.returncode == 1
    assert "--device cuda: no CUDA GPU is visible" in p.stderr and "Traceback" not in p.stderr


def test_trainer_prepare_sets_up_a_run_and_releases_its_folder(mnist_dir, tmp_path):
    """The public set-up gpu_train.py profiles with: data, model, step; then train_epoch."""
    import aelab

    cfg = aelab.TrainConfig(model="linear", epochs=1, limit=128, device="cpu")
    t = aelab.Trainer(cfg, tmp_path / "run", data_dir=mnist_dir, log=lambda _m: None,
                      progress=False)
    assert t.prepare() == 1
    assert [f.name for f in (tmp_path / "run").iterdir()] == ["config.json"]  # no lock left
    assert t.choice.record()["step"] == "fused-dense"
    assert 0 < t.train_epoch(1) < 1
    failing = aelab.Trainer(cfg.replace(model_args={"bogus": 1}), tmp_path / "new",
                            data_dir=mnist_dir, log=lambda _m: None, progress=False)
    with pytest.raises(aelab.AelabError, match="bogus"):
        failing.prepare()
    assert not (tmp_path / "new").exists()  # made for the lock, then removed


@pytest.mark.slow
def test_families_prints_every_family_beside_conv(mnist_dir):
    p = _run("families.py", "--pairs", "1", "--limit", "128", "--families", "vae",
             "--data-dir", str(mnist_dir))
    assert p.returncode == 0, p.stderr[-2000:]
    assert "CPU: " in p.stdout
    header, rows = _table(p.stdout)
    assert header == ["model", "img/s", "/ conv (autograd)", ">= 10,000"]
    assert [r[0] for r in rows] == ["conv (hand-written step)", "conv (autograd)", "vae"]
    assert rows[1][2] == "1.00x" and rows[2][3] in ("yes", "no")
    assert all(_number(r[1]) > 0 for r in rows)
