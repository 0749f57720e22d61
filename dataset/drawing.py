"""Drawing detections on pictures: a colour per class, labelled boxes that stay inside the picture, a legend."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

# Colour of class id k (RGB): PALETTE[(k - 1) % 20], twenty colours that are easy to tell apart.
PALETTE = (
    (230, 25, 75), (0, 130, 200), (255, 225, 25), (60, 180, 75), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
)  # fmt: skip
FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_colour(label: int) -> tuple[int, int, int]:
    """BGR colour of class id ``label`` (1..C)."""
    r, g, b = PALETTE[(label - 1) % len(PALETTE)]
    return b, g, r


def _text_colour(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on a light BGR background, white on a dark one."""
    b, g, r = colour
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def label_box(
    picture: np.ndarray,
    text: str,
    corner: tuple[int, int],
    colour: tuple[int, int, int],
    font_scale: float,
    thickness: int,
    below: bool = False,
) -> None:
    """``text`` on a filled box of ``colour`` standing on ``corner`` (a box's top-left; or hanging from it with
    ``below``); inside the picture: under the corner when there is no room above, moved left at the edge."""
    (text_w, text_h), baseline = cv2.getTextSize(text, FONT, font_scale, thickness)
    pad = max(1, text_h // 4)
    w, h = text_w + 2 * pad, text_h + baseline + 2 * pad
    x = min(max(corner[0], 0), max(picture.shape[1] - w, 0))
    y = corner[1] - h if corner[1] >= h and not below else max(corner[1], 0)
    y = min(y, max(picture.shape[0] - h, 0))
    cv2.rectangle(picture, (x, y), (x + w, y + h), colour, cv2.FILLED)
    cv2.putText(
        picture, text, (x + pad, y + pad + text_h), FONT, font_scale, _text_colour(colour), thickness, cv2.LINE_AA
    )


def _legend(picture: np.ndarray, classes: Sequence[str], counts: Counter, font_scale: float, thickness: int) -> None:
    """A swatch of each class's colour with ``name: count`` on a darkened panel in the top-right corner."""
    lines = [f"{name}: {counts[name]}" for name in classes]
    sizes = [cv2.getTextSize(line, FONT, font_scale, thickness) for line in lines]
    text_w = max(w for (w, _), _ in sizes)
    row = max(h + b for (_, h), b in sizes)
    pad = max(2, row // 3)
    panel_w, panel_h = text_w + row + 3 * pad, len(lines) * (row + pad) + pad
    x0, y0 = max(picture.shape[1] - panel_w - pad, 0), min(pad, picture.shape[0])
    panel = picture[y0 : y0 + panel_h, x0 : x0 + panel_w]
    panel[:] = (panel * 0.35).astype(np.uint8)
    for k, (line, ((_, text_h), _)) in enumerate(zip(lines, sizes), start=1):
        top = y0 + pad + (k - 1) * (row + pad)
        cv2.rectangle(picture, (x0 + pad, top), (x0 + pad + row, top + row), class_colour(k), cv2.FILLED)
        cv2.putText(
            picture, line, (x0 + row + 2 * pad, top + text_h), FONT, font_scale, (255, 255, 255), thickness, cv2.LINE_AA
        )


def draw_detections(picture: np.ndarray, detections: Sequence[dict[str, Any]], classes: Sequence[str]) -> np.ndarray:
    """Draw ``detections`` (boxes in the XML frame, as in detections.json) onto the BGR ``picture`` [H, W, 3] in
    place: each box in its class's colour labelled ``class score`` (``class`` for an entry without a score, such
    as a ground-truth box), and a legend with this picture's counts. Line width and font grow with the picture."""
    size = max(picture.shape[:2])
    line, font_scale, thickness = max(1, round(size / 500)), max(0.35, size / 2000), max(1, round(size / 1000))
    ids = {name: k for k, name in enumerate(classes, start=1)}
    for det in detections:
        colour = class_colour(ids[det["category"]])
        x1, y1, x2, y2 = (round(v - 1) for v in det["bbox"])
        cv2.rectangle(picture, (x1, y1), (x2, y2), colour, line)
        label = f"{det['category']} {det['score']:.2f}" if "score" in det else det["category"]
        label_box(picture, label, (x1, y1), colour, font_scale, thickness)
    _legend(picture, classes, Counter(det["category"] for det in detections), font_scale, thickness)
    return picture
