"""Near-duplicates: thumbnails, distances, clusters, leak-free splits, the split check (also on the real data)."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dataset import image_path, read_split, voc, write_annotation, write_split
from dataset.folds import make_folds
from dataset.near_duplicates import (
    check_split,
    connected_components,
    read_thumbnail,
    split_report,
    thumbnail_distances,
    thumbnails,
)
from dataset.splits import clusters, fold_clusters, group_keys, split_clusters

REAL = Path(__file__).parents[1].parent / "shared" / "foreign_object_dataset"


def scene(rng: np.random.Generator) -> np.ndarray:
    """A smooth random 144x256 BGR picture: unrelated scenes are far apart (distance about 2)."""
    return cv2.resize(rng.uniform(0, 255, (9, 16, 3)), (256, 144), interpolation=cv2.INTER_CUBIC)


def frames(folder: Path, scenes: int, per_scene: int, seed: int = 0) -> list[Path]:
    """``per_scene`` noisy, brightened copies of each of ``scenes`` scenes, as ``s<scene>_<k>.jpg``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for s in range(scenes):
        base = scene(rng)
        for k in range(per_scene):
            picture = np.clip(base + rng.normal(0, 12, base.shape) + 10 * k, 0, 255).astype(np.uint8)
            paths.append(folder / f"s{s}_{k}.jpg")
            cv2.imwrite(str(paths[-1]), picture)
    return paths


def test_thumbnail_is_normalised_grey_64x36(tmp_path):
    rng = np.random.default_rng(0)
    big, small = tmp_path / "big.png", tmp_path / "small.png"
    cv2.imwrite(str(big), rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8))
    cv2.imwrite(str(small), rng.integers(0, 255, (50, 90, 3), dtype=np.uint8))  # 1/8 would be smaller than 64x36
    for path in (big, small):
        thumb = read_thumbnail(path)
        assert thumb.shape == (36, 64) and thumb.dtype == np.float32
        assert abs(float(thumb.mean())) < 1e-5 and abs(float(thumb.std()) - 1) < 1e-5
    cv2.imwrite(str(tmp_path / "flat.png"), np.full((72, 128, 3), 77, np.uint8))
    assert not read_thumbnail(tmp_path / "flat.png").any()
    assert thumbnails([]).shape == (0, 36 * 64) and thumbnails([big, small]).shape == (2, 36 * 64)


def test_thumbnail_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing.jpg: image file not found"):
        read_thumbnail(tmp_path / "missing.jpg")
    (tmp_path / "text.jpg").write_text("not a picture")
    with pytest.raises(ValueError, match=r"text.jpg: cannot decode image"):
        read_thumbnail(tmp_path / "text.jpg")


def test_distances_are_mean_squared_differences():
    a = torch.randn(3, 8)
    a = (a - a.mean(1, keepdim=True)) / a.std(1, keepdim=True, unbiased=False)
    distances = thumbnail_distances(a, torch.cat([a, -a]))
    assert distances.shape == (3, 6)
    assert torch.allclose(distances.diagonal(), torch.zeros(3), atol=1e-5)  # itself
    assert torch.allclose(distances[:, 3:].diagonal(), torch.full((3,), 4.0))  # its negative: mean((2a)^2) = 4
    expected = ((a[:, None] - a[None]) ** 2).mean(-1)
    assert torch.allclose(thumbnail_distances(a, a), expected, atol=1e-5)


def test_connected_components():
    related = torch.zeros(6, 6, dtype=torch.bool)
    for i, j in [(1, 2), (2, 0), (4, 5)]:
        related[i, j] = related[j, i] = True
    assert connected_components(related).tolist() == [0, 0, 0, 3, 4, 4]
    chain = torch.zeros(300, 300, dtype=torch.bool)
    order = torch.randperm(300, generator=torch.Generator().manual_seed(0))
    chain[order[:-1], order[1:]] = chain[order[1:], order[:-1]] = True  # one long chain in a random order
    assert connected_components(chain).tolist() == [0] * 300
    assert connected_components(torch.zeros(0, 0, dtype=torch.bool)).tolist() == []


