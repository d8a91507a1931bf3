"""Checking files against their FileSpec, and remembering which ones passed.

A file passes when its *uncompressed* bytes have the official magic, length and md5
(gzipped or not, whoever compressed it). `_VerifyCache` (``<folder>/.verified.json``)
lets an unchanged file skip the hash next time; it only ever vouches, never condemns.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .._io import atomic_write_json
from .idx import _CHUNK, _Bad, _gzip_problem, _magic_problem, _open_maybe_gz
from .registry import FileSpec

_CACHE_NAME = ".verified.json"


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
