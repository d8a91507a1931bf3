"""Datasets given by a PATH instead of a registered name; load_dataset and dataset_info
come here for anything that is not a registered name.

What a path may be (its "kind"):

- "idx": a folder of IDX files under the MNIST names, ``train-images-idx3-ubyte[.gz]``,
  ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``,
  ``t10k-labels-idx1-ubyte[.gz]``, optionally all with one prefix (EMNIST's
  ``emnist-digits-train-images-...``; QMNIST's ``test-`` names and ``labels-idx2-int``,
  whose first column is the class); images (N, H, W), or (N, H, W, 3) in colour;
- "npz": a .npz file with x_train and optionally y_train, x_test, y_test (Keras' mnist.npz);
- "npy": a .npy file of images, without labels;
- "npz-pairs": a folder of ``<prefix>-{train,test}-{imgs,labels}.npz``, each holding arr_0
  (KMNIST);
- "image-folder": PNG/JPEG/BMP files in class folders, ``train/<class>/`` and
  ``test/<class>/``, or class folders at the top; class names are the folder names,
  sorted, labels 0..K-1 in that order (a test class folder must also be in train/);
- "flat-images": image files without labels, at the top or in ``train/`` and ``test/``.

Images become uint8 (N, H, W) when grey and (N, 3, H, W) in colour; info["image_shape"] is
[C, H, W]. Channels are 1 or 3, height and width 8..128 each (data/shapes.py).

- Arrays (idx, npz, npy, npz-pairs) may be (N, H, W), (N, H, W, C), (N, C, H, W) or MNIST's
  flat (N, 784), of uint8 or of whole numbers 0..255 (floats are refused: 0..1 or 0..255?).
  A 4-D array's channel axis is the one of size 4 or less, the last or the second (when both
  are, the option layout says which; shapes.py has the rule). Both splits must have one
  image shape.
- Image files keep their own size and colour: a folder whose images are all grey (mode L, or
  RGB with R == G == B everywhere) is grey; one colour image makes it colour (the grey ones
  get three equal channels). All images must have one size (or use the option resize).
  Transparency is refused unless it hides nothing, or grey=true composites it. Inside the
  split and class folders every file must be a PNG/JPEG/BMP image; the top folder may hold
  other files (this card, a README).

Labels and the test split are optional: a dataset without labels gets labels of -1; one
without a test split has 1/6 of its images carved out as one, chosen by `split_seed`.
Options (the caller's `options`, over an ``aelab-dataset.json`` card beside the files,
over the defaults):

- transpose (false): swap each image's rows and columns (EMNIST stores them transposed);
  done last, after resize;
- split_seed (0): which 1/6 is carved out as the test split;
- class_names: a name per label 0..K-1;
- grey (false): convert colour images to grey (ITU-R 601 luma; transparency composited over
  a plain background);
- resize ("HxW", e.g. "32x32", height x width, each 8..128): every image resized to exactly
  that (Pillow's LANCZOS, averaging over the area when shrinking; the aspect ratio follows);
- fit_mnist (false; image files only): fit every file into 28x28 grey the way MNIST was made
  (longer side scaled to 28, centred on its own background, dark-on-light inverted): for
  hand-drawn digits;
- layout ("nhwc" or "nchw"; arrays only): which axis of 4-D arrays holds the channels.

The decoded dataset is cached (cache.py) and memoised per process.
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
from .images import CONVERSIONS, IMAGE_SUFFIXES, decode_digit, decode_image, describe_conversions, resize
from .load import _plug_path_loader
from .registry import default_data_dir, registered_names
from .shapes import LAYOUTS, ShapeError, check_sides, dataset_layout, fitted_size, image_shape, parse_size
from .shapes import size_text

__all__ = ["CARD", "TEST_FRACTION", "open_path_dataset"]

CARD = "aelab-dataset.json"
TEST_FRACTION = cache.TEST_FRACTION
_DEFAULTS = {"transpose": False, "split_seed": 0}
_IMAGE_KINDS = ("image-folder", "flat-images")
_KIND_DEFAULTS = {kind: {"fit_mnist": False, "grey": False} for kind in _IMAGE_KINDS}


def _yes_no(v) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


# option -> what is wrong with a value, or None when it is fine
_OPTIONS = {
    "transpose": _yes_no,
    "split_seed": lambda v: (None if isinstance(v, int) and not isinstance(v, bool) and v >= 0
                             else "must be a whole number >= 0"),
    "class_names": lambda v: (None if isinstance(v, list) and v and len(set(v)) == len(v)
                              and all(isinstance(n, str) for n in v)
                              else "must be a non-empty list of distinct strings"),
    "grey": _yes_no,
    "fit_mnist": _yes_no,
    "resize": lambda v: (None if parse_size(v) else 'must be "HxW" (height x width), each 8 to '
                         '128, e.g. "32x32"'),
    "layout": lambda v: None if v in LAYOUTS else f"must be {' or '.join(LAYOUTS)}",
}
# option -> the kinds it is for (the others take every kind)
_OPTION_KINDS = {"fit_mnist": _IMAGE_KINDS,
                 "layout": ("idx", "npz", "npy", "npz-pairs")}

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
        kind = path.suffix.lower().removeprefix(".")
        if kind in ("npz", "npy"):
            return _Layout(kind, path.parent, files={kind: path})
        raise DataError(f"{path}: not a dataset file: give a .npz file (x_train, y_train, x_test, "
                        "y_test), a .npy file of images, or a folder of IDX files, .npz pairs or "
                        "images")
    if not path.is_dir():
        raise DataError(f"{given}: not a registered dataset ({', '.join(registered_names())}) and "
                        f"no such file or folder ({path}); give one of those names or an existing path")
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


def _walk_images(folder: Path, seen: set[str], others: list[Path]) -> list[Path]:
    """Image files under `folder` at any depth, sorted, following links but never in circles;
    any other file is added to `others`."""
    out = []
    for entry in _entries(folder):
        path = Path(entry.path)
        if entry.is_dir():
            _enter(path, seen)
            out += _walk_images(path, seen, others)
        elif _is_image_name(entry.name) and entry.is_file():
            out.append(path)
        else:
            others.append(path)
    return out


def _scan(top: Path, seen: set[str], others: list[Path], at_root: bool
          ) -> tuple[dict[str, list[Path]], list[Path]]:
    """(class folder name -> its images, loose images) of one split's folder; files that are
    not images go to `others`, except loose ones in the dataset's top folder (`at_root`)."""
    _enter(top, seen)
    classes, loose = {}, []
    for entry in _entries(top):
        if entry.is_dir():
            _enter(Path(entry.path), seen)
            classes[entry.name] = _walk_images(Path(entry.path), seen, others)
        elif _is_image_name(entry.name) and entry.is_file():
            loose.append(Path(entry.path))
        elif not at_root:
            others.append(Path(entry.path))
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
    others: list[Path] = []
    scans = {split: _scan(top, seen, others, top == folder) for split, top in tops.items()}
    for split, (classes, loose) in scans.items():
        if not classes and not loose:
            if tops[split] == folder:
                return None
            raise DataError(f"{tops[split]}: the {split} split has no PNG/JPEG/BMP images; add "
                            "some, or remove the folder" + (" (a test split is then carved)"
                                                            if split == "test" else ""))
    if others:
        raise DataError(f"{others[0]}: not a PNG/JPEG/BMP image, in the image folders of {folder}; "
                        "remove it (only the top folder may hold other files)")
    labelled = {split: bool(classes) for split, (classes, _) in scans.items()}
    if len(set(labelled.values())) > 1:
        raise DataError(f"{folder}: train/ and test/ must both have class folders or both have "
                        "the images directly; move the images so that they agree")
    _check_test_classes(scans, tops)
    names = sorted({name for classes, _ in scans.values() for name in classes})
    index = {name: i for i, name in enumerate(names)}
    images = {split: ([(p, index[c]) for c, files in classes.items() for p in files]
                      if classes else [(p, -1) for p in loose])
              for split, (classes, loose) in scans.items()}
    kind = "image-folder" if names else "flat-images"
    return _Layout(kind, folder, images=images, class_names=tuple(names))


