"""Datasets given by a PATH instead of a registered name; load_dataset and dataset_info
come here for anything that is not a registered name.

What a path may be (its "kind"):

- "idx": a folder of IDX files under the MNIST names, ``train-images-idx3-ubyte[.gz]``,
  ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``,
  ``t10k-labels-idx1-ubyte[.gz]``, optionally all with one prefix (EMNIST's
  ``emnist-digits-train-images-...``; QMNIST's ``test-`` names and ``labels-idx2-int``,
  whose first column is the class);
- "npz": a .npz file with x_train and optionally y_train, x_test, y_test (Keras' mnist.npz);
- "npz-pairs": a folder of ``<prefix>-{train,test}-{imgs,labels}.npz``, each holding arr_0
  (KMNIST);
- "image-folder": PNG/JPEG/BMP files in class folders, ``train/<class>/`` and
  ``test/<class>/``, or class folders at the top; class names are the folder names,
  sorted, labels 0..K-1 in that order;
- "flat-images": image files without labels, at the top or in ``train/`` and ``test/``.

Labels and the test split are optional: a dataset without labels gets labels of -1; one
without a test split has 1/6 of its images carved out as one, chosen by `split_seed`.
Options (the caller's `options`, over an ``aelab-dataset.json`` card beside the files,
over the defaults): transpose (EMNIST stores its images transposed), split_seed,
class_names. The decoded dataset is cached (cache.py) and memoised per process.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import json
import os
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import cache
from .idx import read_idx
from .images import CONVERSIONS, IMAGE_SUFFIXES, SIZE, decode_digit, describe_conversions
from .load import _plug_path_loader
from .registry import DATASETS, default_data_dir

__all__ = ["CARD", "TEST_FRACTION", "open_path_dataset"]

CARD = "aelab-dataset.json"
TEST_FRACTION = 1 / 6
_DEFAULTS = {"transpose": False, "split_seed": 0}

# option -> what is wrong with a value, or None when it is fine
_OPTIONS = {
    "transpose": lambda v: None if isinstance(v, bool) else "must be true or false",
    "split_seed": lambda v: (None if isinstance(v, int) and not isinstance(v, bool) and v >= 0
                             else "must be a whole number >= 0"),
    "class_names": lambda v: (None if isinstance(v, list) and v and len(set(v)) == len(v)
                              and all(isinstance(n, str) for n in v)
                              else "must be a non-empty list of distinct strings"),
}

# role -> the file-name endings that play it (with one prefix shared by all the files)
_IDX_ROLES = {
    "train-images": ("train-images-idx3-ubyte",),
    "train-labels": ("train-labels-idx1-ubyte", "train-labels-idx2-int"),
    "test-images": ("t10k-images-idx3-ubyte", "test-images-idx3-ubyte"),
    "test-labels": ("t10k-labels-idx1-ubyte", "test-labels-idx1-ubyte", "t10k-labels-idx2-int",
                    "test-labels-idx2-int"),
}
_PAIR_ROLES = {
    "train-images": ("-train-imgs.npz",),
    "train-labels": ("-train-labels.npz",),
    "test-images": ("-test-imgs.npz",),
    "test-labels": ("-test-labels.npz",),
}

# Shapes an array of images may have, as (N, 28, 28) after a reshape.
_IMAGE_SHAPES = ((SIZE, SIZE), (SIZE * SIZE,), (SIZE, SIZE, 1), (1, SIZE, SIZE))


def _quiet(_msg: str) -> None:
    pass


# --------------------------------------------------------------------------- options


def _check_options(options, where: str) -> dict:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise DataError(f"{where}: options must be a dict such as {{'transpose': True}}, "
                        f"not {type(options).__name__}")
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise DataError(f"{where}: unknown option(s) {', '.join(map(str, unknown))}; the options "
                        f"are {', '.join(sorted(_OPTIONS))}")
    for key, value in options.items():
        problem = _OPTIONS[key](value)
        if problem:
            raise DataError(f"{where}: option {key}={value!r} {problem}")
    return dict(options)


def _read_card(root: Path) -> dict:
    path = root / CARD
    if not path.is_file():
        return {}
    try:
        card = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable JSON card ({e}); fix it or delete it") from None
    if not isinstance(card, dict):
        raise DataError(f'{path}: must hold a JSON object such as {{"transpose": true}}; fix it '
                        "or delete it")
    return _check_options(card, str(path))


# --------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class _Layout:
    """What a path holds: its kind and the files the build will read."""

    kind: str
    root: Path  # the card lives here; manifest paths are relative to it
    files: dict[str, Path] = field(default_factory=dict)  # role ("train-images", "npz") -> file
    images: dict[str, list[tuple[Path, int]]] = field(default_factory=dict)  # split -> [(file, label)]
    class_names: tuple[str, ...] = ()

    def sources(self) -> list[Path]:
        """Every file a build reads (the card too), sorted: the cache's manifest."""
        paths = [*self.files.values(), *(p for items in self.images.values() for p, _ in items)]
        card = self.root / CARD
        return sorted([*paths, card] if card.is_file() else paths)


