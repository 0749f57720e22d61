"""Picture files: reading their size and decoding them resized."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from dataset.sizes import resize_scale, resized_shape


def picture_size(path: str | Path) -> tuple[int, int]:
    """(W, H) from a picture file's header; ``FileNotFoundError`` or ``ValueError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"{path}: cannot read image ({e})") from None


def load_resized(
    path: str | Path, resize_size: tuple[int, int], decoded: np.ndarray | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode a picture as RGB uint8 [h, w, 3] resized by :func:`dataset.sizes.resize_scale` (at least
    1 x 1 pixel). Returns (picture, (H0, W0)).

    The original size comes from the file header. For s <= 0.5 (<= 0.25) a picture is decoded at
    1/2 (1/4) size, which is several times faster than a full decode, then resized the rest of
    the way (INTER_LINEAR, or INTER_AREA when still shrinking by more than 2). ``decoded``, the
    picture already decoded at full size (BGR), is used instead of decoding it again when no
    reduced decode applies; the result is the same either way.
    """
    path = Path(path)
    w0, h0 = picture_size(path)
    s = resize_scale(h0, w0, *resize_size)
    new_h, new_w = resized_shape(h0, w0, resize_size)
    flag = cv2.IMREAD_REDUCED_COLOR_4 if s <= 0.25 else cv2.IMREAD_REDUCED_COLOR_2 if s <= 0.5 else cv2.IMREAD_COLOR
    if min(h0, w0) < 64:  # a reduced decode of a sliver can come back empty
        flag = cv2.IMREAD_COLOR
    if flag == cv2.IMREAD_COLOR and decoded is not None:
        bgr = decoded
    else:
        bgr = cv2.imread(str(path), flag | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise ValueError(f"{path}: cannot decode image")
    if bgr.shape[:2] != (new_h, new_w):
        shrink = new_w / bgr.shape[1]
        interp = cv2.INTER_AREA if shrink < 0.5 else cv2.INTER_LINEAR
        bgr = cv2.resize(bgr, (new_w, new_h), interpolation=interp)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (h0, w0)
