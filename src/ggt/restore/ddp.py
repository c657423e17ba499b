"""Multi-process training under `torchrun`: process group set-up from its environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup(device_pref: str) -> Dist:
    """Join the process group `torchrun` describes (WORLD_SIZE, RANK, LOCAL_RANK); a no-op for one process.

    NCCL on CUDA, gloo on CPU (which is what the tests use)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_pref != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank=rank, local_rank=local, world=world)


def teardown(d: Dist, finished: bool) -> None:
    """Leave the process group. After a finished run every rank first waits for the others, the shutdown
    PyTorch documents: once in CI, rank 1 of the two-process test aborted at exit ("terminate called
    without an active exception") while rank 0 was still writing the last checkpoint, which no local
    rerun reproduced. After an error no rank waits, since a peer that failed may never reach the
    barrier."""
    if not (d.enabled and dist.is_initialized()):
        return
    if finished:
        dist.barrier()
    dist.destroy_process_group()
