"""Multi-process training through torch.distributed (DDP), launched by ``torchrun``.

``torchrun --nproc_per_node N -m ecgbio.cli train ...`` (or ``--nnodes`` for several machines) sets
``WORLD_SIZE``/``RANK``. The processes train on the CPU (DDP on GPUs is not supported:
:func:`ecgbio.training.loop.resolve_device`), so the backend is gloo even where a GPU is
visible: NCCL would refuse the CPU model and the CPU flags below. Every process draws the same
class-balanced batch sequence (same seed) and takes every N-th batch, so a run with N processes sees
the same batches per epoch as one process, split among them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistContext:
    """Join the process group if launched by torchrun; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size())


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def broadcast_flag(ctx: DistContext, flag: bool) -> bool:
    """Rank 0's decision (e.g. early stop) for every process."""
    if not ctx.enabled:
        return flag
    tensor = torch.tensor([1 if flag else 0])
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


def any_flag(ctx: DistContext, flag: bool) -> bool:
    """Whether any process raised ``flag`` (e.g. its loss diverged), agreed by every process so
    that they all stop together instead of leaving the others waiting in a collective."""
    if not ctx.enabled:
        return flag
    tensor = torch.tensor([1 if flag else 0])
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
