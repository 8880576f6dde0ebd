"""Data-parallel training under ``torchrun``: which process this is, and the process group it trains in.

``torchrun --nproc_per_node=N`` starts N copies of a command and tells each in its environment how many there are
(``WORLD_SIZE``), which one it is (``RANK``; ``LOCAL_RANK`` on its machine) and where they meet (``MASTER_ADDR``,
``MASTER_PORT``). :func:`process_group` reads that and, with more than one process, joins them for the duration of a
block: NCCL when training on CUDA (each process on ``cuda:LOCAL_RANK``), gloo on the CPU. Without those variables,
as in a plain ``crystalflow train``, there is one process and every method of :class:`World` leaves things as they
are.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class World:
    """The processes of one run: this one's ``rank`` of ``size``, and its ``local_rank`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> World:
        """The world ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); one process without it."""
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )

    @property
    def distributed(self) -> bool:
        """Whether there are other processes to work with."""
        return self.size > 1

    @property
    def main(self) -> bool:
        """Whether this is the process that prints and writes files (rank 0)."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """This process's device: ``cuda:local_rank`` when several processes train on CUDA, else ``device``."""
        return torch.device("cuda", self.local_rank) if self.distributed and device.type == "cuda" else device

    def share(self, items: Sequence[int]) -> list[int]:
        """This process's part of ``items``: contiguous parts in rank order, their lengths differing by at most
        one (the first ``len(items) % size`` are the longer ones); empty where there are fewer items than
        processes."""
        base, extra = divmod(len(items), self.size)
        start = self.rank * base + min(self.rank, extra)
        return list(items[start : start + base + (self.rank < extra)])

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` as training calls it: in :class:`DistributedDataParallel`, which averages the gradients over
        the processes in every backward pass, when there are several; else ``model`` itself."""
        if not self.distributed:
            return model
        device = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of ``value`` (a tensor on this process's device) over the processes."""
        if not self.distributed:
            return value
        total = value.detach().clone()
        dist.all_reduce(total)
        return total / self.size

    def gather(self, value: object) -> list[object]:
        """``value`` (any picklable object) of every process, in rank order."""
        if not self.distributed:
            return [value]
        values: list[object] = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.distributed:
            dist.barrier()

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Run the block in the main process, then in the others: e.g. for a cache the first one to run writes."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()


@contextmanager
def process_group(device: torch.device) -> Iterator[World]:
    """This process's :class:`World`; under ``torchrun`` with several processes, in a process group for the block
    (NCCL for a CUDA ``device``, with this process on ``cuda:LOCAL_RANK``; gloo otherwise), left after it.

    What the block makes with the group (a :class:`DistributedDataParallel` wrapper, whose gradient reducer holds
    the group) must be gone when it ends, so that :func:`torch.distributed.destroy_process_group` shuts the group
    down with nothing left using it. A wrapper that outlived the block took the group down later, in its own
    destructor; two-process runs then sometimes hung after their last line."""
    world = World.from_environment()
    if not world.distributed:
        yield world
        return
    if device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield world
    finally:
        dist.destroy_process_group()
