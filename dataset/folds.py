"""Cross-validation folds of a VOC set that cannot leak: each cluster of near-duplicates (and of group keys) lies
whole in one fold, so no fold's test picture has a near-duplicate among its training pictures.

The folds live in a folder of their own, so that the data set may be read-only::

    <folder>/Annotations -> <data root>/Annotations      (links)
    <folder>/JPEGImages  -> <data root>/JPEGImages
    <folder>/ImageSets/Main/cv<K>_<i>_train.txt, cv<K>_<i>_test.txt     for the folds i = 0 .. K-1
    <folder>/ImageSets/Main/cv<K>_all.txt   every picture once: where the folds' detections pooled are scored
    <folder>/folds.json   the pictures, their clusters and folds, how they were made, each fold's split check

The folder is a VOC data root: ``train_voc.py --data-root <folder> --train-split cv5_0_train --val-split
cv5_0_test`` trains on a fold, ``python -m dataset.voc --check-split`` checks one again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from dataset.annotations import image_path, read_split, write_split
from dataset.near_duplicates import NEAR_DUPLICATE_THRESHOLD, check_thumbnails, split_report, thumbnails
from dataset.splits import clusters, fold_clusters, group_keys

LINKED = ("Annotations", "JPEGImages")


@dataclass(frozen=True)
class Folds:
    """``ids`` [N] the pictures, ``cluster`` [N] each one's cluster (named by its first picture's index),
    ``fold`` [N] each one's fold, ``checks`` [K] each fold's split check in words."""

    data_root: str
    splits: tuple[str, ...]
    count: int
    seed: int
    group_by: str | None
    threshold: float
    ids: tuple[str, ...]
    cluster: tuple[int, ...]
    fold: tuple[int, ...]
    checks: tuple[str, ...]

    def train_split(self, i: int) -> str:
        return f"cv{self.count}_{i}_train"

    def test_split(self, i: int) -> str:
        return f"cv{self.count}_{i}_test"

    @property
    def all_split(self) -> str:
        return f"cv{self.count}_all"

    def test_ids(self, i: int) -> list[str]:
        return [image_id for image_id, f in zip(self.ids, self.fold) if f == i]

    def summary(self) -> str:
        """One line per fold: its test pictures and clusters, and what its split check found."""
        lines = []
        for i in range(self.count):
            clusters_in = {c for c, f in zip(self.cluster, self.fold) if f == i}
            lines.append(
                f"fold {i}: {len(self.test_ids(i))} test pictures in {len(clusters_in)} clusters; {self.checks[i]}"
            )
        return "\n".join(lines)


def make_folds(
    data_root: str | Path,
    folder: str | Path,
    *,
    count: int = 5,
    splits: Sequence[str] = ("train", "val"),
    seed: int = 0,
    group_by: str | None = None,
    threshold: float = NEAR_DUPLICATE_THRESHOLD,
) -> Folds:
    """``count`` folds of the pictures of ``splits`` of ``data_root`` (each picture once) written into ``folder``
    (:func:`dataset.splits.fold_clusters` of :func:`dataset.splits.clusters`), each checked as
    ``dataset.voc --check-split`` does. Folds already in ``folder`` are read back instead; ``ValueError`` when
    they were made of other pictures or with other settings."""
    folder = Path(folder)
    ids = tuple(dict.fromkeys(i for split in splits for i in read_split(data_root, split)))
    wanted = {
        "data_root": str(Path(data_root).resolve()),
        "splits": tuple(splits),
        "count": count,
        "seed": seed,
        "group_by": group_by,
        "threshold": threshold,
        "ids": ids,
    }
    if (folder / "folds.json").is_file():
        folds = read_folds(folder)
        differing = [name for name, value in wanted.items() if getattr(folds, name) != value]
        if differing:
            raise ValueError(
                f"{folder / 'folds.json'}: folds made with another {', '.join(differing)}; remove the folder or "
                "write the folds elsewhere"
            )
        return folds
    paths = [image_path(data_root, i) for i in ids]
    pictures = thumbnails(paths)
    keys = group_keys([str(p) for p in paths], group_by) if group_by else None
    cluster = clusters(pictures, keys, threshold)
    fold = fold_clusters(cluster, count, seed)
    checks = []
    for i in range(count):
        test = fold == i
        train_ids = [ids[j] for j in torch.where(~test)[0]]
        test_ids = [ids[j] for j in torch.where(test)[0]]
        check = check_thumbnails(pictures[~test], pictures[test], threshold)
        checks.append(split_report(check, train_ids, test_ids, worst=0))
        write_split(folder, f"cv{count}_{i}_train", train_ids)
        write_split(folder, f"cv{count}_{i}_test", test_ids)
    for name in LINKED:
        link = folder / name
        if link.is_symlink():
            link.unlink()
        os.symlink(Path(data_root).resolve() / name, link, target_is_directory=True)
    folds = Folds(**wanted, cluster=tuple(cluster.tolist()), fold=tuple(fold.tolist()), checks=tuple(checks))
    write_split(folder, folds.all_split, list(ids))
    (folder / "folds.json").write_text(json.dumps(asdict(folds), indent=1))
    return folds


def read_folds(folder: str | Path) -> Folds:
    """The folds :func:`make_folds` wrote into ``folder``."""
    path = Path(folder) / "folds.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no folds there (make them with benchmarks.ablate --folds K)")
    stored = json.loads(path.read_text())
    return Folds(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()})
