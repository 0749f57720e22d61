"""Training augmentation, object-centred crops, normalisation and padding.

Geometry on boxes goes through ``torchvision.transforms.v2`` with ``tv_tensors.BoundingBoxes``:
the pipeline works on the resized uint8 picture (a PIL image, where rotation and colour jitter
are cheap) together with a target dict ``{"boxes": BoundingBoxes XYXY, "labels", "difficult"}``.
Normalisation and padding come last, on whatever the augmentation returned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torchvision.transforms import InterpolationMode, v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# uint8 fill for pixels that rotation brings in: the mean colour, i.e. ~0 after normalisation
MEAN_FILL = tuple(round(255 * m) for m in IMAGENET_MEAN)

AUGMENTATIONS = ("flip", "color", "rotate", "crop")
DEFAULT_AUGMENT = ("flip", "color", "rotate")


def _labels_and_difficult(inputs: tuple) -> tuple[torch.Tensor, ...]:
    """Tensors that SanitizeBoundingBoxes filters along with the boxes."""
    target = inputs[1]
    return tuple(target[k] for k in ("labels", "difficult") if k in target)


def build_augmentation(augment: Sequence[str] = DEFAULT_AUGMENT) -> v2.Compose | None:
    """The training pipeline for ``(PIL image, {"boxes": BoundingBoxes, "labels", "difficult"})``.

    augment: names out of ``AUGMENTATIONS``, applied in that order:
        "crop"   v2.RandomIoUCrop (SSD-style random crop; the picture gets smaller),
        "flip"   horizontal flip, p 0.5,
        "color"  colour jitter (brightness/contrast/saturation/hue 0.1), p 0.3,
        "rotate" rotation within +-10 degrees, p 0.5; each box becomes the bounding box of
                 its rotated corners.
    Boxes are then clamped to the picture and degenerate ones (side < 1 px) dropped together
    with their labels. Returns None for an empty ``augment``.
    """
    unknown = [a for a in augment if a not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; choose from {AUGMENTATIONS}")
    if not augment:
        return None
    ops: list[v2.Transform] = []
    if "crop" in augment:
        ops.append(v2.RandomIoUCrop())
    if "flip" in augment:
        ops.append(v2.RandomHorizontalFlip(p=0.5))
    if "color" in augment:
        ops.append(v2.RandomApply([v2.ColorJitter(0.1, 0.1, 0.1, 0.1)], p=0.3))
    if "rotate" in augment:
        rotation = v2.RandomRotation(10.0, interpolation=InterpolationMode.BILINEAR, fill=MEAN_FILL)
        ops.append(v2.RandomApply([rotation], p=0.5))
    ops += [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=_labels_and_difficult)]
    return v2.Compose(ops)


def normalize_pad(image: np.ndarray, min_size: tuple[int, int] | None = None, stride: int = 32) -> torch.Tensor:
    """uint8 RGB picture [H, W, 3] -> ImageNet-normalised float32 [3, H', W'].

    H' and W' are the smallest multiples of ``stride`` that are >= H and W (and >= min_size
    (h, w) when given); the extra rows/columns at the bottom/right are zeros. A side that is
    already a multiple of ``stride`` is not padded.
    """
    h, w = image.shape[:2]
    if min_size is not None:
        h_out, w_out = max(h, min_size[0]), max(w, min_size[1])
    else:
        h_out, w_out = h, w
    h_out, w_out = -(-h_out // stride) * stride, -(-w_out // stride) * stride
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    out = torch.zeros(3, h_out, w_out)
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    torch.addcmul(-mean / std, pixels, 1.0 / (255.0 * std), out=out[:, :h, :w])
    return out


def _window_start(lo: float, hi: float, size: int, max_start: int) -> int:
    """Start of a window of ``size`` along one axis that holds [lo, hi], clamped to [0, max_start]."""
    first, last = math.ceil(hi) - size, math.floor(lo)
    if first <= last:
        start = int(torch.randint(first, last + 1, ()).item())
    else:  # the object is longer than the window: centre the window on it
        start = round((lo + hi) / 2 - size / 2)
    return min(max(start, 0), max_start)


def sample_crop_window(boxes: torch.Tensor, image_size: tuple[int, int], crop_size: tuple[int, int]) -> tuple[int, int, int]:
    """Top-left (x0, y0) of a ``crop_size`` (h, w) window around a random object.

    boxes: [M, 4] x1, y1, x2, y2 in the picture's pixels; image_size: (H, W).
    The window holds the chosen object whole (centred on it when the object is larger than
    the window) and lies inside the picture (at (0, 0) along an axis where the picture is
    smaller than the window). Without objects the window is uniformly random.
    Returns (x0, y0, index of the chosen object or -1). Uses torch's global RNG, so each
    DataLoader worker draws its own windows.
    """
    (height, width), (ch, cw) = image_size, crop_size
    max_x0, max_y0 = max(width - cw, 0), max(height - ch, 0)
    if len(boxes) == 0:
        x0 = int(torch.randint(0, max_x0 + 1, ()).item())
        y0 = int(torch.randint(0, max_y0 + 1, ()).item())
        return x0, y0, -1
    index = int(torch.randint(0, len(boxes), ()).item())
    x1, y1, x2, y2 = boxes[index].tolist()
    return _window_start(x1, x2, cw, max_x0), _window_start(y1, y2, ch, max_y0), index


def crop_boxes(boxes: torch.Tensor, window: tuple[float, float, float, float], min_visible: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes [M, 4] clipped to ``window`` (x0, y0, x1, y1) and shifted into its frame.

    A box is kept when the part of it inside the window has at least ``min_visible`` of its
    area (and is not empty). Returns (kept boxes [K, 4] relative to (x0, y0), keep mask [M]).
    """
    x0, y0, x1, y1 = window
    clipped = torch.stack(
        (boxes[:, 0].clamp(x0, x1), boxes[:, 1].clamp(y0, y1), boxes[:, 2].clamp(x0, x1), boxes[:, 3].clamp(y0, y1)), dim=1
    )
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = (inside > 0) & (inside >= min_visible * area)
    shift = torch.tensor([x0, y0, x0, y0], dtype=boxes.dtype)
    return clipped[keep] - shift, keep
