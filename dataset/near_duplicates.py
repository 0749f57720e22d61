"""Near-duplicate pictures: frames of one recording that nearly repeat each other.

Two pictures are near-duplicates when their thumbnails differ by a mean squared difference below
:data:`NEAR_DUPLICATE_THRESHOLD`. A thumbnail is the picture in grey, area-averaged to 64x36 and
normalised to zero mean and unit variance, so that a change of light matters little, and a person walking
through or the camera moving a little still leaves the same asphalt alike. A val picture with a
near-duplicate in train is scored on what the model remembers rather than on what it has learnt.

Distances are computed for all pairs at once (N x M matrices), so checking a few hundred pictures costs
about as much as decoding them, at 1/8 size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from dataset.annotations import image_path, read_split

THUMBNAIL_SIZE = (36, 64)  # (H, W)
NEAR_DUPLICATE_THRESHOLD = 0.3
MEASURE = "mean squared difference of normalised 64x36 grey thumbnails"


def read_thumbnail(path: str | Path) -> np.ndarray:
    """A picture's thumbnail, float32 [36, 64]: grey, zero mean and unit variance (all zeros for a flat picture).

    The picture is decoded at 1/8 size (several times faster than in full) unless that would be smaller than
    the thumbnail, then area-averaged to 64x36 whatever its aspect ratio. ``FileNotFoundError`` or
    ``ValueError`` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    height, width = THUMBNAIL_SIZE
    for flag in (cv2.IMREAD_REDUCED_GRAYSCALE_8, cv2.IMREAD_GRAYSCALE):
        grey = cv2.imread(str(path), flag | cv2.IMREAD_IGNORE_ORIENTATION)
        if grey is None:
            raise ValueError(f"{path}: cannot decode image")
        if grey.shape[0] >= height and grey.shape[1] >= width:
            break
    thumbnail = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    return (thumbnail - thumbnail.mean()) / max(float(thumbnail.std()), 1e-6)


def thumbnails(paths: Sequence[str | Path]) -> torch.Tensor:
    """Thumbnails of pictures (:func:`read_thumbnail`), flattened: float32 [N, 36 * 64]."""
    if not paths:
        return torch.zeros(0, THUMBNAIL_SIZE[0] * THUMBNAIL_SIZE[1])
    return torch.from_numpy(np.stack([read_thumbnail(p).ravel() for p in paths]))


def thumbnail_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between each thumbnail of ``a`` [N, D] and each of ``b`` [M, D]: [N, M]."""
    return torch.cdist(a, b).square() / a.shape[1]


def connected_components(related: torch.Tensor) -> torch.Tensor:
    """Connected components of a symmetric relation, ``related`` bool [N, N]: int64 [N], each item's
    component named by the smallest index in it."""
    n = related.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    related = related | torch.eye(n, dtype=torch.bool)
    component = torch.arange(n)
    while True:
        smallest = torch.where(related, component, n).amin(dim=1)  # smallest name among each item's neighbours
        smallest = smallest[smallest]  # and that neighbour's own: long chains of frames settle in few rounds
        if torch.equal(smallest, component):
            return component
        component = smallest


@dataclass(frozen=True)
class SplitCheck:
    """Each val picture's nearest train picture: ``nearest`` int64 [V] (an index into train) at ``distance``
    float32 [V]; ``leaking`` bool [V] marks the val pictures that have a near-duplicate in train."""

    nearest: torch.Tensor
    distance: torch.Tensor
    threshold: float

    @property
    def leaking(self) -> torch.Tensor:
        return self.distance < self.threshold

    def closest_pairs(self, k: int) -> list[tuple[int, int, float]]:
        """The ``k`` val pictures closest to train, closest first: (val index, train index, distance)."""
        order = torch.argsort(self.distance, stable=True)[:k]
        return [(v, int(self.nearest[v]), float(self.distance[v])) for v in order.tolist()]


def check_split(
    train: Sequence[str | Path], val: Sequence[str | Path], threshold: float = NEAR_DUPLICATE_THRESHOLD
) -> SplitCheck:
    """For the pictures ``val`` [V], their nearest among the pictures ``train`` [T] (both lists of files)."""
    if not train or not val:
        raise ValueError(f"a split check needs train and val pictures, got {len(train)} and {len(val)}")
    return check_thumbnails(thumbnails(train), thumbnails(val), threshold)


def check_thumbnails(train: torch.Tensor, val: torch.Tensor, threshold: float = NEAR_DUPLICATE_THRESHOLD) -> SplitCheck:
    """:func:`check_split` of pictures already read: their thumbnails ``train`` [T, D] and ``val`` [V, D]."""
    if threshold <= 0:
        raise ValueError(f"the near-duplicate threshold must be positive, got {threshold}")
    distance, nearest = thumbnail_distances(val, train).min(dim=1)
    return SplitCheck(nearest, distance, threshold)


def check_voc_split(
    root: str | Path, train_split: str = "train", val_split: str = "val", threshold: float = NEAR_DUPLICATE_THRESHOLD
) -> tuple[SplitCheck, list[str], list[str]]:
    """:func:`check_split` of a VOC set's splits; returns it with the train and val ids."""
    train_ids, val_ids = read_split(root, train_split), read_split(root, val_split)
    check = check_split([image_path(root, i) for i in train_ids], [image_path(root, i) for i in val_ids], threshold)
    return check, train_ids, val_ids


def split_report(check: SplitCheck, train_ids: Sequence[str], val_ids: Sequence[str], worst: int = 5) -> str:
    """What :func:`check_split` found, in a few lines: the share of val pictures with a near-duplicate in
    train, then the ``worst`` closest val-train pairs."""
    leaking = int(check.leaking.sum())
    lines = [
        f"val pictures with a near-duplicate in train: {leaking} of {len(val_ids)} ({leaking / len(val_ids):.1%}; "
        f"{MEASURE} < {check.threshold:g}, train {len(train_ids)} pictures)"
    ]
    if worst > 0:
        lines.append("closest val-train pairs:")
        lines += [f"  {val_ids[v]}  {train_ids[t]}  {d:.3f}" for v, t, d in check.closest_pairs(worst)]
    return "\n".join(lines)
