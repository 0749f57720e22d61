"""Class models: some classes detected by another model of the same classes, at that model's picture size.

A small class can be found better by a model trained and run on larger pictures, while the others are found
better at a smaller size (docs/cpu_scratch.md). VOC AP is computed class by class, so taking each class from
the model that detects it best combines them
without one model's false positives reaching another's classes: every model keeps only its own classes
(a score threshold of +inf for the others), and each picture's detections are merged, highest score first.

    --class-model clip_Y=checkpoint/full-size/last.pth  (e.g. trained with --resize 1440x2560)
    --class-model clip_Y=full-size.onnx                  (an export, run by onnxruntime)
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .checkpoint import load_detector
from .export import load_onnx_detector
from .inference import Detector
from .memory_format import resolve_channels_last


@dataclass
class Member:
    """One model of a combination, the classes taken from it, and the operating points stored with it."""

    detector: Detector
    classes: tuple[str, ...]
    source: str
    stored: dict[str, Any] | None = None

    def thresholds(self, per_class: float | Sequence[float] | None = None) -> Tensor:
        """Score thresholds ``[C]``: ``per_class`` (one number, or one a class; default: the model's own
        threshold) for this member's classes, +inf (never kept) for the others."""
        names = self.detector.config.classes
        per_class = self.detector.config.score_threshold if per_class is None else per_class
        values = [per_class] * len(names) if isinstance(per_class, (int, float)) else per_class
        return torch.tensor(
            [t if n in self.classes else float("inf") for n, t in zip(names, values)], dtype=torch.float64
        )


def class_model_spec(text: str) -> tuple[tuple[str, ...], str]:
    """``"clip_Y,nail=path.pth"`` -> ``(("clip_Y", "nail"), "path.pth")`` (argparse type)."""
    names, sep, path = text.partition("=")
    classes = tuple(n.strip() for n in names.split(",") if n.strip())
    if not sep or not classes or not path:
        raise argparse.ArgumentTypeError(f"expected CLASS[,CLASS...]=MODEL, got {text!r}")
    return classes, path


def load_member(classes: tuple[str, ...], path: str | Path) -> Member:
    """A --class-model: a ``.onnx`` file through onnxruntime, any other file as a checkpoint, with the thresholds
    stored with it. Errors name the file."""
    if Path(path).suffix.lower() == ".onnx":
        detector = load_onnx_detector(path)
        return Member(detector, classes, str(path), detector.thresholds)
    detector, checkpoint = load_detector(path)
    return Member(detector, classes, str(path), checkpoint.get("thresholds"))


def refuse_compiling_onnx(members: Iterable[Member]) -> None:
    """``ValueError`` naming the first member that is an ONNX model: ``--compile`` is for PyTorch networks."""
    for member in members:
        if not isinstance(member.detector, torch.nn.Module):
            raise ValueError(f"--compile is for checkpoints; {member.source} is run by onnxruntime, which optimises it")


def set_channels_last(members: Iterable[Member], choice: str, device: torch.device | str) -> None:
    """The memory format of every member run by PyTorch, each chosen for its own trunk (``--channels-last``);
    onnxruntime chooses its own."""
    for member in members:
        if isinstance(member.detector, torch.nn.Module):
            backbone = member.detector.config.backbone
            member.detector.set_channels_last(resolve_channels_last(choice, device, backbone)[0])


def add_class_model_argument(parser: argparse.ArgumentParser, note: str) -> None:
    """``--class-model CLASS[,CLASS]=MODEL`` (repeatable) on a script's parser; ``note`` ends its help."""
    parser.add_argument(
        "--class-model",
        action="append",
        type=class_model_spec,
        default=[],
        metavar="CLASS[,CLASS]=MODEL",
        help="detect these classes with another model of the same classes (a checkpoint, or an export ending in "
        f".onnx), at its own picture size (repeatable); {note}",
    )


def combine(primary: Member, class_models: Sequence[Member]) -> list[Member]:
    """The members of a combination: each class model with its classes, then ``primary`` with every class left.
    ``ValueError`` naming the model when a class model's classes differ from the primary's, a class is unknown,
    or a class is given to two class models."""
    classes = primary.detector.config.classes
    taken: set[str] = set()
    for member in class_models:
        if member.detector.config.classes != classes:
            raise ValueError(
                f"{member.source}: its classes {', '.join(member.detector.config.classes)} differ from "
                f"{primary.source}'s {', '.join(classes)}; a class model must detect the same classes"
            )
        unknown = [n for n in member.classes if n not in classes]
        if unknown:
            raise ValueError(
                f"--class-model {member.source}: unknown classes {unknown}; the classes are {', '.join(classes)}"
            )
        twice = taken.intersection(member.classes)
        if twice:
            raise ValueError(f"--class-model {member.source}: {sorted(twice)} already taken from another class model")
        taken.update(member.classes)
    rest = tuple(n for n in classes if n not in taken)
    return [*class_models, Member(primary.detector, rest, primary.source, primary.stored)]


def member_thresholds(
    members: Sequence[Member], choose: Callable[[dict[str, Any] | None], float | Sequence[float]] | None = None
) -> list[Tensor]:
    """Each member's score thresholds ``[C]``: ``choose(member.stored)`` (a number or one a class; the model's
    own threshold without ``choose``) for its classes, +inf for the others (see :meth:`Member.thresholds`)."""
    return [member.thresholds(choose(member.stored) if choose else None) for member in members]


def merge_detections(parts: Iterable[Sequence[dict[str, Any]]], max_per_image: int) -> list[dict[str, Any]]:
    """Detections JSON entries of several members (disjoint classes) -> each picture's, highest score first,
    at most ``max_per_image`` a picture; pictures in the order they first appear."""
    by_image: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for part in parts:
        for detection in part:
            by_image[detection["image_id"]].append(detection)
    merged: list[dict[str, Any]] = []
    for detections in by_image.values():
        merged += sorted(detections, key=lambda d: -d["score"])[:max_per_image]
    return merged