def test_check_split_finds_the_noisy_copies(tmp_path):
    paths = frames(tmp_path, scenes=5, per_scene=2)  # s0_0, s0_1, s1_0, ...
    train = [p for p in paths if p.stem.endswith("_0")]  # one frame of every scene
    unrelated = frames(tmp_path / "other", scenes=3, per_scene=1, seed=1)
    val = [tmp_path / "s3_1.jpg", unrelated[0], tmp_path / "s1_1.jpg", unrelated[1], unrelated[2]]
    check = check_split(train, val)
    assert check.leaking.tolist() == [True, False, True, False, False]
    assert check.nearest[check.leaking].tolist() == [3, 1]
    assert bool((check.distance[check.leaking] < 0.05).all()) and bool((check.distance[~check.leaking] > 1).all())
    pairs = check.closest_pairs(2)
    assert {(v, t) for v, t, _ in pairs} == {(0, 3), (2, 1)} and pairs[0][2] <= pairs[1][2]
    report = split_report(check, [p.stem for p in train], [p.stem for p in val], worst=2)
    assert report.splitlines()[0].startswith("val pictures with a near-duplicate in train: 2 of 5 (40.0%;")
    assert report.splitlines()[1] == "closest val-train pairs:" and len(report.splitlines()) == 4
    assert {line.split()[0] for line in report.splitlines()[2:]} == {"s3_1", "s1_1"}
    assert not check_split(train, val, threshold=0.001).leaking.any()


def test_clusters_join_near_duplicates_and_group_keys(tmp_path):
    paths = frames(tmp_path, scenes=3, per_scene=2)  # s0_0 s0_1 s1_0 s1_1 s2_0 s2_1
    thumbs = thumbnails(paths)
    assert clusters(thumbs).tolist() == [0, 0, 2, 2, 4, 4]
    assert clusters(thumbs, keys=["a", "b", "b", "c", "d", "e"]).tolist() == [0, 0, 0, 0, 4, 4]
    assert clusters(thumbs, threshold=1e-9).tolist() == [0, 1, 2, 3, 4, 5]


def test_split_clusters_takes_whole_clusters_seeded():
    cluster = torch.tensor([0, 0, 0, 3, 3, 5, 6, 7, 8, 9])
    for seed in range(20):
        in_val = split_clusters(cluster, 0.3, seed)
        assert int(in_val.sum()) == 3 and torch.equal(in_val, split_clusters(cluster, 0.3, seed))
        for name in cluster.unique():
            assert in_val[cluster == name].unique().numel() == 1  # never split
    assert len({tuple(split_clusters(cluster, 0.3, seed).tolist()) for seed in range(20)}) > 1  # seeds differ
    assert not split_clusters(torch.zeros(5, dtype=torch.int64), 0.5).any()  # one cluster larger than val
    assert split_clusters(torch.arange(1), 0.9).tolist() == [False]  # train keeps a picture
    with pytest.raises(ValueError, match="val fraction"):
        split_clusters(cluster, 1.0)


def test_fold_clusters_keep_clusters_whole_and_folds_even():
    cluster = torch.tensor([0, 0, 0, 0, 4, 4, 4, 7, 7, 9, 10, 11, 12])  # clusters of 4, 3, 2, 1, 1, 1, 1
    for seed in range(10):
        fold = fold_clusters(cluster, 3, seed)
        assert torch.equal(fold, fold_clusters(cluster, 3, seed))
        assert sorted(torch.bincount(fold, minlength=3).tolist()) == [4, 4, 5]
        for name in cluster.unique():
            assert fold[cluster == name].unique().numel() == 1
    assert len({tuple(fold_clusters(cluster, 3, seed).tolist()) for seed in range(10)}) > 1
    with pytest.raises(ValueError, match="2 folds at least"):
        fold_clusters(cluster, 1)
    with pytest.raises(ValueError, match="7 clusters of pictures cannot fill 8 folds"):
        fold_clusters(cluster, 8)


def test_group_keys():
    images = ["rec1/rec1_0001.jpg", "rec1/rec1_0002.jpg", "day2/rec7_0001.png"]
    assert group_keys(images, "folder") == ["rec1", "rec1", "day2"]
    assert group_keys(images, r"(rec\d+)_") == ["rec1", "rec1", "rec7"]
    assert group_keys(images, r"rec\d") == ["rec1", "rec1", "rec7"]  # no group: the whole match
    with pytest.raises(ValueError, match=r"day2/rec7_0001.png: the group pattern 'jpg' does not match its file name"):
        group_keys(images, "jpg")
    with pytest.raises(ValueError, match=r"--group-by '\(': not a regular expression"):
        group_keys(images, "(")


