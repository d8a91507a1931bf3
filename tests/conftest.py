import os
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