def _not_a_dataset(path: Path) -> DataError:
    return DataError(f"{path}: not a dataset: found no IDX files (train-images-idx3-ubyte[.gz]), "
                     "no .npz pairs (*-train-imgs.npz) and no PNG/JPEG/BMP images, neither at "
                     "the top nor in class folders; give such a folder, or a .npz file")


def _find_layout(given, path: Path) -> _Layout:
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return _Layout("npz", path.parent, files={"npz": path})
        raise DataError(f"{path}: not a dataset file: give a .npz file (x_train, y_train, x_test, "
                        "y_test) or a folder of IDX files, .npz pairs or images")
    if not path.is_dir():
        raise DataError(f"{given}: not a registered dataset ({', '.join(DATASETS)}) and no such "
                        f"file or folder ({path}); give one of those names or an existing path")
    for probe in (_probe_idx, _probe_pairs, _probe_images):
        layout = probe(path)
        if layout is not None:
            return layout
    raise _not_a_dataset(path)


def _match_roles(folder: Path, roles: dict, strip_gz: bool) -> dict[str, Path] | None:
    """role -> file for the files of `folder` that end as `roles` says, all with one prefix;
    None when no file plays "train-images". A .gz wins over the same name uncompressed."""
    names: dict[str, str] = {}  # name without .gz -> the name on disk
    for entry in _entries(folder):
        if entry.is_file():
            stem = entry.name.removesuffix(".gz") if strip_gz else entry.name
            if stem not in names or entry.name.endswith(".gz"):
                names[stem] = entry.name
    prefixes = {stem[: -len(end)] for stem in names for end in roles["train-images"]
                if stem.endswith(end)}
    if not prefixes:
        return None
    if len(prefixes) > 1:
        shown = ", ".join(repr(p) for p in sorted(prefixes))
        raise DataError(f"{folder}: holds {len(prefixes)} datasets (file-name prefixes {shown}); "
                        "put each set of files in a folder of its own")
    prefix = prefixes.pop()
    found = {}
    for role, ends in roles.items():
        hits = [names[prefix + end] for end in ends if prefix + end in names]
        if hits:
            found[role] = folder / hits[0]
    return _check_roles(found)


def _check_roles(found: dict[str, Path]) -> dict[str, Path]:
    if "test-labels" in found and "test-images" not in found:
        raise DataError(f"{found['test-labels']}: test labels without a test images file; add "
                        "the test images or remove this file")
    if "test-images" in found and ("train-labels" in found) != ("test-labels" in found):
        bare = found["test-images"] if "train-labels" in found else found["train-images"]
        raise DataError(f"{bare}: has no labels file beside it, while the other split has one; "
                        "add its labels file, or remove the other one to use no labels")
    return found


def _probe_idx(folder: Path) -> _Layout | None:
    found = _match_roles(folder, _IDX_ROLES, strip_gz=True)
    return None if found is None else _Layout("idx", folder, files=found)


def _probe_pairs(folder: Path) -> _Layout | None:
    found = _match_roles(folder, _PAIR_ROLES, strip_gz=False)
    return None if found is None else _Layout("npz-pairs", folder, files=found)


