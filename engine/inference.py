"""Inference: batches through a detector (PyTorch, or an ONNX export in onnxruntime or OpenVINO), test-time flip
and scales, boxes back to the picture.

A detector here is anything with a ``config`` (:class:`model.FCOSConfig`),
``dense(images) -> (scores [B,N,C], boxes [B,N,4])`` and
``select(scores, boxes, image_size, score_threshold=None, pass_sizes=None) -> [{"boxes", "scores", "labels"}]``:
:class:`model.FCOSDetector`, or :class:`engine.export.OnnxDetector` (same selection code).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from dataset import VOCDataset, boxes_to_original, collate_fn, pixels_to_xml
from model import FCOSConfig

from .amp import autocast
from .compiling import compile_detector
from .memory_format import resolve_channels_last
from .metrics import evaluate_detections


class Detector(Protocol):
    config: FCOSConfig

    def dense(self, images: Tensor) -> tuple[Tensor, Tensor]: ...

    def select(
        self,
        scores: Tensor,
        boxes: Tensor,
        image_size: tuple[int, int],
        score_threshold: float | Tensor | None = None,
        pass_sizes: list[tuple[int, int]] | None = None,
    ) -> list[dict[str, Tensor]]: ...


def detect_batch(
    detector: Detector,
    images: Tensor,
    amp: str = "off",
    flip: bool = False,
    score_threshold: float | Tensor | None = None,
    scales: Sequence[float] = (1.0,),
) -> list[dict[str, Tensor]]:
    """Detections for ``images [B,3,H,W]`` in their pixels, selected from every pass together (test-time
    augmentation): one pass per scale of ``scales`` (the batch as given resized by it, each side to the nearest
    multiple of 32; 1 is the batch itself), each also on the mirrored pictures with ``flip``.
    ``score_threshold``: see ``select``."""
    height, width = images.shape[-2:]
    all_scores, all_boxes, pass_sizes = [], [], []
    with torch.inference_mode(), autocast(images.device, amp):
        for scale in scales:
            size = (_multiple_of_32(height * scale), _multiple_of_32(width * scale))
            resized = size != (height, width)
            scaled = (
                F.interpolate(images, size=size, mode="bilinear", antialias=size[0] < height) if resized else images
            )
            to_input = torch.tensor([width / size[1], height / size[0]] * 2, device=images.device)
            for mirrored in (False, True) if flip else (False,):
                scores, boxes = detector.dense(scaled.flip(-1) if mirrored else scaled)
                boxes = boxes.float()
                if mirrored:
                    x1, y1, x2, y2 = boxes.unbind(-1)
                    boxes = torch.stack([size[1] - x2, y1, size[1] - x1, y2], dim=-1)
                if resized:  # back to the input's pixels
                    boxes = boxes * to_input
                all_scores.append(scores.float())
                all_boxes.append(boxes)
                pass_sizes.append(size)
    return detector.select(
        torch.cat(all_scores, dim=1),
        torch.cat(all_boxes, dim=1),
        (height, width),
        score_threshold,
        pass_sizes=pass_sizes,
    )


def _multiple_of_32(side: float) -> int:
    """The multiple of 32 nearest ``side`` (halves up), at least 32."""
    return max(32, math.floor(side / 32 + 0.5) * 32)


def to_detections(output: dict[str, Tensor], target: dict[str, Any], classes: Sequence[str]) -> list[dict[str, Any]]:
    """One picture's detections (input-tensor pixels) -> ``{"image_id", "category", "score", "bbox"}`` dicts
    in the original picture's XML frame (1-based inclusive), clipped to it. Boxes that cover less than
    one original pixel across are dropped: they cannot be written in that frame."""
    boxes = boxes_to_original(output["boxes"].float().cpu(), target)
    height, width = target["orig_size"]
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, int(width))
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, int(height))
    visible = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
    boxes = pixels_to_xml(boxes[visible])
    scores, labels = output["scores"].float().cpu()[visible], output["labels"].cpu()[visible]
    return [
        {"image_id": target["image_id"], "category": classes[label - 1], "score": score, "bbox": box}
        for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist())
    ]


def predict(
    detector: Detector,
    batches: Iterable,
    *,
    device: torch.device | str,
    classes: Sequence[str],
    amp: str = "off",
    flip: bool = False,
    scales: Sequence[float] = (1.0,),
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Detections JSON entries for every picture of ``batches`` (images, targets) from a VOC or picture loader;
    ``flip`` and ``scales``: :func:`detect_batch`'s test-time augmentation."""
    device = torch.device(device)
    if isinstance(detector, torch.nn.Module):
        detector.eval()
    detections: list[dict[str, Any]] = []
    for images, targets in tqdm(batches, desc="detect", unit="batch", disable=not progress, leave=False):
        outputs = detect_batch(detector, images.to(device, non_blocking=True), amp, flip, scales=scales)
        for output, target in zip(outputs, targets):
            detections += to_detections(output, target, classes)
    return detections


def eval_loader(dataset: VOCDataset, batch_size: int, workers: int, device: torch.device | str) -> DataLoader:
    """Evaluation batches of ``dataset`` in order."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=torch.device(device).type == "cuda",
    )


def evaluate(
    detector: Detector,
    dataset: VOCDataset,
    *,
    device: torch.device | str,
    batch_size: int = 2,
    workers: int = 2,
    amp: str = "off",
    flip: bool = False,
    scales: Sequence[float] = (1.0,),
    iou_threshold: float = 0.5,
    metric: str = "voc12",
    progress: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Detect on ``dataset`` (``train=False``) and score it: (:func:`engine.metrics.evaluate_detections`'s
    result, the detections)."""
    loader = eval_loader(dataset, batch_size, workers, device)
    detections = predict(
        detector, loader, device=device, classes=dataset.classes, amp=amp, flip=flip, scales=scales, progress=progress
    )
    result = evaluate_detections(detections, dataset.ground_truth(), dataset.classes, iou_threshold, metric)
    return result, detections


def place(detector: Detector, *, device: torch.device | str, channels_last: str = "auto") -> Detector:
    """``detector`` on ``device``, a PyTorch network in the memory format ``channels_last`` (``--channels-last``)
    chooses for its trunk; an ONNX runtime chooses its own."""
    if isinstance(detector, torch.nn.Module):
        detector.set_channels_last(resolve_channels_last(channels_last, device, detector.config.backbone)[0])
    return detector.to(device)


def compile_network(detector: Detector, source: str | Path) -> str:
    """``torch.compile`` the network of ``detector`` where it works (see :func:`engine.compiling.compile_detector`);
    ``ValueError`` naming ``source`` for an ONNX model."""
    if not isinstance(detector, torch.nn.Module):
        raise ValueError(f"--compile is for checkpoints; {source} is run by an ONNX runtime, which optimises it")
    return compile_detector(detector)
