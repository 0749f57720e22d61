"""Copy-paste of objects: training objects cut out of their pictures and laid against the objects of a crop.

What the pretrained recipe still misses on unseen scenes are objects touching each other (a pile of a screw,
clips and a hex key; docs/cpu_recipe.md), and ``train`` shows few such scenes. Pasting objects of other
pictures next to, and partly over, a crop's own objects makes them. Each object is cut out of its box by
GrabCut (``cv2.grabCut`` initialised with the box) and pasted through a feathered mask, so the road around it
stays the crop's own and no rectangle edge marks where an object was put.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

PASTE_PROBABILITY = 0.5  # of a crop getting pasted objects
MAX_PASTED = 2  # objects pasted into one crop (1 to this many)
MIN_VISIBLE = 0.5  # an object covered by pasted ones beyond this share of its box loses its box
CUT_MARGIN = 0.3  # GrabCut's road sample around a box, as a share of the box's sides
FEATHER_SIGMA = 1.0  # pixels of the mask's soft edge
NEAR = (0.6, 1.0)  # distance of a pasted object from its neighbour: 1 = the boxes touch, less = they overlap


@dataclass(frozen=True)
class CutOut:
    """One object cut out of its picture: ``pixels`` uint8 [h, w, 3] of the pixels its box touches,
    ``alpha`` float32 [h, w] in [0, 1] (the object), ``box`` float32 [4] x1, y1, x2, y2 of the object's box
    in ``pixels``' continuous pixel edges, ``label`` its class (1..C)."""

    pixels: np.ndarray
    alpha: np.ndarray
    box: np.ndarray
    label: int


def _pixel_span(lo: float, hi: float, size: int) -> tuple[int, int]:
    """The pixels [start, stop) that the continuous interval [lo, hi) touches, inside [0, size)."""
    return max(math.floor(lo), 0), min(max(math.ceil(hi), math.floor(lo) + 1), size)


