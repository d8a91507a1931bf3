"""Several processes under torchrun: DistributedDataParallel, nccl on GPUs, gloo on CPU.

`torchrun --nproc-per-node N -m aelab train ...` sets RANK, WORLD_SIZE and LOCAL_RANK; a
plain `aelab train` sees none of them and runs as a single process (rank 0 of 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    return Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(d: Dist, device: torch.device) -> None:
    """Join the process group: nccl for CUDA devices, gloo otherwise."""
    if d.enabled and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_str(value: str | None, d: Dist) -> str | None:
    """Rank 0's value on every rank (e.g. the run folder name, made from a timestamp)."""
    if not d.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def shard(perm: torch.Tensor, d: Dist) -> torch.Tensor:
    """This rank's disjoint share of an epoch's shuffled indices. Every rank gets the same
    count (up to world-1 images are left out of each epoch) so all ranks take the same
    number of steps, which DDP's collective gradient averaging requires."""
    if not d.enabled:
        return perm
    usable = len(perm) // d.world * d.world
    return perm[d.rank : usable : d.world]
