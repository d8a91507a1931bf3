"""The process and the machine: process-wide settings for fast CPU training, the compute
device, and what this machine is (for every figure that quotes a speed).

`prepare_process()` is called by the `aelab` command (and the benchmark's aelab side)
before any computation starts; the library's own `train()` never changes process-wide
settings, so a notebook or script that wants the same speed calls it once itself:

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
import os
import platform
import sys
from pathlib import Path

import torch

from .errors import AelabError

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


def prepare_process(threads: int | None = None) -> None:
    """Call before any computation in a process that trains (see the module docstring);
    `threads` sets PyTorch's CPU threads (default: its own, one per core)."""
    if threads is not None:
        if threads < 1:
            raise AelabError(f"--threads {threads}: give at least 1")
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    keep_freed_memory()


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA, then Apple's MPS, then the CPU."""
    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AelabError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu")
    if name == "mps" and not has_mps:
        raise AelabError("--device mps: Apple's MPS backend is not available; use --device cpu")
    return torch.device(name)


def cpu_model() -> str:
    """The CPU's model name (e.g. 'Intel(R) Xeon(R) Platinum 8488C'); speeds differ by it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> str:
    """One line naming the machine a figure was measured on."""
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"{cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
            f"torch threads: {torch.get_num_threads()}{gpu}")
