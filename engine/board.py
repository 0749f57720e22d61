"""TensorBoard event files for a training run (``train_voc.py --tensorboard``): every step's losses, LR and
pictures/s; every validation's mAP, per-class AP and a few validation pictures with their detections drawn.

TensorBoard is optional: ``pip install -r requirements-tensorboard.txt``; then ``tensorboard --logdir OUTPUT_DIR``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dataset import VOCDataset
from dataset.decoding import read_picture
from dataset.drawing import draw_detections

from .thresholds import FALLBACK_THRESHOLD

INSTALL = "pip install -r requirements-tensorboard.txt"


def check_tensorboard() -> None:
    """``ImportError`` saying how to install TensorBoard when it is not installed."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ImportError(f"--tensorboard needs the tensorboard package: {INSTALL}")


class Board:
    """The event files in ``folder``. A run resumed at step ``resume_step`` drops the events written after that step
    by the run it continues (the steps it trains again)."""

    def __init__(self, folder: str | Path, resume_step: int | None = None):
        check_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(folder), purge_step=None if resume_step is None else resume_step + 1)

    def write(self, row: dict[str, Any]) -> None:
        """One step's row of ``log.csv`` (with ``images_per_second``)."""
        step = row["step"]
        for name in (key for key in row if key.endswith("_loss")):
            self.writer.add_scalar(f"loss/{name}", row[name], step)
        self.writer.add_scalar("lr", row["lr"], step)
        self.writer.add_scalar("pictures_per_second", row["images_per_second"], step)

    def validation(self, step: int, result: dict[str, Any], pictures: Sequence[tuple[str, np.ndarray]]) -> None:
        """A validation's mAP and per-class AP, and ``pictures``: (name, RGB uint8 [H, W, 3])."""
        self.writer.add_scalar("val/mAP", result["map"], step)
        for name, ap in result["ap"].items():
            self.writer.add_scalar(f"val/AP/{name}", ap, step)
        for name, picture in pictures:
            self.writer.add_image(f"val/{name}", picture, step, dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def drawn_pictures(
    dataset: VOCDataset, detections: Sequence[dict[str, Any]], *, count: int = 3, width: int = 640
) -> list[tuple[str, np.ndarray]]:
    """The first ``count`` pictures of ``dataset`` with their ``detections`` (XML frame) scoring at least
    :data:`FALLBACK_THRESHOLD` drawn as ``detect.py`` draws them, scaled to ``width`` pixels: (id, RGB [H, W, 3])."""
    pictures = []
    for index, image_id in enumerate(dataset.ids[:count]):
        picture = read_picture(dataset.image_path(image_id), upright=dataset.upright[index])[..., ::-1].copy()
        found = [d for d in detections if d["image_id"] == image_id and d["score"] >= FALLBACK_THRESHOLD]
        drawn = draw_detections(picture, found, dataset.classes)[..., ::-1]
        height = round(drawn.shape[0] * width / drawn.shape[1])
        pictures.append((image_id, cv2.resize(drawn, (width, height), interpolation=cv2.INTER_AREA)))
    return pictures
