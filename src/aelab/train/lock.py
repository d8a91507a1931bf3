"""One trainer per run folder: `RUN_DIR/.lock`, taken by `train` and `--resume`.

Two processes writing one folder's checkpoints corrupt each other's work silently (and
each runs many times slower), so the second is refused with the first one's pid, host and
start time. The file holds those as JSON. Where the OS has `flock` (Linux, macOS) the
kernel holds the lock for the owner's lifetime, so a trainer that died (kill -9, power
cut) leaves a lock that the next one takes over, with a note; elsewhere the recorded pid is
checked instead. Owners on another host cannot be checked: the message says to delete
the file once that process is known to be gone.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from ..errors import AelabError

try:
    import fcntl
except ImportError:  # Windows: the recorded pid is checked instead
    fcntl = None

LOCK_NAME = ".lock"


class RunFolderBusy(AelabError):
    """Another live process is training this run folder."""


class RunLock:
    """The lock of one run folder, held from `acquire` to `release`."""

    def __init__(self, path: Path, fd: int):
        self.path, self._fd = path, fd

    @classmethod
    def acquire(cls, run_dir: Path, log=print) -> RunLock:
        path = Path(run_dir) / LOCK_NAME
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise AelabError(f"cannot create the lock file {path} ({e.strerror}); train "
                                 "into a folder you can write, with --run-dir") from None
            earlier = _read(fd)
            if not _lock_fd(fd, earlier):
                os.close(fd)
                raise RunFolderBusy(_busy_message(run_dir, earlier))
            if _same_file(fd, path):
                break
            os.close(fd)  # the owner released (and removed) it between our open and lock: again
        try:
            if earlier:  # a lock file that nobody holds: its process ended without cleaning up
                log(f"note: took over the lock of {run_dir} from pid {earlier.get('pid')} on "
                    f"{earlier.get('host')} (started {earlier.get('started')}), which is no "
                    "longer running")
            _write(fd, {"pid": os.getpid(), "host": socket.gethostname(),
                        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")})
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # first: a waiting process then finds no stale file
        except OSError:
            pass
        os.close(self._fd)  # closing drops the flock
        self._fd = None


def _lock_fd(fd: int, earlier: dict) -> bool:
    """Take the lock; False if a live process holds it."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
    return not (earlier and earlier.get("host") == socket.gethostname()
                and _pid_alive(int(earlier.get("pid", 0))))


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _pid_alive(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _read(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        info = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {"pid": "?", "host": "?", "started": "?"}
    return info if isinstance(info, dict) else {}


def _write(fd: int, info: dict) -> None:
    data = json.dumps(info).encode()
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)


def _busy_message(run_dir: Path, owner: dict) -> str:
    pid, host, started = (owner.get(k, "?") for k in ("pid", "host", "started"))
    same_host = host == socket.gethostname()
    gone = (f"stop it first (kill {pid})" if same_host
            else f"if that process is gone, delete {Path(run_dir) / LOCK_NAME}")
    return (f"{run_dir} is being trained by another process: pid {pid} on {host}, started "
            f"{started}. Two trainers would overwrite each other's checkpoints; wait for it to "
            f"finish, or {gone}, then run the command again")