def voc_set(root: Path, paths: list[Path], splits: dict[str, list[str]]) -> Path:
    (root / "JPEGImages").mkdir(parents=True)
    for path in paths:
        (root / "JPEGImages" / path.name).symlink_to(path)
        write_annotation(root / "Annotations" / f"{path.stem}.xml", path.name, 256, 144, [], [])
    for split, ids in splits.items():
        write_split(root, split, ids)
    return root


def test_check_split_command_line(tmp_path, capsys):
    paths = frames(tmp_path / "pictures", scenes=3, per_scene=2)
    root = voc_set(tmp_path / "voc", paths, {"train": ["s0_0", "s1_0", "s2_0"], "val": ["s1_1", "s2_1"]})
    voc.main(voc.get_args_parser().parse_args(["--data-root", str(root), "--check-split", "--worst", "1"]))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("val pictures with a near-duplicate in train: 2 of 2 (100.0%;")
    assert lines[0].endswith("< 0.3, train 3 pictures)") and lines[1] == "closest val-train pairs:"
    assert len(lines) == 3 and lines[2].split()[:2] in (["s1_1", "s1_0"], ["s2_1", "s2_0"])
    args = ["--data-root", str(root), "--check-split", "--train-split", "val", "--val-split", "missing"]
    with pytest.raises(FileNotFoundError, match=r"missing.txt: split file not found"):
        voc.main(voc.get_args_parser().parse_args(args))


def test_folds_test_every_picture_once_and_no_fold_leaks(tmp_path, capsys):
    paths = frames(tmp_path / "pictures", scenes=6, per_scene=2)  # s0_0 s0_1 ... s5_1: six pairs of near-duplicates
    ids = [p.stem for p in paths]
    root = voc_set(tmp_path / "voc", paths, {"train": ids[:7], "val": ids[7:]})
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    folds = make_folds(root, tmp_path / "cv3", count=3)
    tests = [folds.test_ids(i) for i in range(3)]
    assert sorted(sum(tests, [])) == sorted(ids) and [len(t) for t in tests] == [4, 4, 4]
    for i, test in enumerate(tests):
        train = read_split(tmp_path / "cv3", folds.train_split(i))
        assert sorted(train + test) == sorted(ids)
        assert {p.split("_")[0] for p in train}.isdisjoint(p.split("_")[0] for p in test)  # a scene's frames together
        assert folds.checks[i].startswith("val pictures with a near-duplicate in train: 0 of 4 (0.0%;")
        argv = ["--data-root", str(tmp_path / "cv3"), "--check-split", "--worst", "0"]
        voc.main(
            voc.get_args_parser().parse_args([*argv, "--train-split", f"cv3_{i}_train", "--val-split", f"cv3_{i}_test"])
        )
        assert capsys.readouterr().out.startswith("val pictures with a near-duplicate in train: 0 of 4 (")
    assert (
        "fold 2: 4 test pictures in 2 clusters; val pictures with a near-duplicate in train: 0 of 4" in folds.summary()
    )
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # the data set is only read
    assert make_folds(root, tmp_path / "cv3", count=3) == folds  # read back, not made again
    with pytest.raises(ValueError, match=r"folds.json: folds made with another seed; remove the folder"):
        make_folds(root, tmp_path / "cv3", count=3, seed=1)


@pytest.mark.skipif(not REAL.is_dir(), reason="real data set not present")
def test_real_val_has_no_near_duplicate_in_train_but_a_random_val_has():
    train, val = read_split(REAL, "train"), read_split(REAL, "val")
    check = check_split([image_path(REAL, i) for i in train], [image_path(REAL, i) for i in val])
    assert (len(train), len(val), int(check.leaking.sum())) == (275, 42, 0)
    everything = sorted(train + val)
    thumbs = thumbnails([image_path(REAL, i) for i in everything])
    shuffled = list(range(len(everything)))
    random.Random(0).shuffle(shuffled)
    random_val, random_train = shuffled[: len(everything) // 5], shuffled[len(everything) // 5 :]
    nearest = thumbnail_distances(thumbs[random_val], thumbs[random_train]).min(dim=1).values
    assert int((nearest < 0.3).sum()) > 0.7 * len(random_val)
    leak_free = split_clusters(clusters(thumbs), 0.2, seed=0)
    nearest = thumbnail_distances(thumbs[leak_free], thumbs[~leak_free]).min(dim=1).values
    assert int(leak_free.sum()) == round(0.2 * len(everything)) and not bool((nearest < 0.3).any())
