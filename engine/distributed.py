"""One process per GPU under torchrun (DistributedDataParallel), or one process for the CPU / DataParallel."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def init_distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank); starts a process group when launched by torchrun."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, 0
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return rank, world_size, local_rank


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``tensor`` reduced over processes in place (``sum``, ``min`` or ``max``); itself when alone."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op])
    return tensor


def parallelise(step_model: nn.Module, device: torch.device, num_gpus: int, sync_bn: bool = False) -> nn.Module:
    """DDP under torchrun (SyncBatchNorm with ``sync_bn``), DataParallel over ``num_gpus`` > 1, else the step
    itself."""
    if world_size() > 1:
        if sync_bn:
            step_model = nn.SyncBatchNorm.convert_sync_batchnorm(step_model)
        return nn.parallel.DistributedDataParallel(
            step_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return nn.DataParallel(step_model) if num_gpus > 1 else step_model


def process_device(requested: str, local_rank: int, data_parallel: bool = True) -> tuple[torch.device, int]:
    """The device of this process (its own GPU under torchrun) and how many GPUs it spreads a batch over
    (every visible one with DataParallel, when ``data_parallel`` and not under torchrun)."""
    if requested == "cuda" and world_size() > 1:
        return torch.device(f"cuda:{local_rank}"), 1
    device = torch.device(requested)
    several = data_parallel and device.type == "cuda" and world_size() == 1
    return device, torch.cuda.device_count() if several else 1