def _check_test_classes(scans: dict, tops: dict) -> None:
    """A test class folder must be one of train/'s too: its label would match nothing trained."""
    if "test" not in scans:
        return
    train, test = set(scans["train"][0]), set(scans["test"][0])
    extra = sorted(test - train)
    if extra:
        raise DataError(f"{tops['test'] / extra[0]}: a class folder that {tops['train']} lacks "
                        f"(it has {', '.join(sorted(train))}); the labels would not match: "
                        "rename it to one of those, add it to train/, or remove it")


# --------------------------------------------------------------------------- decoding


def _as_images(arr: np.ndarray, what: str, layout: str | None = None) -> np.ndarray:
    """An array of images (see the module docstring) of whole numbers 0..255 -> uint8 in the
    dataset layout, (N, H, W) or (N, 3, H, W); else DataError. The sides are checked later,
    after the options that change them."""
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
    try:
        images = dataset_layout(arr, layout)
    except ShapeError as e:
        raise DataError(f"{what}: {e}") from None
    return np.ascontiguousarray(images, np.uint8)


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
                        "it with np.savez(path, x_train=..., y_train=...), or name it .npy")
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


def _build_files(layout: _Layout, opts: dict, read) -> dict:
    """IDX or .npz-pair files -> {split: (images, labels or None)}."""
    out = {}
    for split in cache.SPLITS:
        img, lbl = layout.files.get(f"{split}-images"), layout.files.get(f"{split}-labels")
        if img is None:
            continue
        images = _as_images(read(img), str(img), opts.get("layout"))
        labels = None if lbl is None else _as_labels(read(lbl), len(images), str(lbl), str(img))
        out[split] = (images, labels)
    return out


