"""One frame at a time: a detector called on a BGR picture in memory, as OpenCV decodes a video or a camera.

    detector = FrameDetector.load("checkpoint/fod-cpu/last.pth")      # or an ONNX export: "fcos.onnx"
    found = detector(cv2.imread("road.jpg"))                           # boxes in the frame's pixels
    for box, score, name in zip(found.boxes, found.scores, found.names):
        print(name, f"{score:.2f}", box)

The frame is prepared exactly as :class:`dataset.pictures.PictureDataset` prepares a picture file (RGB, resized
keeping its aspect ratio to the model's ``resize_size``, normalised as its config says, padded to multiples
of 32), and the boxes come back through the same :func:`engine.inference.to_detections`, so a frame and the
same pixels saved as a PNG give the same detections.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from dataset import pixels_to_xml, xml_to_pixels
from dataset.decoding import resize_to
from dataset.sizes import resized_shape
from dataset.transforms import normalize_pad

from .checkpoint import load_detector
from .export import load_onnx_detector
from .inference import Detector, detect_batch, to_detections
from .thresholds import FALLBACK_THRESHOLD, deploy_thresholds


@dataclass
class Detections:
    """What one frame holds: ``boxes`` float32 [K, 4] (x1, y1, x2, y2 in the frame's continuous pixels, 0-based),
    ``scores`` float32 [K], ``labels`` int64 [K] (1..C) and the model's ``classes`` (label k is ``classes[k - 1]``)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def names(self) -> list[str]:
        """The class name of each detection."""
        return [self.classes[label - 1] for label in self.labels.tolist()]

    def __getitem__(self, keep: np.ndarray | slice) -> Detections:
        """The detections ``keep`` selects (a boolean mask, indices or a slice)."""
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], self.classes)

    def to_json(self, image_id: str) -> list[dict[str, Any]]:
        """Entries of the detections JSON: ``{"image_id", "category", "score", "bbox"}``, the box in the VOC XML's
        1-based frame."""
        boxes = pixels_to_xml(torch.from_numpy(self.boxes)).tolist()
        return [
            {"image_id": image_id, "category": name, "score": score, "bbox": box}
            for name, score, box in zip(self.names, self.scores.tolist(), boxes)
        ]


class FrameDetector:
    """A detector (PyTorch, or an ONNX export run by onnxruntime or OpenVINO) and its score thresholds, called on
    one BGR frame [H, W, 3] uint8.

    ``score_threshold``: one number or one per class; by default the per-class best-F1 thresholds stored with the
    model (its final evaluation), :data:`engine.thresholds.FALLBACK_THRESHOLD` for a class without one, and that
    fallback for every class of a model without stored thresholds.
    """

    def __init__(
        self,
        detector: Detector,
        *,
        stored_thresholds: dict[str, Any] | None = None,
        score_threshold: float | Sequence[float] | None = None,
        device: torch.device | str = "cpu",
        amp: str = "off",
    ) -> None:
        self.detector, self.device, self.amp = detector, torch.device(device), amp
        self.config = detector.config
        if score_threshold is None:
            score_threshold = (
                deploy_thresholds(stored_thresholds, self.classes, FALLBACK_THRESHOLD)
                if stored_thresholds
                else FALLBACK_THRESHOLD
            )
        self.score_threshold = score_threshold
        self._threshold = (
            torch.tensor(score_threshold) if isinstance(score_threshold, (list, tuple)) else score_threshold
        )

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: torch.device | str = "cpu",
        score_threshold: float | Sequence[float] | None = None,
        runtime: str = "onnxruntime",
    ) -> FrameDetector:
        """From a checkpoint written by training (any suffix but .onnx; run on ``device``) or an ONNX export (run on
        the CPU by ``runtime``: onnxruntime or openvino). ``FileNotFoundError`` or ``ValueError`` naming the file
        when it is not one."""
        if Path(path).suffix.lower() == ".onnx":
            detector = load_onnx_detector(path, runtime=runtime)
            return cls(detector, stored_thresholds=detector.thresholds, score_threshold=score_threshold)
        if runtime != "onnxruntime":
            raise ValueError(f"{path}: runtime {runtime!r} runs ONNX exports; a checkpoint runs in PyTorch")
        network, checkpoint = load_detector(path)
        return cls(
            network.to(device),
            stored_thresholds=checkpoint.get("thresholds"),
            score_threshold=score_threshold,
            device=device,
        )

    @property
    def classes(self) -> tuple[str, ...]:
        return self.config.classes

    def prepare(self, frame_bgr: np.ndarray) -> tuple[torch.Tensor, dict[str, Any]]:
        """The frame as the model takes it, ``[1, 3, H', W']``, and the target that maps its boxes back."""
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
            raise ValueError(f"a frame is uint8 [H, W, 3] BGR; got {frame_bgr.dtype} {list(frame_bgr.shape)}")
        h0, w0 = frame_bgr.shape[:2]
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        picture = resize_to(rgb, resized_shape(rgb.shape[0], rgb.shape[1], self.config.resize_size))
        height, width = picture.shape[:2]
        target = {
            "image_id": "",
            "orig_size": (h0, w0),
            "scale": torch.tensor([width / w0, height / h0], dtype=torch.float32),
            "offset": torch.zeros(2, dtype=torch.float32),
        }
        return normalize_pad(picture, normalization=self.config.normalization)[None], target

    def __call__(self, frame_bgr: np.ndarray) -> Detections:
        image, target = self.prepare(frame_bgr)
        output = detect_batch(self.detector, image.to(self.device), self.amp, score_threshold=self._threshold)[0]
        found = to_detections(output, target, self.classes)
        ids = {name: k for k, name in enumerate(self.classes, start=1)}
        boxes = xml_to_pixels(torch.tensor([d["bbox"] for d in found], dtype=torch.float32).reshape(-1, 4))
        return Detections(
            boxes=boxes.numpy(),
            scores=np.array([d["score"] for d in found], dtype=np.float32),
            labels=np.array([ids[d["category"]] for d in found], dtype=np.int64),
            classes=self.classes,
        )
