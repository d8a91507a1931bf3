"""Process-wide settings for fast CPU training, applied by the `aelab` command (and the
benchmark's aelab side) before any computation starts.

- Subnormal floats are flushed to zero: x86 handles them ~100x slower, and Adam's moments
  and dead units decay into them. The setting is per thread and worker threads inherit it
  only from the thread that starts them: set after scikit-learn had started its threads,
  the seed `linear` epochs still slowed from 0.7 s to 11 s by epoch 6 under `aelab results`.
- glibc keeps freed memory instead of handing it back to the kernel. Activations of a
  64-image batch are 0.2 to 1.6 MB each; above glibc's mmap threshold every one of them is a
  fresh mapping that the kernel must fault in and zero, every step: with this, `conv`
  training took 40-65% fewer page faults and its epochs were 3-8% faster.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Serve allocations below 64 MB from the heap and keep up to 512 MB of freed memory
    there (glibc only; elsewhere a no-op). Returns whether it applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 64 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 512 << 20))


def prepare_process() -> None:
    """Call before any computation in a process that trains (see the module docstring)."""
    import torch

    torch.set_flush_denormal(True)
    keep_freed_memory()