def _build_idx(layout: _Layout, opts: dict, hashes: dict, counts: Counter) -> dict:
    return _build_files(layout, opts, read_idx)


def _build_pairs(layout: _Layout, opts: dict, hashes: dict, counts: Counter) -> dict:
    return _build_files(layout, opts, _read_pair_file)


def _build_npz(layout: _Layout, opts: dict, hashes: dict, counts: Counter) -> dict:
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
                images = _as_images(_member(z, f"x_{split}", path), f"{path} (x_{split})",
                                    opts.get("layout"))
                labels = (_as_labels(_member(z, f"y_{split}", path), len(images),
                                     f"{path} (y_{split})", f"x_{split}")
                          if f"y_{split}" in keys else None)
                out[split] = (images, labels)
    return out


def _build_npy(layout: _Layout, opts: dict, hashes: dict, counts: Counter) -> dict:
    path = layout.files["npy"]
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise DataError(f"{path}: holds Python objects (dtype=object), which are never loaded "
                            "(that would mean unpickling); save it as a uint8 array") from None
        raise DataError(f"{path}: not a readable NumPy .npy file ({e}); replace it with a good "
                        "copy") from None
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable NumPy .npy file ({e}); replace it with a good "
                        "copy") from None
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise DataError(f"{path}: a .npz archive named .npy; rename it to .npz")
    return {"train": (_as_images(arr, str(path), opts.get("layout")), None)}


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e}); fix or remove the file") from None


def _decoder(opts: dict):
    """decode(bytes, path) -> (uint8 (H, W) or (H, W, 3), conversions) as the options say."""
    if opts["fit_mnist"]:
        return decode_digit
    size = parse_size(opts.get("resize"))

    def decode(blob: bytes, path: Path):
        arr, done = decode_image(blob, path, grey=opts["grey"])
        if size is not None and arr.shape[:2] != size:
            arr, done = resize(arr, size), [*done, "resized"]
        return arr, done

    return decode


def _same_size(first: tuple[Path, tuple], path: Path, arr: np.ndarray) -> None:
    """Every image of a dataset has the size of its first; the first is within the limits."""
    (where, size), here = first, arr.shape[:2]
    if path == where:
        problem = check_sides(*size)
        if problem:
            raise DataError(f"{path}: {problem}; resize the images, e.g. --resize "
                            f"{fitted_size(*size)} (the option resize=HxW, 8 to 128 a side)")
    elif here != size:
        raise DataError(f"{where}: {size_text(*size)} but {path}: {size_text(*here)} (height x width); "
                        "the images of a dataset must share one size: resize them, e.g. --resize "
                        f"{size_text(*size)} (the option resize=HxW; or fit_mnist=true for digits)")


def _stack(pictures: list[np.ndarray], colour: bool, counts: Counter) -> np.ndarray:
    """(H, W) and (H, W, 3) images -> (N, H, W) when all are grey, else (N, 3, H, W)."""
    if not colour:
        return np.stack(pictures)
    counts["colour"] += sum(p.ndim == 2 for p in pictures)
    return np.stack([np.stack([p] * 3) if p.ndim == 2 else p.transpose(2, 0, 1) for p in pictures])


def _build_images(layout: _Layout, opts: dict, hashes: dict, counts: Counter) -> dict:
    """Image files -> {split: (uint8 (N, H, W) or (N, 3, H, W), labels or None)}; counts the
    conversions. One colour image makes the whole dataset colour."""
    decode, first, decoded = _decoder(opts), None, {}
    for split, items in layout.images.items():
        pictures = []
        for path, _ in items:
            blob = _read_bytes(path)
            hashes[path.relative_to(layout.root).as_posix()] = hashlib.sha256(blob).hexdigest()
            arr, done = decode(blob, path)
            counts.update(done)
            first = first or (path, arr.shape[:2])
            _same_size(first, path, arr)
            pictures.append(arr)
        decoded[split] = pictures
    colour = any(p.ndim == 3 for pictures in decoded.values() for p in pictures)
    out = {}
    for split, items in layout.images.items():
        labels = np.array([label for _, label in items], np.int64)
        out[split] = (_stack(decoded.pop(split), colour, counts),
                      labels if layout.kind == "image-folder" else None)
    return out


