"""`aelab train --tensorboard`: RUN_DIR/tensorboard/ event files, step = epoch number.

Per epoch: the mean training loss and each of its terms (metrics.jsonl's `loss_<term>`, as
`loss/train_<term>`: a VAE's recon and kl), test (and val) MSE, the learning rate at the end
of the epoch and images/s; at figure epochs, the reconstruction PNG the trainer drew. The
`tensorboard` package is optional (pip install 'aelab[tensorboard]') and slow to import,
so it is imported only when asked for. Only rank 0 writes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._io import make_dirs
from ..errors import AelabError

MISSING = ("--tensorboard needs the tensorboard package: pip install 'aelab[tensorboard]' "
           "(or pip install tensorboard)")
# metrics.jsonl key -> TensorBoard tag (the part before "/" groups the charts)
SCALARS = {"train_loss": "loss/train", "test_mse": "mse/test", "val_mse": "mse/val",
           "images_per_second": "speed/images_per_second"}
LR_TAG = "optim/lr"
TERM_PREFIX = "loss_"  # metrics.jsonl's loss_<term> -> "loss/train_<term>", beside loss/train


def term_tag(key: str) -> str:
    """The TensorBoard tag of a loss term's metrics.jsonl key: "loss_kl" -> "loss/train_kl"."""
    return "loss/train_" + key.removeprefix(TERM_PREFIX)


def summary_writer_class():
    """torch's SummaryWriter, or an AelabError saying how to install it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise AelabError(MISSING) from None
    return SummaryWriter


class TensorBoardLog:
    """Writes into `folder`. The SummaryWriter (which makes the folder) starts at the first
    write, with purge_step = that epoch: a resumed run appends to the same folder, and
    TensorBoard drops anything an interrupted session had logged from that epoch on."""

    def __init__(self, folder: Path, writer_class):
        self.folder = Path(folder)
        self._writer_class = writer_class
        self._writer = None

    def _open(self, epoch: int):
        if self._writer is None:
            make_dirs(self.folder)
            self._writer = self._writer_class(log_dir=str(self.folder), purge_step=epoch)
        return self._writer

    def epoch(self, record: dict, lr: float) -> None:
        """One metrics.jsonl record (its "epoch" is the step) and the learning rate."""
        step = int(record["epoch"])
        w = self._open(step)
        for key, tag in SCALARS.items():
            if key in record:
                w.add_scalar(tag, float(record[key]), step)
        for key in record:
            if key.startswith(TERM_PREFIX):
                w.add_scalar(term_tag(key), float(record[key]), step)
        w.add_scalar(LR_TAG, float(lr), step)
        w.flush()  # each epoch visible at once, and kept if the run is killed

    def image(self, tag: str, image: str | os.PathLike | np.ndarray, epoch: int) -> None:
        """A PNG file, or an array (H, W), (H, W, C) with C in 1/3/4, or (C, H, W)."""
        if isinstance(image, (str, os.PathLike)):
            image = _read_png(image)
        image = np.asarray(image)
        if image.ndim == 2:
            formats = "HW"
        elif image.shape[-1] in (1, 3, 4):
            formats = "HWC"
        else:
            formats = "CHW"
        w = self._open(epoch)
        w.add_image(tag, image, epoch, dataformats=formats)
        w.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class NoLog:
    """Without --tensorboard, and on ranks other than 0: every call does nothing."""

    def epoch(self, record: dict, lr: float) -> None:
        pass

    def image(self, tag: str, image, epoch: int) -> None:
        pass

    def close(self) -> None:
        pass


def open_log(run_dir: Path, enabled: bool, is_main: bool) -> TensorBoardLog | NoLog:
    """Checks for the package on every rank (so all stop together, before training) but
    writes nothing yet: a missing package leaves no run folder behind."""
    if not enabled:
        return NoLog()
    writer_class = summary_writer_class()
    return TensorBoardLog(Path(run_dir) / "tensorboard", writer_class) if is_main else NoLog()


def _read_png(path: str | os.PathLike) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))  # (H, W, 3) uint8
