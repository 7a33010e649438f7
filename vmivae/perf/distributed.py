"""Data-parallel training with PyTorch's DistributedDataParallel, started by ``torchrun``.

``torchrun --nproc_per_node=N -m vmivae train ...`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``;
:func:`setup` then joins the process group (gloo on CPU, nccl on CUDA, one GPU per process). The
config's ``batch_size`` stays the *effective* batch: every process draws the same global batch and
trains on its ``batch_size / N`` share; DDP averages the gradients, so one step updates the weights as
one process with the whole batch would (up to BatchNorm, whose statistics are per process, and the
sampling noise, which each process draws for its own share). Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this module initialised the process group (and tears it down)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun; returns the info and this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world_size, local_rank, owns), device


def teardown(info: DistInfo) -> None:
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: torch.nn.Module, info: DistInfo, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around ``module`` when the job has several processes."""
    if not info.enabled:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)


def mean_(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Average ``tensor`` over all processes, in place."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= info.world_size
    return tensor


def any_true(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every process if ``flag`` is true on any (so that all stop at the same step)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather(obj: Any, info: DistInfo) -> list[Any]:
    """Every process's ``obj``, in rank order (a list of one without distribution)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def from_main(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def average_batchnorm_statistics(modules, info: DistInfo) -> None:
    """Under DDP each process keeps BatchNorm running statistics of its own shard; a checkpoint (and the
    returned model) gets their average, so that every process holds the same evaluation model."""
    if not info.enabled:
        return
    for module in modules:
        for m in (module.modules() if module is not None else ()):
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                mean_(m.running_mean, info)
                mean_(m.running_var, info)


def on_main(info: DistInfo, action) -> None:
    """Run ``action`` on rank 0; a failure there is raised on every process (nobody waits forever)."""
    error = None
    if info.is_main:
        try:
            action()
        except Exception as exc:  # re-raised below, on all ranks
            error = exc
    error = from_main(error, info) if info.enabled else error
    if error is not None:
        raise error
