"""One process per GPU under torchrun (DistributedDataParallel), or one process for the CPU / DataParallel."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from model import FCOSDetector


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


def unwrap(model: nn.Module) -> FCOSDetector:
    """The FCOSDetector inside DataParallel / DistributedDataParallel / TrainStep wrappers."""
    while not isinstance(model, FCOSDetector):
        model = model.module
    return model
