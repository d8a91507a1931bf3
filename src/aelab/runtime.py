"""The process and the machine: process-wide settings for fast CPU training, the compute
device, and what this machine is (for every figure that quotes a speed).

`prepare_process()` is called by the `aelab` command (and the benchmark's aelab side)
before any computation starts. The library's own `train()` needs no preparation: it flushes
subnormals for the training alone (`flushing_denormals`) and gives the caller's process its
setting back; only the malloc setting below is the command's alone (a process-wide change
that cannot be read back, worth a few per cent):

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
from contextlib import contextmanager
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
    set_flush_denormal(True)
    keep_freed_memory()


def denormals_flushed() -> bool:
    """Whether this thread flushes subnormal floats to zero. PyTorch has a setter only, so
    this asks the arithmetic: a subnormal times one is zero only when they are flushed."""
    return torch.tensor(1e-39, dtype=torch.float32).mul(1.0).item() == 0.0


@contextmanager
def flushing_denormals():
    """Flush subnormals to zero inside the block, on every compute thread, and restore the
    caller's setting after it, however the block ends (the library's `train()` runs inside
    one)."""
    before = denormals_flushed()
    set_flush_denormal(True)
    try:
        yield
    finally:
        set_flush_denormal(before)


def set_flush_denormal(flush: bool) -> bool:
    """torch.set_flush_denormal on this thread and on each of PyTorch's OpenMP threads.

    The setting is a CPU register of each thread, and a thread copies it from the one that
    starts it: PyTorch's OpenMP pool (which also runs MKL's matrix products) is started by
    the first parallel operation and then keeps its own. Set on the calling thread alone, a
    pool started earlier (any large tensor operation in a notebook) would keep computing
    with subnormals, and a pool started during training would keep flushing after it. So a
    parallel region of PyTorch's own libgomp runs the setter once on every thread of the
    pool. Where that library is not found (another OpenMP runtime), only the calling
    thread changes. Returns False where the CPU cannot flush (then nothing changes)."""
    if not torch.set_flush_denormal(flush):
        return False
    gomp = _torch_libgomp()
    if gomp is not None:
        callback = _GOMP_FN(lambda _data: torch.set_flush_denormal(flush) and None)
        gomp.GOMP_parallel(callback, None, torch.get_num_threads(), 0)
    return True


_GOMP_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # void fn(void *data)


def _torch_libgomp():
    """PyTorch's own libgomp, as loaded in this process (Linux), or None."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    torch_dir = str(Path(torch.__file__).parent)
    for line in maps.splitlines():
        path = line.split()[-1]
        if "libgomp" in Path(path).name and path.startswith(torch_dir):
            lib = ctypes.CDLL(path)  # the loaded copy: dlopen of a loaded path returns it
            lib.GOMP_parallel.argtypes = [_GOMP_FN, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
            lib.GOMP_parallel.restype = None
            return lib
    return None


def resolve_device(name: str | torch.device) -> torch.device:
    """'auto' picks CUDA, then Apple's MPS, then the CPU; a torch.device is taken as it is."""
    if isinstance(name, torch.device):
        return name
    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AelabError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu")
    if name == "mps" and not has_mps:
        raise AelabError("--device mps: Apple's MPS backend is not available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:  # torch's "Expected one of cpu, cuda, ... device type" for a typo
        raise AelabError(f"device {name!r} is not one aelab knows; give auto, cpu, cuda, "
                         "cuda:N or mps") from None


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
