"""Datasets built here, offline, from files already on this machine: PACKAGED (registry.py).

Each is built once into ``<data_dir>/<name>/<name>.safetensors`` (cache.py's format: uint8
images and int64 labels per split; its metadata holds the dataset's info and the checksum of
the arrays), by a builder registered below with @packaged. A build is deterministic (fixed
seeds, lossless sources) and uses no network: it reads the verified files of a fetched
dataset, or data files that scikit-learn or scikit-image install with themselves (never
their downloaders). The checksum is verified when the file is read; a file that fails, is
damaged or was built by an older recipe is built again.

- mnist-32: MNIST zero-padded by 2 pixels on each side to 32x32, as in Ghosh et al., "From
  Variational to Deterministic Autoencoders", ICLR 2020; MNIST's labels and splits.
- digits: scikit-learn's load_digits, 1,797 8x8 digits with values 0..16, scaled to 0..255
  (x * 255 / 16, rounded); labels 0-9; a seeded 1/6 (seed 0, cache.carve) is the test split.
- lfw-faces: scikit-image's lfw_subset.npy, 200 25x25 grey crops from Labeled Faces in the
  Wild, floats in [0, 1] -> round(x * 255); the file holds 100 faces then 100 non-faces
  (background crops), labelled "face" (0) and "non-face" (1); a seeded 1/6 (seed 0) is the
  test split.
- patches-16-colour, patches-8-grey: 60,000 training and 10,000 test patches (16x16 colour,
  8x8 grey) cut at seeded random positions from photographs that scikit-image ships as PNG
  files. Each photograph's rows are split in two: the bottom sixth (at least one patch high)
  is the test region, the rest the training region, and a patch lies wholly inside one
  region, so no test pixel is ever in a training patch. Each photograph gives an equal share
  of each split, at distinct positions (drawn without replacement), and each split is then
  shuffled (seed 0 throughout). No labels.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import cache
from .idx import read_idx
from .registry import PACKAGED, Arrays, PackagedSpec

__all__ = ["held_out_from", "open_packaged", "packaged", "packaged_file", "patch_positions"]

SEED = 0  # every random choice below: test splits, patch positions, shuffles


def packaged(**fields) -> Callable:
    """Register the decorated builder as PACKAGED[name] (fields: PackagedSpec's, less build)."""

    def register(build: Callable[[dict], Arrays]) -> Callable[[dict], Arrays]:
        spec = PackagedSpec(build=build, **fields)
        PACKAGED[spec.name] = spec
        return build

    return register


# --------------------------------------------------------------------------- sources


def _skimage_file(name: str) -> Path:
    """A data file installed with scikit-image (found without importing it, and without its
    downloader, which fetches the files a wheel leaves out)."""
    found = importlib.util.find_spec("skimage")
    if found is None or not found.submodule_search_locations:
        raise DataError("scikit-image is not installed, and this dataset is built from its "
                        "files: pip install 'aelab[images]'")
    path = Path(next(iter(found.submodule_search_locations))) / "data" / name
    if not path.is_file():
        raise DataError(f"{path}: not in your scikit-image, whose wheel should carry it; "
                        "reinstall it: pip install --force-reinstall 'scikit-image>=0.21'")
    return path


def _photo(name: str, colour: bool) -> np.ndarray:
    """A photograph shipped with scikit-image: uint8 (H, W, 3) or (H, W)."""
    from PIL import Image

    with Image.open(_skimage_file(name), formats=("PNG",)) as im:
        return np.asarray(im.convert("RGB" if colour else "L"), dtype=np.uint8)


def _carved(x: np.ndarray, y: np.ndarray) -> Arrays:
    """(train x, train y, test x, test y): cache.carve's seeded 1/6 as the test split."""
    picks = cache.carve(len(x), SEED)
    return x[picks["train"]], y[picks["train"]], x[picks["test"]], y[picks["test"]]


# --------------------------------------------------------------------------- the datasets


@packaged(name="mnist-32", image_shape=(1, 32, 32), n_train=60000, n_test=10000, needs=("mnist",),
          class_names=tuple(str(d) for d in range(10)),
          source="MNIST (LeCun, Cortes & Burges), from the verified files of `mnist`",
          licence="CC BY-SA 3.0, as MNIST",
          built="each image zero-padded by 2 pixels a side to 32x32 (Ghosh et al., ICLR 2020); "
                "MNIST's labels and splits")
def _mnist_32(inputs: dict) -> Arrays:
    files = inputs["mnist"]
    out = []
    for split in cache.SPLITS:
        x = read_idx(files[f"{split}-images"])  # (N, 28, 28)
        out += [np.pad(x, ((0, 0), (2, 2), (2, 2))), read_idx(files[f"{split}-labels"]).astype(np.int64)]
    return tuple(out)


@packaged(name="digits", image_shape=(1, 8, 8), n_train=1497, n_test=300, carved=True, requires=("sklearn",),
          install="pip install scikit-learn", class_names=tuple(str(d) for d in range(10)),
          source="UCI Optical Recognition of Handwritten Digits, via scikit-learn's load_digits",
          licence="CC BY 4.0 (UCI), as distributed with scikit-learn (BSD-3-Clause)",
          built="values 0..16 scaled to 0..255 (x * 255 / 16, rounded); test split: a seeded "
                "1/6 (seed 0)")
def _digits(inputs: dict) -> Arrays:
    from sklearn.datasets import load_digits  # reads the copy installed with scikit-learn

    d = load_digits()
    x = np.rint(d.images * (255 / 16)).astype(np.uint8)  # (1797, 8, 8)
    return _carved(x, d.target.astype(np.int64))


@packaged(name="lfw-faces", image_shape=(1, 25, 25), n_train=167, n_test=33, carved=True,
          requires=("skimage",),
          install="pip install 'aelab[images]'", class_names=("face", "non-face"),
          source="Labeled Faces in the Wild, the 25x25 subset shipped with scikit-image "
                 "(lfw_subset.npy)",
          licence="scikit-image BSD-3-Clause; LFW images: as the LFW project states, for research",
          built="floats in [0, 1] -> round(x * 255); 100 faces then 100 non-faces, labelled; "
                "test split: a seeded 1/6 (seed 0)")
def _lfw_faces(inputs: dict) -> Arrays:
    path = _skimage_file("lfw_subset.npy")
    x = np.load(path, allow_pickle=False)
    if x.shape != (200, 25, 25) or x.dtype.kind != "f" or not (x.min() >= 0 and x.max() <= 1):
        raise DataError(f"{path}: holds {x.dtype} {x.shape}, not 200 25x25 images in [0, 1]; "
                        "reinstall scikit-image: pip install --force-reinstall 'scikit-image>=0.21'")
    labels = np.repeat(np.arange(2, dtype=np.int64), 100)  # the first 100 are the faces
    return _carved(np.rint(x * 255).astype(np.uint8), labels)


# Photographs shipped as PNG files in scikit-image's wheel; their licences are in its docstrings.
COLOUR_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "ihc.png")  # ihc: immunohistochemistry
GREY_PHOTOS = ("brick.png", "camera.png", "coins.png", "grass.png", "gravel.png", "text.png")
N_PATCHES = {"train": 60000, "test": 10000}
_BY_SKIMAGE = "as scikit-image states; scikit-image itself BSD-3-Clause"