def cut_out(picture: np.ndarray, box: Sequence[float], label: int) -> CutOut | None:
    """The object in ``box`` (x1, y1, x2, y2, continuous pixel edges) of ``picture`` uint8 [H, W, 3].

    GrabCut separates it from the road, sampled in a margin of ``CUT_MARGIN`` around the box, and the pixels
    kept are those that also differ from the road's median colour by more than 90% of the road's pixels do.
    None where that leaves under 5% of the box or over 90% of it (a box under 4 pixels a side, no road
    around it, an object the road's colour): such an object is not pasted.
    """
    height, width = picture.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    (bx0, bx1), (by0, by1) = _pixel_span(x1, x2, width), _pixel_span(y1, y2, height)
    mx, my = math.ceil(CUT_MARGIN * (bx1 - bx0)) + 2, math.ceil(CUT_MARGIN * (by1 - by0)) + 2
    rx0, ry0, rx1, ry1 = max(bx0 - mx, 0), max(by0 - my, 0), min(bx1 + mx, width), min(by1 + my, height)
    region = np.ascontiguousarray(picture[ry0:ry1, rx0:rx1])
    inner = (slice(by0 - ry0, by1 - ry0), slice(bx0 - rx0, bx1 - rx0))
    foreground = None
    road = np.ones(region.shape[:2], bool)
    road[inner] = False
    if road.any() and min(bx1 - bx0, by1 - by0) >= 4:
        mask = np.zeros(region.shape[:2], np.uint8)
        models = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)  # GrabCut's k-means start: the same cut-out on every run
        cv2.grabCut(region, mask, (bx0 - rx0, by0 - ry0, bx1 - bx0, by1 - by0), *models, 5, cv2.GC_INIT_WITH_RECT)
        # GrabCut keeps the road's shadowed side of a thin object; what stays must also differ from the road
        distance = np.linalg.norm(region.astype(np.float32) - np.median(region[road], axis=0), axis=2)
        spread = np.percentile(distance[road], 90)
        grabbed = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
        distinct = cv2.morphologyEx((distance > spread).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
        foreground = (grabbed & distinct.astype(bool)).astype(np.uint8)[inner]
        count, parts, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
        if count > 1:  # the object, not the specks of road texture around it
            areas = stats[1:, cv2.CC_STAT_AREA]
            foreground = np.isin(parts, 1 + np.flatnonzero(areas >= 0.2 * areas.max())).astype(np.uint8)
        if not 0.05 <= foreground.mean() <= 0.9:
            foreground = None
    if foreground is None:
        return None
    alpha = cv2.GaussianBlur(foreground.astype(np.float32), (0, 0), FEATHER_SIGMA)
    alpha = np.maximum(alpha, foreground * 0.5)  # thin parts (a screw's shaft) stay at least half opaque
    local_box = np.array([x1 - bx0, y1 - by0, x2 - bx0, y2 - by0], np.float32)
    return CutOut(np.ascontiguousarray(region[inner]), alpha, local_box, int(label))


def _box_cover(cover: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Mean of ``cover`` [H, W] over the pixels each box [N, 4] touches -> [N] (an integral image, no loop)."""
    if len(boxes) == 0:
        return np.zeros(0, np.float64)
    height, width = cover.shape
    total = cv2.integral(cover.astype(np.float64))
    x0 = np.clip(np.floor(boxes[:, 0]), 0, width).astype(int)
    y0 = np.clip(np.floor(boxes[:, 1]), 0, height).astype(int)
    x1 = np.clip(np.maximum(np.ceil(boxes[:, 2]), x0 + 1), 0, width).astype(int)
    y1 = np.clip(np.maximum(np.ceil(boxes[:, 3]), y0 + 1), 0, height).astype(int)
    area = np.maximum((x1 - x0) * (y1 - y0), 1)
    return (total[y1, x1] - total[y0, x1] - total[y1, x0] + total[y0, x0]) / area


class ObjectBank:
    """Cut-outs of a data set's objects, and the augmentation that pastes them into training crops."""

    def __init__(self, cutouts: Sequence[CutOut]) -> None:
        labels = sorted({c.label for c in cutouts})
        self.by_label = {label: [c for c in cutouts if c.label == label] for label in labels}

    def __len__(self) -> int:
        return sum(len(c) for c in self.by_label.values())

    def _draw(self, scale: float) -> CutOut:
        """A random cut-out (a class uniformly, then an object of it), at ``scale`` and flipped half the time."""
        labels = list(self.by_label)
        group = self.by_label[labels[int(torch.randint(len(labels), ()))]]
        cut = group[int(torch.randint(len(group), ()))]
        pixels, alpha, box = cut.pixels, cut.alpha, cut.box
        if scale != 1.0:
            h, w = max(1, round(pixels.shape[0] * scale)), max(1, round(pixels.shape[1] * scale))
            sx, sy = w / pixels.shape[1], h / pixels.shape[0]
            pixels = cv2.resize(pixels, (w, h), interpolation=cv2.INTER_LINEAR)
            alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
            box = box * np.array([sx, sy, sx, sy], np.float32)
        if torch.rand(()) < 0.5:
            pixels, alpha = pixels[:, ::-1], alpha[:, ::-1]
            box = np.array([pixels.shape[1] - box[2], box[1], pixels.shape[1] - box[0], box[3]], np.float32)
        return CutOut(pixels, alpha, box, cut.label)

    def paste(
        self, picture: np.ndarray, boxes: torch.Tensor, labels: torch.Tensor, scale: float = 1.0
    ) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]:
        """With probability ``PASTE_PROBABILITY``, paste 1 to ``MAX_PASTED`` objects into ``picture``.

        picture: uint8 [H, W, 3]; boxes [M, 4] (continuous pixel edges) and labels [M] of its objects; scale:
        the picture's pixels per pixel of the pictures the bank was cut from. Each pasted object lies against a
        random object already there (its own or pasted), from touching it to overlapping it, or anywhere when
        there is none. An object covered beyond ``1 - MIN_VISIBLE`` of its box by objects pasted over it loses
        its box. Returns (picture, boxes [K + P, 4], labels [K + P], keep [M]): the K kept boxes of ``boxes``
        (``keep``), then the P pasted ones.
        """
        keep = torch.ones(len(boxes), dtype=torch.bool)
        if not self.by_label or torch.rand(()) >= PASTE_PROBABILITY:
            return picture, boxes, labels, keep
        height, width = picture.shape[:2]
        out = picture.astype(np.float32)
        neighbours = [b.tolist() for b in boxes]
        placed: list[tuple[np.ndarray, np.ndarray, tuple[slice, slice]]] = []  # box, alpha, where
        pasted_labels = []
        for _ in range(int(torch.randint(1, MAX_PASTED + 1, ()))):
            cut = self._draw(scale)
            h, w = cut.alpha.shape
            if h > height or w > width:
                continue
            if neighbours:
                nx1, ny1, nx2, ny2 = neighbours[int(torch.randint(len(neighbours), ()))]
                angle = 2 * math.pi * float(torch.rand(()))
                near = NEAR[0] + (NEAR[1] - NEAR[0]) * float(torch.rand(()))
                bw, bh = cut.box[2] - cut.box[0], cut.box[3] - cut.box[1]
                cx = (nx1 + nx2) / 2 + near * math.cos(angle) * (nx2 - nx1 + bw) / 2
                cy = (ny1 + ny2) / 2 + near * math.sin(angle) * (ny2 - ny1 + bh) / 2
                x0 = round(cx - (cut.box[0] + cut.box[2]) / 2)
                y0 = round(cy - (cut.box[1] + cut.box[3]) / 2)
            else:
                x0, y0 = int(torch.randint(width - w + 1, ())), int(torch.randint(height - h + 1, ()))
            x0, y0 = min(max(x0, 0), width - w), min(max(y0, 0), height - h)
            where = (slice(y0, y0 + h), slice(x0, x0 + w))
            alpha = cut.alpha[..., None]
            out[where] = alpha * cut.pixels + (1 - alpha) * out[where]
            box = cut.box + np.array([x0, y0, x0, y0], np.float32)
            placed.append((box, cut.alpha, where))
            pasted_labels.append(cut.label)
            neighbours.append(box.tolist())
        if not placed:
            return picture, boxes, labels, keep
        cover = np.zeros((height, width), np.float32)
        pasted_visible = []
        for box, alpha, where in reversed(placed):  # a pasted object is covered only by those pasted after it
            pasted_visible.append(1 - _box_cover(cover, box[None])[0] >= MIN_VISIBLE)
            cover[where] = np.maximum(cover[where], alpha)
        pasted_visible.reverse()
        keep = torch.from_numpy(1 - _box_cover(cover, boxes.numpy().reshape(-1, 4)) >= MIN_VISIBLE)
        new_boxes = torch.from_numpy(np.stack([b for (b, _, _), v in zip(placed, pasted_visible) if v]).reshape(-1, 4))
        new_labels = torch.tensor([lab for lab, v in zip(pasted_labels, pasted_visible) if v], dtype=labels.dtype)
        picture = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        return picture, torch.cat([boxes[keep], new_boxes.to(boxes.dtype)]), torch.cat([labels[keep], new_labels]), keep