def _entries(folder: Path) -> list[os.DirEntry]:
    """The folder's entries, sorted by name, without hidden ones; a link that loops or a
    broken link to an image is an error naming the link."""
    try:
        with os.scandir(folder) as it:
            entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as e:
        raise DataError(f"{folder}: cannot list the folder ({e.strerror or e}); check its "
                        "permissions") from None
    for entry in entries:
        if entry.is_symlink() and not os.path.exists(entry.path):
            try:
                os.stat(entry.path)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise DataError(f"{entry.path}: a symbolic link loop; remove the link") from None
                if _is_image_name(entry.name):
                    raise DataError(f"{entry.path}: a broken symbolic link (to "
                                    f"{os.readlink(entry.path)}); fix or remove it") from None
    return entries


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _enter(folder: Path, seen: set[str]) -> None:
    """Note a folder about to be walked; walking into one already walked is a link loop."""
    real = os.path.realpath(folder)
    if real in seen:
        raise DataError(f"{folder}: a symbolic link back to {real}, a folder already read (a "
                        "loop, or a second way into the same images); remove the link")
    seen.add(real)


def _walk_images(folder: Path, seen: set[str]) -> list[Path]:
    """Image files under `folder` at any depth, sorted, following links but never in circles."""
    out = []
    for entry in _entries(folder):
        path = Path(entry.path)
        if entry.is_dir():
            _enter(path, seen)
            out += _walk_images(path, seen)
        elif _is_image_name(entry.name) and entry.is_file():
            out.append(path)
    return out


def _scan(top: Path, seen: set[str]) -> tuple[dict[str, list[Path]], list[Path]]:
    """(class folder name -> its images, loose images) of one split's folder."""
    _enter(top, seen)
    classes, loose = {}, []
    for entry in _entries(top):
        if entry.is_dir():
            _enter(Path(entry.path), seen)
            classes[entry.name] = _walk_images(Path(entry.path), seen)
        elif _is_image_name(entry.name) and entry.is_file():
            loose.append(Path(entry.path))
    if any(classes.values()):
        if loose:
            raise DataError(f"{loose[0]}: an image outside the class folders of {top}; move it "
                            "into a class folder or remove it")
        empty = [name for name, files in classes.items() if not files]
        if empty:
            raise DataError(f"{top / empty[0]}: a class folder without PNG/JPEG/BMP images (its "
                            "label would shift the others'); add images or remove it")
        return classes, []
    return {}, loose


def _probe_images(folder: Path) -> _Layout | None:
    seen: set[str] = set()
    if (folder / "train").is_dir():
        tops = {s: folder / s for s in cache.SPLITS if (folder / s).is_dir()}
        seen.add(os.path.realpath(folder))
    else:
        tops = {"train": folder}
    scans = {split: _scan(top, seen) for split, top in tops.items()}
    for split, (classes, loose) in scans.items():
        if not classes and not loose:
            if tops[split] == folder:
                return None
            raise DataError(f"{tops[split]}: the {split} split has no PNG/JPEG/BMP images; add "
                            "some, or remove the folder" + (" (a test split is then carved)"
                                                            if split == "test" else ""))
    labelled = {split: bool(classes) for split, (classes, _) in scans.items()}
    if len(set(labelled.values())) > 1:
        raise DataError(f"{folder}: train/ and test/ must both have class folders or both have "
                        "the images directly; move the images so that they agree")
    names = sorted({name for classes, _ in scans.values() for name in classes})
    index = {name: i for i, name in enumerate(names)}
    images = {split: ([(p, index[c]) for c, files in classes.items() for p in files]
                      if classes else [(p, -1) for p in loose])
              for split, (classes, loose) in scans.items()}
    kind = "image-folder" if names else "flat-images"
    return _Layout(kind, folder, images=images, class_names=tuple(names))


# --------------------------------------------------------------------------- decoding


