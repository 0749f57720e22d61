"""Train/val splits that cannot leak: pictures go to val by whole clusters, never a near-duplicate apart.

A cluster is a connected component of "is a near-duplicate of" (:mod:`dataset.near_duplicates`), joined with
"has the same group key" when the pictures have one (a recording, a scene, a day), so that neither a
recording nor a picture that nearly repeats another is split between train and val.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path, PurePath

import torch

from dataset.annotations import image_path
from dataset.near_duplicates import NEAR_DUPLICATE_THRESHOLD, connected_components, thumbnail_distances, thumbnails


def group_keys(images: Sequence[str], pattern: str) -> list[str]:
    """Each picture's group key: for ``"folder"`` the folder in its path, else what the regular expression
    ``pattern`` finds in its file name (the first group if the pattern has one, else the whole match).
    ``ValueError`` for a bad pattern or a file name it does not match."""
    if pattern == "folder":
        return [str(PurePath(image).parent) for image in images]
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise ValueError(f"--group-by {pattern!r}: not a regular expression ({e})") from None
    keys = []
    for image in images:
        found = regex.search(PurePath(image).name)
        if found is None:
            raise ValueError(f"{image}: the group pattern {pattern!r} does not match its file name")
        keys.append(found.group(1) if regex.groups else found.group(0))
    return keys


def clusters(
    thumbnails: torch.Tensor, keys: Sequence[str] | None = None, threshold: float = NEAR_DUPLICATE_THRESHOLD
) -> torch.Tensor:
    """Clusters of pictures, given their thumbnails [N, D] and optional group keys [N]: int64 [N], each named
    by its first picture's index. Near-duplicates (distance < ``threshold``) and pictures of one key share one."""
    if threshold <= 0:
        raise ValueError(f"the near-duplicate threshold must be positive, got {threshold}")
    related = thumbnail_distances(thumbnails, thumbnails) < threshold
    if keys is not None:
        code = {key: i for i, key in enumerate(dict.fromkeys(keys))}
        codes = torch.tensor([code[key] for key in keys])
        related |= codes[:, None] == codes[None, :]
    return connected_components(related)


def picture_clusters(root: str | Path, ids: Sequence[str], threshold: float = NEAR_DUPLICATE_THRESHOLD) -> torch.Tensor:
    """:func:`clusters` of near-duplicates among the pictures ``ids`` [N] of a VOC set: int64 [N]."""
    return clusters(thumbnails([image_path(root, i) for i in ids]), threshold=threshold)


def fold_clusters(cluster: torch.Tensor, folds: int, seed: int = 0) -> torch.Tensor:
    """Each picture's fold, int64 [N] in ``0..folds-1``, for the pictures' clusters ``cluster`` int64 [N]: every
    cluster lies whole in one fold.

    The clusters are taken largest first (those of one size in a random order drawn with ``seed``), each into the
    fold that holds the fewest pictures so far, so the folds come out as even as the clusters allow.
    ``ValueError`` for fewer than 2 folds or fewer clusters than folds.
    """
    names, sizes = torch.unique(cluster, return_counts=True)
    if folds < 2:
        raise ValueError(f"cross-validation needs 2 folds at least, got {folds}")
    if len(names) < folds:
        raise ValueError(f"{len(names)} clusters of pictures cannot fill {folds} folds")
    order = list(range(len(names)))
    random.Random(seed).shuffle(order)
    order.sort(key=lambda i: -int(sizes[i]))  # stable: clusters of one size keep their random order
    filled = [0] * folds
    fold = torch.empty(len(cluster), dtype=torch.int64)
    for i in order:
        emptiest = filled.index(min(filled))
        fold[cluster == names[i]] = emptiest
        filled[emptiest] += int(sizes[i])
    return fold


def split_clusters(cluster: torch.Tensor, val_fraction: float, seed: int = 0) -> torch.Tensor:
    """Which pictures go to val, bool [N], for the pictures' clusters ``cluster`` int64 [N].

    The clusters are taken in a random order (``seed``) and each goes to val whole if it still fits in
    ``round(N * val_fraction)`` pictures (and leaves train one at least), until val holds that many; a
    cluster larger than what is left stays in train, so val may come out smaller (never larger).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val fraction must be in [0, 1), got {val_fraction}")
    target = min(round(len(cluster) * val_fraction), len(cluster) - 1)
    names = sorted(set(cluster.tolist()))
    random.Random(seed).shuffle(names)
    in_val = torch.zeros(len(cluster), dtype=torch.bool)
    taken = 0
    for name in names:
        if taken == target:
            break
        members = cluster == name
        size = int(members.sum())
        if taken + size <= target:
            in_val |= members
            taken += size
    return in_val
