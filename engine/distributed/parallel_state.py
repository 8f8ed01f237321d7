"""TensorParallelGroup: the collectives parallel layers call, and `init_distributed` that sets up torch.distributed.

At world size 1 every collective returns its input untouched and torch.distributed is never initialised, so the
single-process engine pays nothing. Backends: NCCL on CUDA, gloo on CPU; objects (each step's batch) always travel
over a gloo group. Every collective is bounded by the process group's timeout, so a dead peer is an exception on the
survivors, not a hang.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from engine.parallel.layout import ParallelLayout

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 600.0  # a collective waiting longer than this raises (model load and warm-up included)


class TensorParallelGroup:
    """One rank's view of the tensor-parallel group; the default instance is a single rank."""

    def __init__(self, layout: ParallelLayout = ParallelLayout(), device_group: Any = None,
                 cpu_group: Any = None) -> None:
        if layout.world_size > 1 and (device_group is None or cpu_group is None):
            raise ValueError("a tensor-parallel group of several ranks needs its process groups (init_distributed)")
        self.layout = layout
        self.device_group = device_group  # collectives on model tensors (NCCL on CUDA, gloo on CPU)
        self.cpu_group = cpu_group  # gloo: pickled objects (the step's batch)

    @property
    def rank(self) -> int:
        return self.layout.rank

    @property
    def world_size(self) -> int:
        return self.layout.world_size

    @property
    def is_driver(self) -> bool:
        """Rank 0 schedules and samples; the others follow."""
        return self.layout.rank == 0

    def barrier(self) -> None:
        """Every rank reached this point. NOTE: used before leaving the group, so that no rank tears its
        connections down while a peer still completes the last collective (gloo then aborts the process)."""
        if self.world_size > 1:
            dist.barrier(group=self.cpu_group)

    def release(self) -> None:
        """Drop the process-group handles (before destroy_distributed), so the groups are freed in order now and
        not during interpreter finalization, where gloo's threads abort the process. Unusable afterwards."""
        self.device_group = self.cpu_group = None

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of x over ranks (in place)."""
        if self.world_size == 1:
            return x
        dist.all_reduce(x, group=self.device_group)
        return x

    def all_gather(self, x: torch.Tensor) -> torch.Tensor:
        """Every rank's x [..., n] concatenated along the last dim in rank order: [..., world_size * n]."""
        if self.world_size == 1:
            return x
        gathered = torch.empty((self.world_size * x.shape[0], *x.shape[1:]), dtype=x.dtype, device=x.device)
        dist.all_gather_single(gathered, x.contiguous(), group=self.device_group)  # one collective
        return gathered.view(self.world_size, *x.shape).movedim(0, -2).reshape(*x.shape[:-1], self.world_size * x.shape[-1])

    def broadcast(self, x: torch.Tensor) -> torch.Tensor:
        """Rank 0's x on every rank (in place)."""
        if self.world_size > 1:
            dist.broadcast(x, src=0, group=self.device_group)
        return x

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's picklable obj on every rank (the others pass None)."""
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.cpu_group)
        return box[0]

    def min_over_ranks(self, value: int) -> int:
        """The smallest of every rank's value (e.g. KV blocks that fit on every device)."""
        if self.world_size == 1:
            return value
        t = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MIN, group=self.cpu_group)
        return int(t.item())


def init_distributed(layout: ParallelLayout, device: torch.device, init_method: str,
                     timeout_s: float = DEFAULT_TIMEOUT_S) -> TensorParallelGroup:
    """Join the process group (every rank calls this with the same init_method) and return this rank's group."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = datetime.timedelta(seconds=timeout_s)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=init_method, rank=layout.rank, world_size=layout.world_size,
                            timeout=timeout)
    cpu_group = dist.group.WORLD if backend == "gloo" else dist.new_group(backend="gloo", timeout=timeout)
    logger.info("rank %d/%d joined the %s process group", layout.rank, layout.world_size, backend)
    return TensorParallelGroup(layout, dist.group.WORLD, cpu_group)


def destroy_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@dataclass(frozen=True, slots=True)
class TorchrunEnv:
    """The environment torchrun (torch.distributed.run) gives every process it starts."""

    rank: int  # RANK: global rank
    world_size: int  # WORLD_SIZE: processes over all nodes
    local_rank: int  # LOCAL_RANK: rank on this node (its GPU index)


def torchrun_env() -> TorchrunEnv | None:
    """The torchrun variables when this process was started by torchrun with WORLD_SIZE > 1, else None.
    MASTER_ADDR / MASTER_PORT are read by torch.distributed itself (init_method "env://")."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    return TorchrunEnv(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