_BUILDERS = {"idx": _build_idx, "npz": _build_npz, "npy": _build_npy, "npz-pairs": _build_pairs,
             "image-folder": _build_images, "flat-images": _build_images}


def _luma(x: np.ndarray) -> np.ndarray:
    """uint8 (N, 3, H, W) -> (N, H, W): ITU-R 601 luma, rounded exactly as Pillow's convert("L")."""
    r, g, b = (x[:, c].astype(np.uint32) for c in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def _resize_all(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (N, H, W) or (N, 3, H, W) -> the same with (H, W) = size (images.resize)."""
    if x.ndim == 3:
        return np.stack([resize(img, size) for img in x]) if len(x) else x
    return np.stack([resize(img.transpose(1, 2, 0), size).transpose(2, 0, 1) for img in x])


def _reshape_arrays(raw: dict, opts: dict, counts: Counter) -> dict:
    """The options grey and resize, on arrays (image files had them as they were decoded)."""
    size = parse_size(opts.get("resize"))
    out = {}
    for split, (x, y) in raw.items():
        if opts.get("grey") and x.ndim == 4:
            x = _luma(x)
            counts["grey"] += len(x)
        if size is not None and x.shape[-2:] != size:
            x = _resize_all(x, size)
            counts["resized"] += len(x)
        out[split] = (x, y)
    return out


def _describe(shape: tuple) -> str:
    c, h, w = shape
    return f"{size_text(h, w)} {'grey' if c == 1 else 'colour'}"


def _check_shapes(raw: dict, where: Path) -> list[int]:
    """The dataset's [C, H, W]: every split's, within the limits; else DataError."""
    shapes = {split: image_shape(x.shape) for split, (x, _) in raw.items()}
    if len(set(shapes.values())) > 1:
        raise DataError(f"{where}: the train images are {_describe(shapes['train'])} but the test "
                        f"images {_describe(shapes['test'])}; give both splits one shape (the "
                        "options resize=HxW and grey=true can make them agree)")
    c, h, w = shapes["train"]
    problem = check_sides(h, w)
    if problem:
        raise DataError(f"{where}: {problem}; resize the images, e.g. --resize "
                        f"{fitted_size(h, w)} (the option resize=HxW, 8 to 128 a side)")
    return [c, h, w]


def _carve(train: tuple, seed: int, where: Path) -> tuple[dict, dict]:
    """Set 1/6 of the images (at least 1) aside as the test split, chosen by `seed`; each
    split keeps the images' order."""
    x, y = train
    if len(x) < 2:
        raise DataError(f"{where}: {len(x)} image only, and no test split; carving one needs at "
                        "least 2 images")
    picks = cache.carve(len(x), seed)
    splits = {s: (x[idx], None if y is None else y[idx]) for s, idx in picks.items()}
    return splits, {"fraction": TEST_FRACTION, "seed": seed, "n": len(picks["test"])}


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


def _options_for(layout: _Layout, caller: dict, src: Path) -> dict:
    """The options a build uses: the caller's, over the card, over the defaults of its kind."""
    card = _read_card(layout.root)
    opts = {**_DEFAULTS, **_KIND_DEFAULTS.get(layout.kind, {}), **card, **caller}
    for key in opts:
        kinds = _OPTION_KINDS.get(key, (layout.kind,))
        if layout.kind not in kinds:
            given = "your options" if key in caller else layout.root / CARD
            raise DataError(f"{src}: the option {key} is for {', '.join(kinds)} datasets, and this "
                            f"one is {layout.kind}; remove it from {given}")
    if opts.get("fit_mnist") and "resize" in opts:
        raise DataError(f"{src}: fit_mnist makes 28x28 images, so resize={opts['resize']} "
                        "cannot go with it; remove one of the two")
    return opts


def _build(layout: _Layout, caller: dict, name: str, src: Path, log) -> tuple[dict, dict, dict]:
    """Decode a dataset: ({split: (images, labels)}, info, {relative path: sha256})."""
    opts = _options_for(layout, caller, src)
    hashes: dict[str, str] = {}
    counts: Counter = Counter()
    raw = _BUILDERS[layout.kind](layout, opts, hashes, counts)
    if layout.kind not in _IMAGE_KINDS:
        raw = _reshape_arrays(raw, opts, counts)
    shape = _check_shapes(raw, src)
    if opts["transpose"]:  # (..., H, W) -> (..., W, H)
        raw = {s: (np.ascontiguousarray(np.swapaxes(x, -1, -2)), y) for s, (x, y) in raw.items()}
        shape = [shape[0], shape[2], shape[1]]
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
            "options": opts, "image_shape": shape}
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
    """(info, {split: (uint8 images (N, H, W) or (N, 3, H, W), int64 labels (N,))} or None when
    `tensors` is False) of the dataset at `path`, decoded once into
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