def _as_images(arr: np.ndarray, what: str) -> np.ndarray:
    """Any (N, 28, 28)-like array of whole numbers 0..255 -> uint8 (N, 28, 28); else DataError."""
    if arr.dtype.kind == "f":
        nan = " and contain NaN" if np.isnan(arr).any() else ""
        raise DataError(f"{what}: the images are {arr.dtype}{nan}; only uint8 pixels (0..255) are "
                        "read, since floats are ambiguous (0..1 or 0..255?): save "
                        "(x * 255).round().astype(np.uint8) for values in 0..1")
    if arr.dtype.kind not in "iu":
        raise DataError(f"{what}: the images are {arr.dtype}; only uint8 pixels (0..255) are read")
    if arr.size and arr.dtype != np.uint8 and (arr.min() < 0 or arr.max() > 255):
        raise DataError(f"{what}: {arr.dtype} pixels from {arr.min()} to {arr.max()}, outside "
                        "0..255; only uint8 pixels (0..255) are read: scale them and save as uint8")
    if arr.ndim < 1 or len(arr) == 0:
        raise DataError(f"{what}: no images (shape {arr.shape}); an empty split cannot be used")
    if arr.shape[1:] not in _IMAGE_SHAPES:
        raise DataError(f"{what}: images of shape {arr.shape}, expected (N, 28, 28) or (N, 784); "
                        "resize them, or save them as image files (those are fitted into 28x28)")
    return arr.astype(np.uint8, copy=False).reshape(-1, SIZE, SIZE)


def _as_labels(arr: np.ndarray, n: int, what: str, images_what: str) -> np.ndarray:
    if arr.ndim == 2 and arr.shape[1] >= 1:
        arr = arr[:, 0]  # QMNIST's extended labels: the class comes first
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise DataError(f"{what}: labels must be whole numbers in one column, got {arr.dtype} of "
                        f"shape {arr.shape}")
    if len(arr) != n:
        raise DataError(f"{what}: {len(arr)} labels for the {n} images of {images_what}; there "
                        "must be one label per image: give a matching pair of files")
    if n and arr.min() < 0:
        raise DataError(f"{what}: negative label {arr.min()}; labels must be 0..K-1")
    return arr.astype(np.int64)


def _open_npz(path: Path):
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable NumPy .npz archive ({e}); replace it with a "
                        "good copy") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: a single .npy array, not a .npz archive of named arrays; save "
                        "it with np.savez(path, x_train=..., y_train=...)")
    return z


def _member(z, key: str, path: Path) -> np.ndarray:
    try:
        return z[key]
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise DataError(f"{path}: {key} holds Python objects (dtype=object), which are never "
                            "loaded (that would mean unpickling); save it as a uint8 array") from None
        raise DataError(f"{path}: cannot read {key} ({e}); replace the file") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{path}: cannot read {key}, the file is truncated or damaged ({e}); "
                        "replace it with a good copy") from None


def _read_pair_file(path: Path) -> np.ndarray:
    with _open_npz(path) as z:
        if "arr_0" in z.files or len(z.files) == 1:
            return _member(z, "arr_0" if "arr_0" in z.files else z.files[0], path)
        raise DataError(f"{path}: holds {len(z.files)} arrays ({', '.join(z.files)}) but no arr_0; "
                        "a *-imgs.npz or *-labels.npz file holds one array")


def _build_files(layout: _Layout, read) -> dict:
    """IDX or .npz-pair files -> {split: (images, labels or None)}."""
    out = {}
    for split in cache.SPLITS:
        img, lbl = layout.files.get(f"{split}-images"), layout.files.get(f"{split}-labels")
        if img is None:
            continue
        images = _as_images(read(img), str(img))
        labels = None if lbl is None else _as_labels(read(lbl), len(images), str(lbl), str(img))
        out[split] = (images, labels)
    return out


def _build_idx(layout: _Layout, hashes: dict, counts: Counter) -> dict:
    return _build_files(layout, read_idx)


def _build_pairs(layout: _Layout, hashes: dict, counts: Counter) -> dict:
    return _build_files(layout, _read_pair_file)


