"""Atomic file writes: a reader never sees a half-written file, and a failed write (disk
full, read-only folder, no permission) is an error that names the path and leaves nothing
behind."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

from .errors import AelabError

_ELSEWHERE = "write somewhere else (--run-dir / --data-dir)"
_HINTS = {
    errno.ENOSPC: f"free some space or {_ELSEWHERE}",
    getattr(errno, "EDQUOT", errno.ENOSPC): f"free some space or {_ELSEWHERE}",  # over quota
    errno.EROFS: f"that file system is read-only; {_ELSEWHERE}",
    errno.EACCES: f"check the folder's permissions or {_ELSEWHERE}",
    errno.EPERM: f"check the folder's permissions or {_ELSEWHERE}",
    errno.ENOTDIR: "a file stands where a folder should be; choose another path",
    errno.EEXIST: "a file stands where a folder should be; choose another path",
}


class WriteError(AelabError, OSError):
    """A file or folder could not be written. Also an OSError (same errno and strerror), so
    callers that treat a failed write as best-effort (`except OSError`) keep working."""

    def __init__(self, message: str, cause: OSError):
        super().__init__(cause.errno, cause.strerror)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _write_error(what: str, path: Path, e: OSError) -> WriteError:
    notes = [f"errno {e.errno}"] if e.errno else []
    if e.filename and str(e.filename) != str(path):
        notes.append(f"at {e.filename}")  # e.g. the parent folder that could not be made
    detail = f"{e.strerror or e}" + (f" ({', '.join(notes)})" if notes else "")
    hint = _HINTS.get(e.errno, "check the path, free space and permissions")
    return WriteError(f"could not {what} {path}: {detail}; {hint}", e)


def make_dirs(path: str | os.PathLike) -> Path:
    """mkdir -p, with an AelabError naming the folder when it cannot be made."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _write_error("create the folder", path, e) from e
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, fsync it, then rename over `path`. On any
    failure the temp file is removed, `path` keeps its old content, and WriteError is raised."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise _write_error("write", path, e) from e
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]  # os.write may write less than asked


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
