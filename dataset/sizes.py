"""Picture sizes: the resize rule and padding (written ``AxB``: see :mod:`cli`)."""

from __future__ import annotations


def resize_scale(height: int, width: int, min_side: int, max_side: int) -> float:
    """Scale that brings the short side to <= min_side and the long side to <= max_side
    (the larger such scale; it may be > 1)."""
    return min(min_side / min(height, width), max_side / max(height, width))


def resized_shape(height: int, width: int, resize_size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of a (height, width) picture under :func:`resize_scale`, at least one pixel each."""
    s = resize_scale(height, width, *resize_size)
    return max(1, round(height * s)), max(1, round(width * s))


def padded_size(height: int, width: int, stride: int = 32) -> tuple[int, int]:
    """The smallest multiples of ``stride`` that are >= height and width."""
    return -(-height // stride) * stride, -(-width // stride) * stride


def format_size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"
