"""Class models: some classes detected by another model of the same classes, at that model's picture size.

On the foreign-object data the smallest class (clip_Y, about 23x27 px at 720x1280) is found far better by a
model trained and run on the full 1440x2560 pictures, while the other classes are found better at 720x1280.
VOC AP is computed class by class, so taking each class from the model that detects it best combines them
without one model's false positives reaching another's classes: every model keeps only its own classes
(a score threshold of +inf for the others), and each picture's detections are merged, highest score first.

    --class-model clip_Y=checkpoint/fod-cpu-full/last.pth
    --class-model clip_Y=fod-cpu-full.onnx            (an export, run by onnxruntime)
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .checkpoint import load_detector
from .export import load_onnx_detector
from .inference import Detector


@dataclass
class Member:
    """One model of a combination and the classes taken from it."""

    detector: Detector
    classes: tuple[str, ...]
    source: str

    def thresholds(self, per_class: Sequence[float] | None = None) -> Tensor:
        """Score thresholds ``[C]``: ``per_class`` (default: the model's own threshold) for this member's
        classes, +inf (never kept) for the others."""
        names = self.detector.config.classes
        per_class = per_class or [self.detector.config.score_threshold] * len(names)
        return torch.tensor([t if n in self.classes else float("inf") for n, t in zip(names, per_class)])


def class_model_spec(text: str) -> tuple[tuple[str, ...], str]:
    """``"clip_Y,nail=path.pth"`` -> ``(("clip_Y", "nail"), "path.pth")`` (argparse type)."""
    names, sep, path = text.partition("=")
    classes = tuple(n.strip() for n in names.split(",") if n.strip())
    if not sep or not classes or not path:
        raise argparse.ArgumentTypeError(f"expected CLASS[,CLASS...]=MODEL, got {text!r}")
    return classes, path


def load_class_model(path: str | Path) -> tuple[Detector, dict[str, Any] | None]:
    """A class model and the thresholds stored with it (None when none are): a ``.onnx`` file through
    onnxruntime, any other file as a checkpoint. Errors name the file."""
    if Path(path).suffix.lower() == ".onnx":
        detector = load_onnx_detector(path)
        return detector, detector.thresholds
    detector, checkpoint = load_detector(path)
    return detector, checkpoint.get("thresholds")


def refuse_compiling_onnx(members: Iterable[Member]) -> None:
    """``ValueError`` naming the first member that is an ONNX model: ``--compile`` is for PyTorch networks."""
    for member in members:
        if not isinstance(member.detector, torch.nn.Module):
            raise ValueError(f"--compile is for checkpoints; {member.source} is run by onnxruntime, which optimises it")


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


def combine(
    primary: Detector, primary_source: str, class_models: Iterable[tuple[Detector, tuple[str, ...], str]]
) -> list[Member]:
    """The members of a combination: each class model with its classes, then the primary with every class
    left. ``ValueError`` naming the checkpoint when a class model's classes differ from the primary's, a class
    is unknown, or a class is given to two class models."""
    classes = primary.config.classes
    members, taken = [], set()
    for detector, wanted, source in class_models:
        if detector.config.classes != classes:
            raise ValueError(
                f"{source}: its classes {', '.join(detector.config.classes)} differ from "
                f"{primary_source}'s {', '.join(classes)}; a class model must detect the same classes"
            )
        unknown = [n for n in wanted if n not in classes]
        if unknown:
            raise ValueError(f"--class-model {source}: unknown classes {unknown}; the classes are {', '.join(classes)}")
        twice = taken.intersection(wanted)
        if twice:
            raise ValueError(f"--class-model {source}: {sorted(twice)} already taken from another class model")
        taken.update(wanted)
        members.append(Member(detector, tuple(wanted), source))
    members.append(Member(primary, tuple(n for n in classes if n not in taken), primary_source))
    return members


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
