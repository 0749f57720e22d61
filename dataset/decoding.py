"""Picture files: the one way this project opens and decodes them (PIL), and resizes them (OpenCV).

Two frames. A picture's pixels are *stored* in one, and its EXIF orientation (a phone turned on its side)
tells the *upright* one every viewer shows; pictures without that tag have one frame. Detection always
works upright; a VOC data set reads each picture in the frame its XML's <size> names
(:class:`dataset.voc_dataset.VOCDataset`).

A picture larger than PIL's ``Image.MAX_IMAGE_PIXELS`` is refused (a ``ValueError`` naming it): decoding it
could exhaust the memory. A truncated file is decoded as far as it goes, with a warning naming it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps

from dataset.sizes import resize_scale, resized_shape

_TURNED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_SIXTEEN_BIT_GREY = ("I", "I;16", "I;16B", "I;16L", "I;16N")


class PictureHeader(NamedTuple):
    """A picture's size (W, H) in each frame; the two are equal, or swapped for a picture stored on its side."""

    stored: tuple[int, int]
    upright: tuple[int, int]

    def drawn_upright(self, size: tuple[int, int]) -> bool:
        """Whether boxes drawn for this picture at ``size`` (W, H, as an XML gives it) lie on its upright view:
        unless ``size`` is the stored frame's alone (a size of neither frame, or none, means the upright one)."""
        return tuple(int(v) for v in size) != self.stored or self.stored == self.upright


@contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """The file opened by PIL (header read, pixels not yet decoded); ``FileNotFoundError`` or ``ValueError``
    naming the file, for a file PIL cannot read or one too large to decode safely."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: too large to decode safely ({e})") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read image ({e})") from None
    with im:
        yield im


def read_header(path: str | Path) -> PictureHeader:
    """Both frames' sizes, from the file's header and EXIF orientation."""
    with _opened(Path(path)) as im:
        orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
        width, height = im.size
    return PictureHeader((width, height), (height, width) if orientation in _TURNED else (width, height))


def picture_size(path: str | Path) -> tuple[int, int]:
    """(W, H) as the pixels are stored, from the file's header."""
    return read_header(path).stored


def _decode(path: Path, reduce: int) -> Image.Image:
    with _opened(path) as im:
        if reduce > 1:
            im.draft("RGB", (im.width // reduce, im.height // reduce))
        im.load()
        return im


def read_picture(path: str | Path, *, upright: bool = True, reduce: int = 1) -> np.ndarray:
    """A picture file as RGB uint8 [H, W, 3], in the upright frame or the stored one.

    ``reduce`` 2 or 4 decodes a JPEG at 1/2 or 1/4 of its size (rounded up), several times faster than
    in full; other formats come whole. Grayscale becomes three equal channels (16-bit grey keeps its high
    byte), an alpha channel is dropped. ``FileNotFoundError`` or ``ValueError`` naming the file.
    """
    path = Path(path)
    try:
        im = _decode(path, reduce)
    except OSError as e:
        if "truncated" not in str(e):
            raise ValueError(f"{path}: cannot decode image ({e})") from None
        warnings.warn(f"{path}: the file is truncated; the picture is decoded as far as it goes", stacklevel=2)
        before, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, True
        try:
            im = _decode(path, reduce)
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = before
    if upright:
        im = ImageOps.exif_transpose(im)
    if im.mode in _SIXTEEN_BIT_GREY:
        im = Image.fromarray((np.asarray(im) >> 8).astype(np.uint8))
    return np.array(im if im.mode == "RGB" else im.convert("RGB"))


def load_resized(
    path: str | Path, resize_size: tuple[int, int], *, upright: bool = True, decoded: np.ndarray | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode a picture as RGB uint8 [h, w, 3] resized by :func:`dataset.sizes.resize_scale` (at least
    1 x 1 pixel), in the upright frame or the stored one. Returns (picture, (H0, W0)), the size in that frame.

    For s <= 0.5 (<= 0.25) a JPEG is decoded at 1/2 (1/4) size, then resized the rest of the way
    (INTER_LINEAR, or INTER_AREA when still shrinking by more than 2). ``decoded``, the picture already
    decoded in full in the same frame (RGB), is used instead of decoding it again when no reduced decode
    applies; the result is the same either way.
    """
    header = read_header(path)
    w0, h0 = header.upright if upright else header.stored
    s = resize_scale(h0, w0, *resize_size)
    new_h, new_w = resized_shape(h0, w0, resize_size)
    reduce = 4 if s <= 0.25 else 2 if s <= 0.5 else 1
    if min(h0, w0) < 64:  # a reduced decode of a sliver can come back empty
        reduce = 1
    if reduce == 1 and decoded is not None:
        rgb = decoded
    else:
        rgb = read_picture(path, upright=upright, reduce=reduce)
    return resize_to(rgb, (new_h, new_w)), (h0, w0)


def resize_to(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``rgb`` [H, W, 3] resized to ``shape`` (h, w): INTER_AREA when shrinking by more than 2, INTER_LINEAR
    otherwise, untouched when already that size."""
    if rgb.shape[:2] == tuple(shape):
        return rgb
    interpolation = cv2.INTER_AREA if shape[1] / rgb.shape[1] < 0.5 else cv2.INTER_LINEAR
    return cv2.resize(rgb, (shape[1], shape[0]), interpolation=interpolation)