def _build_npz(layout: _Layout, hashes: dict, counts: Counter) -> dict:
    path = layout.files["npz"]
    with _open_npz(path) as z:
        keys = set(z.files)
        if "x_train" not in keys:
            held = ", ".join(sorted(keys)) or "nothing"
            raise DataError(f"{path}: no x_train array (it holds {held}); a dataset .npz holds "
                            "x_train, and optionally y_train, x_test, y_test")
        if "y_test" in keys and "x_test" not in keys:
            raise DataError(f"{path}: y_test without x_test; add x_test or remove y_test")
        if "x_test" in keys and ("y_train" in keys) != ("y_test" in keys):
            raise DataError(f"{path}: labels for one split only (y_train and y_test go together); "
                            "add the missing one or remove the other")
        out = {}
        for split in cache.SPLITS:
            if f"x_{split}" in keys:
                images = _as_images(_member(z, f"x_{split}", path), f"{path} (x_{split})")
                labels = (_as_labels(_member(z, f"y_{split}", path), len(images),
                                     f"{path} (y_{split})", f"x_{split}")
                          if f"y_{split}" in keys else None)
                out[split] = (images, labels)
    return out


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e}); fix or remove the file") from None


def _build_images(layout: _Layout, hashes: dict, counts: Counter) -> dict:
    """Image files -> {split: (uint8 (N, 28, 28), labels or None)}; counts the conversions."""
    out = {}
    for split, items in layout.images.items():
        images = np.empty((len(items), SIZE, SIZE), np.uint8)
        for i, (path, _) in enumerate(items):
            blob = _read_bytes(path)
            hashes[path.relative_to(layout.root).as_posix()] = hashlib.sha256(blob).hexdigest()
            images[i], done = decode_digit(blob, path)
            counts.update(done)
        labels = np.array([label for _, label in items], np.int64)
        out[split] = (images, labels if layout.kind == "image-folder" else None)
    return out


_BUILDERS = {"idx": _build_idx, "npz": _build_npz, "npz-pairs": _build_pairs,
             "image-folder": _build_images, "flat-images": _build_images}


def _carve(train: tuple, seed: int, where: Path) -> tuple[dict, dict]:
    """Set 1/6 of the images (at least 1) aside as the test split, chosen by `seed`; each
    split keeps the images' order."""
    x, y = train
    if len(x) < 2:
        raise DataError(f"{where}: {len(x)} image only, and no test split; carving one needs at "
                        "least 2 images")
    n_test = max(1, round(len(x) * TEST_FRACTION))
    order = np.random.default_rng(seed).permutation(len(x))
    picks = {"train": np.sort(order[n_test:]), "test": np.sort(order[:n_test])}
    splits = {s: (x[idx], None if y is None else y[idx]) for s, idx in picks.items()}
    return splits, {"fraction": TEST_FRACTION, "seed": seed, "n": n_test}


def _class_names(layout: _Layout, opts: dict, splits: dict, has_labels: bool) -> list[str]:
    given = opts.get("class_names")
    if not has_labels:
        if given:
            raise DataError(f"{layout.root}: class_names given, but the dataset has no labels; "
                            "remove class_names or add labels")
        return []
    top = max(int(y.max()) for _, y in splits.values())
    if given and layout.class_names and len(given) != len(layout.class_names):
        raise DataError(f"{layout.root}: class_names has {len(given)} names for "
                        f"{len(layout.class_names)} class folders; give one name per folder")
    names = list(given or layout.class_names or [str(k) for k in range(top + 1)])
    if len(names) <= top:
        raise DataError(f"{layout.root}: labels go up to {top} but class_names has {len(names)} "
                        "names; give one name per label 0..K-1")
    return names


