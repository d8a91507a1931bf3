"""The IDX file format: read_idx and write_idx, plain or gzipped.

An IDX file is a header ``0x0000TTDD`` (TT: the element type, DD: the number of
dimensions), DD big-endian uint32 sizes, then the elements, big-endian. A name ending in
.gz means the whole file is gzipped.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .._io import atomic_write_bytes
from ..errors import DataError

__all__ = ["read_idx", "write_idx"]

_CHUNK = 1 << 20  # bytes per read when streaming a file

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


class _Bad(Exception):
    """A file's content is not what it should be; the message says how."""


def _gzip_problem(e: BaseException) -> str:
    if isinstance(e, EOFError):
        return "truncated: the gzip stream ends early"
    if isinstance(e, gzip.BadGzipFile):
        return f"not valid gzip data ({e})"
    if isinstance(e, zlib.error):
        return f"corrupt gzip data ({e})"
    return f"cannot read it ({e})"


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
