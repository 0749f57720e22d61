"""Knowledge distillation (``--distill-from``): a trained detector whose dense outputs the model in training learns
beside the labels (the losses: :mod:`model.distill`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from model import FCOSConfig, FCOSDetector

from .amp import autocast
from .checkpoint import CheckpointError, detector_from_checkpoint, load_checkpoint

# What the teacher must share with the model: the same classes in the same order, the same locations, and the
# same pixels (both read the batch as the model normalised it).
SHARED = ("classes", "strides", "normalization")


def load_teacher(path: str | Path, student: FCOSConfig) -> FCOSDetector:
    """The detector of checkpoint ``path`` (its weight average when it has one), eval mode and frozen, on the CPU.
    ``ValueError`` naming the flag and the file for a file that is not a detector's checkpoint, or one that does
    not share :data:`SHARED` with ``student``; ``FileNotFoundError`` naming the file."""
    try:
        teacher = detector_from_checkpoint(load_checkpoint(path)).requires_grad_(False)
    except CheckpointError as err:  # its message names the file
        raise ValueError(f"--distill-from: {err}") from None
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"--distill-from {path}: {err}") from None
    differ = [
        f"its {name}: {getattr(teacher.config, name)!r}, the model's: {getattr(student, name)!r}"
        for name in SHARED
        if getattr(teacher.config, name) != getattr(student, name)
    ]
    if differ:
        raise ValueError(f"--distill-from {path}: {'; '.join(differ)}")
    return teacher


@dataclass
class Teacher:
    """``teacher(images [B,3,H,W])`` -> its ``cls_logits [B,N,C]``, ``box_regression [B,N,4]`` and
    ``centerness_logits [B,N]``, without gradients, in the run's precision."""

    model: FCOSDetector  # on the run's device, in the model's memory format
    amp: str

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        with torch.no_grad(), autocast(images.device, self.amp):
            return self.model.network(images)
