import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST, fetched and verified by aelab's own chain (make test runs
    `aelab data mnist` first, so this is normally a cache hit)."""
    from aelab.data import ensure_dataset

    d = Path(os.environ.get("AELAB_DATA_DIR", ROOT / "data")).resolve()
    ensure_dataset("mnist", d)
    return d


@pytest.fixture(scope="session")
def seed_runs(tmp_path_factory, mnist_dir) -> dict:
    """Real one-epoch runs of both seed models on 256 images (seconds), at a learning rate
    high enough that the 4 steps already make input-dependent reconstructions; trained once
    per session for the serve, browser and export tests."""
    from aelab.config import TrainConfig
    from aelab.train import train

    root = tmp_path_factory.getbasetemp() / "seed-runs"
    for model in ("linear", "conv"):
        if not (root / model / "checkpoints" / "best.safetensors").is_file():
            cfg = TrainConfig(model=model, epochs=1, limit=256, lr=1e-2, device="cpu")
            train(cfg, root / model, data_dir=mnist_dir, log=lambda _msg: None, progress=False)
    return {m: root / m for m in ("linear", "conv")}


@contextmanager
def serve_process(runs, mnist_dir: Path, map_size: int):
    """`aelab serve RUNS` as a subprocess on 127.0.0.1, port 0 (a free one, read from its
    first line); yields its base URL and stops it after."""
    cmd = [sys.executable, "-m", "aelab", "serve", *map(str, runs), "--port", "0",
           "--map-size", str(map_size), "--data-dir", str(mnist_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert match, f"the server did not start: {line!r}"
        yield match.group(0)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
