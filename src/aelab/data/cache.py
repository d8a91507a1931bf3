"""The decoded-once cache of a dataset given by path: one safetensors file per dataset and
options, ``<data_dir>/cache/<name>-<hash>.safetensors``; also the file format of the
packaged datasets (packaged.py), and the test split carved from a dataset without one.

It holds uint8 images, (N, H, W) grey or (N, 3, H, W) colour, and int64 labels (N,) per
split, and in its metadata (key "aelab", JSON) a manifest of the source files (relative
path, size, mtime_ns, sha256) and the dataset's info (with its image_shape [C, H, W]). It is
valid while every source file keeps its size and mtime and no file came or went: checking
that costs a stat per file and reading the header, never a hash. A cache of another VERSION
(version 1: before image shapes, when image files were always fitted into 28x28) is not
read, so it is decoded again and overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save

from .._io import atomic_write_bytes
from ..errors import DataError
from .idx import _CHUNK

VERSION = 2
SPLITS = ("train", "test")
TEST_FRACTION = 1 / 6  # of a dataset without a test split, set aside as one


def cache_file(data_dir: Path, name: str, key: object) -> Path:
    """Where the cache of dataset `name` lives; `key` (JSON-able: the absolute path and the
    caller's options) picks one of several caches of the same name."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "dataset"
    return data_dir / "cache" / f"{safe}-{digest}.safetensors"


def stamps(root: Path, files) -> list[list]:
    """[relative path, size, mtime_ns] of each file, in order: what a valid cache matches."""
    out = []
    for path in files:
        try:
            st = path.stat()
        except OSError as e:
            raise DataError(f"{path}: cannot read it ({e.strerror or e}); fix or remove "
                            "the file") from None
        out.append([path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns])
    return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def manifest(now: list[list], hashes: dict[str, str], root: Path) -> list[dict]:
    """The manifest entries; files not hashed while decoding are hashed here."""
    return [{"path": rel, "size": size, "mtime_ns": mtime,
             "sha256": hashes.get(rel) or sha256_file(root / rel)} for rel, size, mtime in now]


def carve(n: int, seed: int) -> dict[str, np.ndarray]:
    """{"train": indices, "test": indices} of n images: TEST_FRACTION of them (at least 1),
    chosen by a permutation seeded with `seed`, go to the test split; both sorted, so each
    split keeps the images' order."""
    n_test = max(1, round(n * TEST_FRACTION))
    order = np.random.default_rng(seed).permutation(n)
    return {"train": np.sort(order[n_test:]), "test": np.sort(order[:n_test])}


def checksum(splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """16 hex of sha256 over the decoded tensors: the same data gives the same checksum,
    however and whenever it was decoded. The shapes are hashed too, so grey (N, H, W) and
    colour (N, 3, H, W) images never share one; for (N, 28, 28) it is what it always was."""
    h = hashlib.sha256()
    for split in SPLITS:
        images, labels = splits[split]
        h.update(f"{split} {images.shape} {labels.shape}\n".encode())
        h.update(np.ascontiguousarray(images, np.uint8).tobytes())
        h.update(np.ascontiguousarray(labels, "<i8").tobytes())
    return h.hexdigest()[:16]


def read_meta(path: Path) -> dict | None:
    """The metadata of a cache file, or None when it is missing, damaged or of another version."""
    try:
        with safe_open(str(path), framework="np") as f:
            meta = json.loads((f.metadata() or {})["aelab"])
    except (OSError, SafetensorError, ValueError, KeyError, TypeError):
        return None
    return meta if isinstance(meta, dict) and meta.get("version") == VERSION else None


def read_arrays(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """{split: (images, labels)} from a cache file, or None when it cannot be read."""
    try:
        arrays = load_file(str(path))
        return {s: (arrays[f"{s}.images"], arrays[f"{s}.labels"]) for s in SPLITS}
    except (OSError, SafetensorError, ValueError, KeyError):
        return None


def write(path: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], meta: dict, log) -> None:
    """Atomically write the cache; a folder that cannot be written only costs decoding again."""
    tensors = {}
    for split in SPLITS:
        images, labels = splits[split]
        tensors[f"{split}.images"] = np.ascontiguousarray(images, np.uint8)
        tensors[f"{split}.labels"] = np.ascontiguousarray(labels, np.int64)
    blob = save(tensors, metadata={"aelab": json.dumps({**meta, "version": VERSION})})
    try:
        atomic_write_bytes(path, blob)
    except OSError as e:
        log(f"cannot write the dataset cache {path} ({e}); it will be decoded again next time")


def remove(path: Path) -> None:
    """Drop a cache that no longer matches its sources (after a failed rebuild)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
