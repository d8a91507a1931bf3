"""Every fenced Python block in README.md and docs/*.md runs as a reader would run it.

A page's blocks run in order in one namespace (a later block may use an earlier one's
names), in an empty working folder that holds what the docs name: the Quick start's run
folder `runs/conv13` (with its ONNX export) and MNIST through AELAB_DATA_DIR. A block whose
first line is a file name comment (`# mymodels.py`) is also written to that file, as the
page tells the reader to. Training is cut to 512 images (a fixture; the code is the page's
own), so the whole set takes seconds, not the minutes the full sizes would.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import aelab.train.trainer
from test_docs import PAGES as DOC_PAGES
from test_docs import ROOT, fenced_blocks

DOC_LIMIT = 512
FILE_COMMENT = re.compile(r"^#\s*([\w./-]+\.py)\s*$")


def python_blocks(page: Path) -> list[tuple[int, str]]:
    text = page.read_text(encoding="utf-8")
    lines = text.splitlines()
    return [(start, "\n".join(body)) for start, body in fenced_blocks(text)
            if lines[start - 2].strip().lower() in ("```python", "```py")]


PAGES = [p for p in DOC_PAGES if python_blocks(p)]


@pytest.fixture(scope="module")
def docs_folder(tmp_path_factory, mnist_dir) -> Path:
    """A working folder with the run the docs call runs/conv13, exported to ONNX."""
    from aelab.apps.export import export_onnx

    root = tmp_path_factory.mktemp("docs-python")
    cfg = aelab.TrainConfig(model="conv", epochs=1, limit=DOC_LIMIT, device="cpu")
    aelab.train(cfg, root / "runs" / "conv13", data_dir=mnist_dir, log=lambda _m: None,
                progress=False)
    export_onnx(root / "runs" / "conv13")
    return root


@pytest.fixture
def small_training(monkeypatch):
    """Training as the page writes it, on DOC_LIMIT images."""
    real = aelab.train.trainer.Trainer.__init__

    def init(self, config, *args, **kw):
        if config.limit is None or config.limit > DOC_LIMIT:
            config = config.replace(limit=DOC_LIMIT)
        real(self, config, *args, **kw)

    monkeypatch.setattr(aelab.train.trainer.Trainer, "__init__", init)


def test_python_blocks_were_found():
    assert any(p.name == "README.md" for p in PAGES) and len(PAGES) >= 3


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_python_blocks_run(page, docs_folder, mnist_dir, small_training, monkeypatch):
    monkeypatch.chdir(docs_folder)
    monkeypatch.setenv("AELAB_DATA_DIR", str(mnist_dir))
    monkeypatch.syspath_prepend(str(docs_folder))  # `import mymodels` finds the page's file
    namespace: dict = {"__name__": "__docs__"}
    for start, code in python_blocks(page):
        first = code.splitlines()[0] if code else ""
        if m := FILE_COMMENT.match(first):
            (docs_folder / m.group(1)).write_text(code + "\n")
        try:
            exec(compile(code, f"{page.name}:{start}", "exec"), namespace)
        except Exception as e:
            pytest.fail(f"{page.name}, the Python block at line {start} failed: "
                        f"{type(e).__name__}: {e}")
