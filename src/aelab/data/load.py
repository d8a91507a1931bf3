"""load_dataset: a split of a dataset as tensors, after ensure_dataset has verified it.

Results are memoised per process (`_MEMO`), keyed by dataset, split and folder, and
reused only while both files keep their size, mtime and inode.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError
from .fetch import _ensure, ensure_dataset
from .idx import read_idx
from .registry import _get_spec

if TYPE_CHECKING:
    import torch

__all__ = ["load_dataset"]

_SPLITS = ("train", "test")


# (name, split, folder) -> (file stamps, (images, labels)); see load_dataset.
_MEMO: dict[tuple[str, str, str], tuple[tuple, tuple]] = {}


def _stamps(*paths: Path) -> tuple:
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_ino) for p in paths)


def load_dataset(name: str = "mnist", split: str = "train",
                 data_dir: str | os.PathLike | None = None,
                 **ensure_kw) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as one uint8 tensor (N, 28, 28) and labels as int64 (N,), after ensure_dataset.

    split: "train" (60,000 for MNIST) or "test" (10,000). ensure_kw go to ensure_dataset.
    Results are memoised per process while the files stay unchanged; the same tensors are
    returned each time, so treat them as read-only.
    """
    spec = _get_spec(name)
    if split not in _SPLITS:
        raise DataError(f"unknown split {split!r}: use 'train' or 'test'")
    # Bind against ensure_dataset so its defaults are the only ones, and typos raise TypeError.
    bound = inspect.signature(ensure_dataset).bind(name, data_dir, **ensure_kw)
    bound.apply_defaults()
    folder, paths = _ensure(**bound.arguments)
    img_path, lbl_path = paths[f"{split}-images"], paths[f"{split}-labels"]
    key, stamps = (spec.name, split, str(folder)), _stamps(img_path, lbl_path)
    memo = _MEMO.get(key)
    if memo is not None and memo[0] == stamps:
        return memo[1]
    import torch  # here, not at import time: torch is slow to import

    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or labels.shape != (len(images),):
        raise DataError(f"{img_path} and {lbl_path} do not match: images {images.shape}, "
                        f"labels {labels.shape}; run `aelab data {spec.name} --force`")
    result = (torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))
    _MEMO[key] = (stamps, result)
    return result