def held_out_from(height: int, side: int) -> int:
    """The first row of a photograph's test region: its bottom sixth, at least `side` rows."""
    return height - max(side, round(height * cache.TEST_FRACTION))


def patch_positions(heights_widths: list[tuple[int, int]], side: int, seed: int = SEED
                    ) -> dict[str, list[np.ndarray]]:
    """{split: per photograph, (n, 2) top-left corners (row, column)} of side x side patches:
    N_PATCHES[split] in all, shared equally (the first photographs get one more while some
    are left over), distinct within a split, wholly inside the split's region (held_out_from)."""
    rng = np.random.default_rng(seed)
    k = len(heights_widths)
    out: dict[str, list[np.ndarray]] = {s: [] for s in cache.SPLITS}
    for split in cache.SPLITS:
        n = N_PATCHES[split]
        for i, (h, w) in enumerate(heights_widths):
            cut = held_out_from(h, side)
            top, rows = (0, cut) if split == "train" else (cut, h - cut)
            across = w - side + 1
            picks = rng.choice((rows - side + 1) * across, n // k + (i < n % k), replace=False)
            out[split].append(np.stack([top + picks // across, picks % across], 1))
    return out


def _patches(photos: tuple[str, ...], side: int, colour: bool) -> Arrays:
    images = [_photo(name, colour) for name in photos]  # (H, W[, 3])
    where = patch_positions([im.shape[:2] for im in images], side)
    rng = np.random.default_rng(SEED + 1)
    out = []
    for split in cache.SPLITS:
        cut = []
        for im, corners in zip(images, where[split], strict=True):
            # (H - side + 1, W - side + 1[, 3], side, side): every patch, as a view
            windows = np.lib.stride_tricks.sliding_window_view(im, (side, side), axis=(0, 1))
            cut.append(windows[corners[:, 0], corners[:, 1]])  # (n[, 3], side, side)
        x = np.concatenate(cut)
        out += [np.ascontiguousarray(x[rng.permutation(len(x))]), np.full(len(x), -1, np.int64)]
    return tuple(out)


@packaged(name="patches-16-colour", image_shape=(3, 16, 16), n_train=60000, n_test=10000,
          requires=("skimage",), install="pip install 'aelab[images]'",
          source="scikit-image's colour photographs: astronaut, chelsea, coffee, immunohistochemistry",
          licence="photographs public domain or CC0 (immunohistochemistry: no known copyright "
                  f"restrictions), {_BY_SKIMAGE}",
          built="16x16 patches at seeded positions (seed 0); test patches from the bottom sixth "
                "of each photograph's rows, training patches from the rest")
def _patches_16_colour(inputs: dict) -> Arrays:
    return _patches(COLOUR_PHOTOS, 16, colour=True)


@packaged(name="patches-8-grey", image_shape=(1, 8, 8), n_train=60000, n_test=10000,
          requires=("skimage",), install="pip install 'aelab[images]'",
          source="scikit-image's grey photographs: brick, camera, coins, grass, gravel, text",
          licence=f"photographs CC0 or public domain (coins: no known copyright restrictions), {_BY_SKIMAGE}",
          built="8x8 patches at seeded positions (seed 0); test patches from the bottom sixth "
                "of each photograph's rows, training patches from the rest")
def _patches_8_grey(inputs: dict) -> Arrays:
    return _patches(GREY_PHOTOS, 8, colour=False)


# --------------------------------------------------------------------------- build and read


def packaged_file(name: str, data_dir: Path) -> Path:
    """Where packaged dataset `name` is built: <data_dir>/<name>/<name>.safetensors."""
    return data_dir / name / f"{name}.safetensors"


def _info(spec: PackagedSpec, splits: dict) -> dict:
    """What dataset_info says of a build (the keys of a path dataset's info, and more)."""
    carved = {"fraction": cache.TEST_FRACTION, "seed": SEED, "n": spec.n_test} if spec.carved else None
    return {"name": spec.name, "path": None, "kind": "packaged", "checksum": cache.checksum(splits),
            "n_train": spec.n_train, "n_test": spec.n_test, "class_names": list(spec.class_names),
            "has_labels": bool(spec.class_names), "carved_test": carved, "conversions": {},
            "options": {}, "image_shape": list(spec.image_shape), "source": spec.source,
            "licence": spec.licence, "built": spec.built}


def _check_build(spec: PackagedSpec, splits: dict) -> None:
    """A build must give what the spec says; anything else is a changed source (or a bug)."""
    for split, n in (("train", spec.n_train), ("test", spec.n_test)):
        x, y = splits[split]
        want = (n, *spec.image_shape[1:]) if spec.image_shape[0] == 1 else (n, *spec.image_shape)
        if x.shape != want or x.dtype != np.uint8 or y.shape != (n,):
            raise DataError(f"{spec.name}: the build gave {split} images {x.dtype} {x.shape} and "
                            f"labels {y.shape}, not uint8 {want}; its source ({spec.source}) is "
                            "not the one this recipe was written for: reinstall it, or report this")


def _build(spec: PackagedSpec, file: Path, fetch: Callable[[str], dict], log) -> tuple[dict, dict]:
    """Build the dataset and write it to `file` (atomically; a folder that cannot be written
    only costs building again); ({split: (images, labels)}, info)."""
    for module in spec.requires:
        if importlib.util.find_spec(module) is None:
            raise DataError(f"{spec.name}: needs {module}, which is not installed: {spec.install}")
    inputs = {need: fetch(need) for need in spec.needs}
    log(f"building {spec.name} into {file} ({spec.built}) ...")
    x_train, y_train, x_test, y_test = spec.build(inputs)
    splits = {"train": (x_train, y_train), "test": (x_test, y_test)}
    _check_build(spec, splits)
    info = _info(spec, splits)
    cache.write(file, splits, {"name": spec.name, "recipe": spec.recipe, "info": info}, log)
    return splits, info


def _read(spec: PackagedSpec, file: Path, tensors: bool, log) -> tuple[dict, dict | None] | None:
    """(info, {split: arrays} verified against the recorded checksum, or None when `tensors`
    is False) from a build of this recipe; None when there is none or it fails."""
    meta = cache.read_meta(file)
    if meta is None or meta.get("name") != spec.name or meta.get("recipe") != spec.recipe:
        return None
    if not tensors:
        return meta["info"], None
    arrays = cache.read_arrays(file)
    if arrays is None or cache.checksum(arrays) != meta["info"]["checksum"]:
        log(f"{file}: does not match the checksum recorded when it was built (damaged?); "
            "building it again")
        return None
    return meta["info"], arrays


# (name, file) -> (file stamp, info, {split: (torch images, torch labels)} or None)
_MEMO: dict[tuple[str, str], tuple[tuple, dict, dict | None]] = {}


def _stamp(file: Path) -> tuple | None:
    try:
        st = file.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


def _to_torch(splits: dict) -> dict:
    import torch  # here, not at import time: torch is slow to import

    return {s: (torch.from_numpy(x), torch.from_numpy(y)) for s, (x, y) in splits.items()}


def open_packaged(name: str, data_dir: Path, fetch: Callable[[str], dict], *, force: bool = False,
                  tensors: bool = True, log=None) -> tuple[dict, dict | None]:
    """(info, {split: (uint8 images, int64 labels)} as torch tensors, or None when `tensors`
    is False) of packaged dataset `name`, built into the data folder if need be (or `force`).

    fetch(need) gives {file key: verified path} of a registered dataset the build reads.
    Memoised per process while the file keeps its size, mtime and inode; treat the tensors
    as read-only."""
    spec, log = PACKAGED[name], log or (lambda _msg: None)
    file = packaged_file(name, data_dir)
    key, memo = (name, os.fspath(file)), _MEMO.get((name, os.fspath(file)))
    if not force and memo is not None and memo[0] == _stamp(file) and (memo[2] or not tensors):
        return copy.deepcopy(memo[1]), memo[2]
    found = None if force else _read(spec, file, tensors, log)
    if found is None:
        found = _build(spec, file, fetch, log)[::-1]
    info, arrays = found
    result = None if arrays is None else _to_torch(arrays)
    _MEMO[key] = (_stamp(file), info, result)
    return copy.deepcopy(info), result
