"""Training augmentation, object-centred crops, normalisation and padding.

Geometry on boxes goes through ``torchvision.transforms.v2`` with ``tv_tensors.BoundingBoxes``:
the pipeline works on the resized uint8 picture (a PIL image, where rotation and colour jitter
are cheap) together with a target dict ``{"boxes": BoundingBoxes XYXY, "labels", "difficult"}``.
Normalisation and padding come last, then sensor noise on the normalised tensor.

Boxes are in continuous pixel coordinates (a box [x1, x2) covers the pixels x1 .. x2 - 1), so a
horizontal flip (x -> W - x), a rescale or a crop maps every box exactly onto the pixels it covers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torchvision.transforms import InterpolationMode, v2

from dataset.sizes import padded_size
from model.config import NORMALIZATIONS

IMAGENET_MEAN, IMAGENET_STD = NORMALIZATIONS["imagenet"]
NOISE_LEVEL = 0.02  # sensor noise: 2% of the pixel range (about 5 grey levels)

AUGMENTATIONS = ("flip", "color", "photo", "blur", "noise", "rotate", "crop", "paste")
DEFAULT_AUGMENT = ("flip", "color", "rotate")


def _labels_and_difficult(inputs: tuple) -> tuple[torch.Tensor, ...]:
    """Tensors that SanitizeBoundingBoxes filters along with the boxes."""
    target = inputs[1]
    return tuple(target[k] for k in ("labels", "difficult") if k in target)


def check_augment(augment: Sequence[str]) -> tuple[str, ...]:
    """``augment`` as a tuple, or ``ValueError`` naming what is unknown."""
    unknown = [a for a in augment if a not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; choose from {', '.join(AUGMENTATIONS)}")
    return tuple(augment)


def build_augmentation(augment: Sequence[str] = DEFAULT_AUGMENT, normalization: str = "imagenet") -> v2.Compose | None:
    """The training pipeline for ``(PIL image, {"boxes": BoundingBoxes, "labels", "difficult"})``.

    augment: names out of ``AUGMENTATIONS``, applied in this order:
        "crop"   v2.RandomIoUCrop (SSD-style random crop; the picture gets smaller),
        "flip"   horizontal flip, p 0.5,
        "color"  the original's colour jitter (brightness/contrast/saturation/hue 0.1), p 0.3,
        "photo"  strong photometric change for other light and asphalt: brightness and contrast
                 0.4, saturation 0.4, hue 0.03, p 0.8,
        "blur"   Gaussian blur (5x5, sigma 0.1-1.5: focus and motion), p 0.3,
        "rotate" rotation within +-10 degrees, p 0.5; each box becomes the bounding box of
                 its rotated corners; the corners it brings in get ``normalization``'s mean colour,
                 which normalises to about 0.
    ("noise" is added after normalisation: :func:`build_noise`; "paste", objects of other pictures laid
    against the crop's own, before these: :mod:`dataset.paste`.) Boxes are then clamped to the
    picture and degenerate ones (side < 1 px) dropped together with their labels. Returns None when
    nothing geometric or photometric is asked for.
    """
    augment = check_augment(augment)
    ops: list[v2.Transform] = []
    if "crop" in augment:
        ops.append(v2.RandomIoUCrop())
    if "flip" in augment:
        ops.append(v2.RandomHorizontalFlip(p=0.5))
    if "color" in augment:
        ops.append(v2.RandomApply([v2.ColorJitter(0.1, 0.1, 0.1, 0.1)], p=0.3))
    if "photo" in augment:
        ops.append(v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.03)], p=0.8))
    if "blur" in augment:
        ops.append(v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=0.3))
    if "rotate" in augment:
        mean_fill = tuple(round(255 * m) for m in NORMALIZATIONS[normalization][0])
        rotation = v2.RandomRotation(10.0, interpolation=InterpolationMode.BILINEAR, fill=mean_fill)
        ops.append(v2.RandomApply([rotation], p=0.5))
    if not ops:
        return None
    ops += [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=_labels_and_difficult)]
    return v2.Compose(ops)


def build_noise(augment: Sequence[str], normalization: str = "imagenet") -> v2.Transform | None:
    """Gaussian sensor noise on the picture normalised by ``normalization`` (``"noise"`` in ``augment``), p 0.3."""
    if "noise" not in check_augment(augment):
        return None
    sigma = NOISE_LEVEL / min(NORMALIZATIONS[normalization][1])
    return v2.RandomApply([v2.GaussianNoise(sigma=sigma, clip=False)], p=0.3)


def normalize_pad(
    image: np.ndarray, min_size: tuple[int, int] | None = None, stride: int = 32, normalization: str = "imagenet"
) -> torch.Tensor:
    """uint8 RGB picture [H, W, 3] -> float32 [3, H', W'] normalised with ``normalization``'s mean and std
    (:data:`model.config.NORMALIZATIONS`).

    H' and W' are the smallest multiples of ``stride`` that are >= H and W (and >= min_size
    (h, w) when given); the extra rows/columns at the bottom/right are zeros. A side that is
    already a multiple of ``stride`` is not padded.
    """
    h, w = image.shape[:2]
    h_out, w_out = (h, w) if min_size is None else (max(h, min_size[0]), max(w, min_size[1]))
    h_out, w_out = padded_size(h_out, w_out, stride)
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in NORMALIZATIONS[normalization])
    out = torch.zeros(3, h_out, w_out)
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    torch.addcmul(-mean / std, pixels, 1.0 / (255.0 * std), out=out[:, :h, :w])
    return out


def _window_start(lo: float, hi: float, size: int, max_start: int) -> int:
    """Start of a window of ``size`` along one axis that holds [lo, hi), clamped to [0, max_start]."""
    first, last = math.ceil(hi) - size, math.floor(lo)
    if first <= last:
        start = int(torch.randint(first, last + 1, ()).item())
    else:  # the object is longer than the window: centre the window on it
        start = round((lo + hi) / 2 - size / 2)
    return min(max(start, 0), max_start)


def sample_crop_window(
    boxes: torch.Tensor, image_size: tuple[int, int], crop_size: tuple[int, int], around_object: bool = True
) -> tuple[int, int, int]:
    """Top-left (x0, y0) of a ``crop_size`` (h, w) window around a random object.

    boxes: [M, 4] x1, y1, x2, y2 in the picture's pixels; image_size: (H, W).
    The window holds the chosen object whole (centred on it when the object is larger than
    the window) and lies inside the picture (at (0, 0) along an axis where the picture is
    smaller than the window). Without objects, or with ``around_object=False``, the window is
    uniformly random. Returns (x0, y0, index of the chosen object or -1). Uses torch's global RNG,
    so each DataLoader worker draws its own windows.
    """
    (height, width), (ch, cw) = image_size, crop_size
    max_x0, max_y0 = max(width - cw, 0), max(height - ch, 0)
    if len(boxes) == 0 or not around_object:
        x0 = int(torch.randint(0, max_x0 + 1, ()).item())
        y0 = int(torch.randint(0, max_y0 + 1, ()).item())
        return x0, y0, -1
    index = int(torch.randint(0, len(boxes), ()).item())
    x1, y1, x2, y2 = boxes[index].tolist()
    return _window_start(x1, x2, cw, max_x0), _window_start(y1, y2, ch, max_y0), index


def crop_boxes(
    boxes: torch.Tensor, window: tuple[float, float, float, float], min_visible: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes [M, 4] clipped to ``window`` (x0, y0, x1, y1) and shifted into its frame.

    A box is kept when the part of it inside the window has at least ``min_visible`` of its
    area (and is not empty). Returns (kept boxes [K, 4] relative to (x0, y0), keep mask [M]).
    """
    x0, y0, x1, y1 = window
    clipped = torch.stack(
        (boxes[:, 0].clamp(x0, x1), boxes[:, 1].clamp(y0, y1), boxes[:, 2].clamp(x0, x1), boxes[:, 3].clamp(y0, y1)),
        dim=1,
    )
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = (inside > 0) & (inside >= min_visible * area)
    shift = torch.tensor([x0, y0, x0, y0], dtype=boxes.dtype)
    return clipped[keep] - shift, keep


def random_crop(
    picture: np.ndarray,
    boxes: torch.Tensor,
    crop_size: tuple[int, int],
    scale_jitter: float = 1.0,
    background: float = 0.0,
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, tuple[float, float, float]]:
    """A ``crop_size`` (h, w) training crop of ``picture`` [H, W, 3] around a random object.

    ``scale_jitter`` S >= 1: the crop is taken at a scale drawn log-uniformly from [1/S, S] (a window of
    crop_size / scale, resized to crop_size), so objects appear at several sizes. ``background``: the
    probability of a window placed anywhere, objects or not (context and negatives).
    Returns (crop [h', w', 3] with h' <= h, w' <= w at the picture's edge, boxes [K, 4] in the crop's
    pixels, keep mask [M] of the boxes kept, (x0, y0, scale) of the window in the picture).
    """
    scale = math.exp(math.log(scale_jitter) * (2 * torch.rand(()).item() - 1)) if scale_jitter > 1 else 1.0
    window = (max(1, round(crop_size[0] / scale)), max(1, round(crop_size[1] / scale)))
    around_object = background <= 0 or torch.rand(()).item() >= background
    x0, y0, _ = sample_crop_window(boxes, picture.shape[:2], window, around_object)
    crop = picture[y0 : y0 + window[0], x0 : x0 + window[1]]
    kept, keep = crop_boxes(boxes, (x0, y0, x0 + crop.shape[1], y0 + crop.shape[0]))
    if scale != 1.0:
        h, w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
        sx, sy = w / crop.shape[1], h / crop.shape[0]
        crop = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        kept = kept * torch.tensor([sx, sy, sx, sy], dtype=kept.dtype)
    return np.ascontiguousarray(crop), kept, keep, (float(x0), float(y0), scale)
