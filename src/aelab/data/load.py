"""load_dataset and dataset_info: the way in to a dataset, by registered name or by path.

A fetched name (mnist, fashion-mnist) is made sure of by ensure_dataset, then its IDX
files are read; results are memoised per process (`_MEMO`), keyed by dataset, split and
folder, and reused only while both files keep their size, mtime and inode. A packaged name
(mnist-32, digits, ...) is built once into the data folder and read from there (packaged.py).

Images are uint8 in the dataset layout (shapes.py): (N, H, W) grey, (N, 3, H, W) colour;
every dataset_info says its image_shape, [C, H, W].

Anything else is a path, decoded by data/custom.py (cached and memoised there). That module
builds on this one, so this one cannot import it: it plugs its loader in here
(`_plug_path_loader`) when aelab.data is imported, which is before any caller gets here.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError
from .fetch import _ensure, _packaged, ensure_dataset, refetch_command
from .idx import read_idx
from .registry import PACKAGED, _get_spec, is_registered
from .registry import dataset_checksum as _registered_checksum

if TYPE_CHECKING:
    import torch

__all__ = ["dataset_checksum", "dataset_info", "load_dataset"]

_SPLITS = ("train", "test")


# (name, split, folder) -> (file stamps, (images, labels)); see load_dataset.
_MEMO: dict[tuple[str, str, str], tuple[tuple, tuple]] = {}

# "path" -> custom.open_path_dataset, set by _plug_path_loader.
_PLUGGED: dict[str, Callable] = {}


def _plug_path_loader(fn: Callable) -> None:
    _PLUGGED["path"] = fn


def _stamps(*paths: Path) -> tuple:
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_ino) for p in paths)


def _no_options(name: str, options) -> None:
    if options:
        raise DataError(f"{name}: options ({', '.join(map(str, options))}) are for datasets given "
                        "by path; a registered dataset takes none")


def load_dataset(name_or_path, split: str = "train",
                 data_dir: str | os.PathLike | None = None, *, options: dict | None = None,
                 log=print, **ensure_kw) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as one uint8 tensor, (N, H, W) grey (MNIST: (N, 28, 28)) or (N, 3, H, W)
    colour, and labels as int64 (N,).

    name_or_path: a registered name (after ensure_dataset), or the path of a dataset folder,
        .npz or .npy file (see data/custom.py; its labels are -1 when it has none). A
        registered name wins: write ./mnist for a folder of that name.
    split: "train" (60,000 for MNIST) or "test" (10,000).
    data_dir: where registered datasets live, and path datasets' caches (``cache/``).
    options: for a path only: transpose, split_seed, class_names, grey, resize, fit_mnist,
        layout (data/custom.py).
    log, ensure_kw: go to ensure_dataset; for a path, force=True rebuilds its cache.
    Results are memoised per process while the files stay unchanged; the same tensors are
    returned each time, so treat them as read-only.
    """
    if split not in _SPLITS:
        raise DataError(f"unknown split {split!r}: use 'train' or 'test'")
    # Bind against ensure_dataset so its defaults are the only ones, and typos raise TypeError.
    bound = inspect.signature(ensure_dataset).bind(name_or_path, data_dir, log=log, **ensure_kw)
    bound.apply_defaults()
    if not is_registered(name_or_path):
        _, tensors = _PLUGGED["path"](name_or_path, data_dir, options, log,
                                      force=bound.arguments["force"])
        return tensors[split]
    _no_options(name_or_path, options)
    if name_or_path in PACKAGED:
        return _packaged(**bound.arguments)[2][split]
    spec = _get_spec(name_or_path)
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
                        f"labels {labels.shape}; run `{refetch_command(spec.name, folder.parent)}`")
    result = (torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))
    _MEMO[key] = (stamps, result)
    return result


def dataset_info(name_or_path, data_dir: str | os.PathLike | None = None, *,
                 options: dict | None = None, log=print) -> dict:
    """What a run records about its data: name, path (None when registered), kind, checksum,
    n_train, n_test, class_names, has_labels, carved_test, conversions, options, and
    image_shape [C, H, W] ([1, 28, 28] for MNIST); a packaged dataset adds source, licence
    and built (how it was made).

    A fetched dataset's info comes from its spec (nothing is read or fetched); a packaged
    one is built first if need be, as a path's is decoded into its cache.
    """
    if not is_registered(name_or_path):
        info, _ = _PLUGGED["path"](name_or_path, data_dir, options, log, tensors=False)
        return info
    _no_options(name_or_path, options)
    if name_or_path in PACKAGED:
        bound = inspect.signature(ensure_dataset).bind(name_or_path, data_dir, log=log)
        bound.apply_defaults()  # ensure_dataset's defaults, for the datasets it is built from
        return _packaged(**bound.arguments, tensors=False)[1]
    spec = _get_spec(name_or_path)
    return {"name": spec.name, "path": None, "kind": "registered",
            "checksum": _registered_checksum(spec.name), "n_train": spec.file("train-images").count,
            "n_test": spec.file("test-images").count, "class_names": list(spec.class_names),
            "has_labels": True, "carved_test": None, "conversions": {}, "options": {},
            "image_shape": list(spec.image_shape)}


def dataset_checksum(name_or_path, data_dir: str | os.PathLike | None = None,
                     options: dict | None = None) -> str:
    """16 hex chars naming the content: for a fetched name, sha256 over its official file
    names and md5s; for a packaged name or a path, sha256 over its decoded tensors (see
    dataset_info)."""
    if is_registered(name_or_path) and name_or_path not in PACKAGED:
        _no_options(name_or_path, options)
        return _registered_checksum(name_or_path)
    return dataset_info(name_or_path, data_dir, options=options, log=None)["checksum"]
