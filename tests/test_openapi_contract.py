"""The JSON API keeps the contract its OpenAPI document states, as an outside client sees it:
schemathesis reads /openapi.json from a real `aelab serve` of a linear and a conv run (28x28
grey) beside a 1x8x8 grey and a 3x16x16 colour run (whose per-model and per-shape schemas
state their image lengths), sends
requests generated from it (valid ones, which must be accepted, and invalid ones, which must
be rejected with a documented 4xx) and checks every answer against the document: status
codes, content types, response bodies, Allow headers, no 5xx (`--checks all`).
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import serve_process
from test_samplers import prefit
from test_serve_shapes import train_shape_runs

pytest.importorskip("fastapi")
pytest.importorskip("schemathesis", reason="needs schemathesis (pip install -e '.[test]')")

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# Examples per operation: 50 give about 2,000 requests over the 13 operations and four models
# (~25 s on two busy cores); a run with 300 over the two seed models (about 3,000 requests)
# found nothing more. The seed makes the generated requests the same on every run.
MAX_EXAMPLES, SEED = 50, 20240601


@pytest.fixture(scope="module")
def api_url(seed_runs, mnist_dir, tmp_path_factory):
    """`aelab serve` of the linear and conv runs and test_serve_shapes' two runs of other
    shapes on 127.0.0.1 (conftest.serve_process), their fitted samplers saved beforehand
    (test_samplers.prefit): a first /api/sample would fit one for longer than schemathesis
    waits for an answer (10 s)."""
    runs = [seed_runs["linear"], seed_runs["conv"], *train_shape_runs(tmp_path_factory, mnist_dir).values()]
    prefit(runs, mnist_dir)
    with serve_process(runs, mnist_dir, 100) as url:
        yield url


@pytest.mark.slow
def test_the_api_keeps_its_openapi_contract(api_url, tmp_path):
    if not SCHEMATHESIS.is_file():
        pytest.skip(f"no schemathesis command beside {sys.executable}")
    cmd = [str(SCHEMATHESIS), "run", f"{api_url}openapi.json", "--checks", "all",
           "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
           "--workers", "1",  # 2 threads parse ASTs at once in hypothesis: CPython 3.11 errors
           "--generation-database", "none", "--wait-for-schema", "30", "--no-color"]
    # from an empty folder: no schemathesis.toml is read and nothing is written to the repo
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    report = out.stdout + out.stderr
    assert out.returncode == 0, report[-20_000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", report)
    assert cases and int(cases[1]) == int(cases[2]) >= 500, report[-3000:]  # every operation ran
    took = re.search(r"No issues found in ([\d.]+s)", report)
    print(f"schemathesis: {cases[0]}, in {took[1] if took else '?'}")