def _build(layout: _Layout, caller: dict, name: str, src: Path, log) -> tuple[dict, dict, dict]:
    """Decode a dataset: ({split: (images, labels)}, info, {relative path: sha256})."""
    opts = {**_DEFAULTS, **_read_card(layout.root), **caller}
    hashes: dict[str, str] = {}
    counts: Counter = Counter()
    raw = _BUILDERS[layout.kind](layout, hashes, counts)
    if opts["transpose"]:  # (N, H, W) -> (N, W, H)
        raw = {s: (np.ascontiguousarray(x.transpose(0, 2, 1)), y) for s, (x, y) in raw.items()}
    has_labels = all(y is not None for _, y in raw.values())
    carved = None
    if "test" not in raw:
        raw, carved = _carve(raw["train"], opts["split_seed"], src)
    splits = {s: (x, y if y is not None else np.full(len(x), -1, np.int64))
              for s, (x, y) in raw.items()}
    info = {"name": name, "path": str(src), "kind": layout.kind, "checksum": cache.checksum(splits),
            "n_train": len(splits["train"][0]), "n_test": len(splits["test"][0]),
            "class_names": _class_names(layout, opts, splits, has_labels), "has_labels": has_labels,
            "carved_test": carved, "conversions": {k: counts.get(k, 0) for k in CONVERSIONS},
            "options": opts}
    if describe_conversions(counts):
        log(f"{name}: {describe_conversions(counts)}")
    if carved:
        log(f"{name}: no test split, so {carved['n']} of the {len(raw['train'][0]) + carved['n']} "
            f"images were set aside as one (1/6, split_seed {carved['seed']})")
    return splits, info, hashes


# --------------------------------------------------------------------------- the way in


# (path, caller's options, cache file) -> (source stamps, info, {split: tensors} or None)
_MEMO: dict[tuple[str, str, str], tuple[list, dict, dict | None]] = {}


def _to_torch(splits: dict) -> dict:
    import torch  # here, not at import time: torch is slow to import

    return {s: (torch.from_numpy(x), torch.from_numpy(y)) for s, (x, y) in splits.items()}


def _from_cache(file: Path, src: Path, caller: dict, now: list, tensors: bool):
    """(info, tensors or None) from a cache file that matches the sources now; else None."""
    meta = cache.read_meta(file)
    if meta is None or meta.get("path") != str(src) or meta.get("options") != caller:
        return None
    try:
        if [[m["path"], m["size"], m["mtime_ns"]] for m in meta["manifest"]] != now:
            return None
    except (KeyError, TypeError):
        return None  # a damaged manifest: decode again
    if not tensors:
        return meta["info"], None
    arrays = cache.read_arrays(file)
    return None if arrays is None else (meta["info"], _to_torch(arrays))


def open_path_dataset(path, data_dir=None, options=None, log=print, force: bool = False,
                      tensors: bool = True) -> tuple[dict, dict | None]:
    """(info, {split: (uint8 images (N, 28, 28), int64 labels (N,))} or None when `tensors`
    is False) of the dataset at `path`, decoded once into
    ``<data_dir>/cache/<name>-<hash>.safetensors`` and rebuilt when a source file changed
    (size, mtime, or the list of files); `force` rebuilds anyway.

    Raises DataError naming the file and what is wrong; a failed build leaves no cache file.
    Results are memoised per process; treat the tensors as read-only.
    """
    log = log or _quiet
    caller = _check_options(options, "options")
    src = Path(os.path.abspath(Path(path).expanduser()))
    layout = _find_layout(path, src)
    root = Path(data_dir).expanduser().absolute() if data_dir is not None else default_data_dir()
    file = cache.cache_file(root, src.name, [str(src), caller])
    key = (str(src), json.dumps(caller, sort_keys=True), str(file))
    now = cache.stamps(layout.root, layout.sources())
    memo = _MEMO.get(key)
    if not force and memo is not None and memo[0] == now and (memo[2] is not None or not tensors):
        return copy.deepcopy(memo[1]), memo[2]
    found = None if force else _from_cache(file, src, caller, now, tensors)
    if found is None:
        log(f"decoding {src} ({layout.kind}, {len(now)} files) into {file} ...")
        try:
            splits, info, hashes = _build(layout, caller, src.name, src, log)
        except DataError:
            cache.remove(file)  # a stale cache must not outlive its sources' failure
            raise
        meta = {"path": str(src), "options": caller, "info": info,
                "manifest": cache.manifest(now, hashes, layout.root)}
        cache.write(file, splits, meta, log)
        found = (info, _to_torch(splits))
    _MEMO[key] = (now, *found)
    return copy.deepcopy(found[0]), found[1]


_plug_path_loader(open_path_dataset)
