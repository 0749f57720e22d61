"""Synthetic data: VOC layout, determinism, plausible objects."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pytest

from dataset import FOD_CLASSES, VOCDataset, parse_annotation, read_split, synthetic
from dataset.synthetic import MARKER, ensure_data_set, generate, picture_rng, render


def files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("a")
    generate(root, {"train": 3, "val": 2, "test": 1}, seed=7)
    return root


def test_layout_and_annotations(synth):
    assert read_split(synth, "train") == ["train_00000", "train_00001", "train_00002"]
    assert read_split(synth, "test") == ["test_00000"]
    assert read_split(synth, "trainval") == read_split(synth, "train") + read_split(synth, "val")
    for image_id in read_split(synth, "trainval") + read_split(synth, "test"):
        assert (synth / "JPEGImages" / f"{image_id}.jpg").is_file()
        ann = parse_annotation(synth / "Annotations" / f"{image_id}.xml", FOD_CLASSES)
        assert (ann["width"], ann["height"]) == (640, 360)
        assert 1 <= len(ann["boxes"]) <= 6 and not ann["difficult"].any()
        b = ann["boxes"]
        assert b.min() >= 1 and (b[:, 2] <= 640).all() and (b[:, 3] <= 360).all()  # 1-based
    assert "<depth>3</depth>" in (synth / "Annotations" / "train_00000.xml").read_text()
    image, target = VOCDataset(synth, "val", resize_size=(360, 640))[0]
    assert image.shape == (3, 384, 640) and len(target["boxes"]) >= 1


def test_same_seed_same_bytes_and_other_seed_differs(synth, tmp_path):
    generate(tmp_path / "b", {"train": 3, "val": 2, "test": 1}, seed=7)
    names = files(synth)
    assert names == files(tmp_path / "b")
    match, mismatch, errors = filecmp.cmpfiles(synth, tmp_path / "b", [str(n) for n in names], shallow=False)
    assert not mismatch and not errors
    generate(tmp_path / "c", {"train": 1}, seed=8)
    assert (tmp_path / "c" / "JPEGImages" / "train_00000.jpg").read_bytes() != (
        synth / "JPEGImages" / "train_00000.jpg"
    ).read_bytes()


def test_picture_does_not_depend_on_counts(synth, tmp_path):
    generate(tmp_path, {"val": 1}, seed=7)
    assert (tmp_path / "JPEGImages" / "val_00000.jpg").read_bytes() == (
        synth / "JPEGImages" / "val_00000.jpg"
    ).read_bytes()


def test_objects_sized_and_separate():
    sizes, classes = [], set()
    for index in range(12):
        picture, boxes, names = render(picture_rng(0, "check", index), (360, 640))
        assert picture.shape == (360, 640, 3) and picture.dtype == np.uint8
        assert 1 <= len(boxes) <= 6 and len(names) == len(boxes)
        classes.update(names)
        sizes += (boxes[:, 2:] - boxes[:, :2] + 1).max(1).tolist()
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        for i in range(len(boxes)):  # no object's centre lies inside another object's box
            for j in range(len(boxes)):
                inside = (boxes[j, :2] <= centres[i]).all() and (centres[i] <= boxes[j, 2:]).all()
                assert i == j or not inside
    assert classes == set(FOD_CLASSES)
    # lengths 1/28..1/14 of the width times 0.75..1.2 by class; a box side is at least length / sqrt(2)
    assert 640 / 28 * 0.75 / 2**0.5 <= min(sizes) and max(sizes) <= 640 / 14 * 1.3
    assert 640 / 28 <= np.median(sizes) <= 640 / 14


@pytest.mark.parametrize("name", FOD_CLASSES)
def test_tight_box_around_drawn_pixels(name):
    rng = np.random.default_rng(11)
    for _ in range(5):
        img = np.zeros((80, 80, 3), np.float32)  # black: the object is whatever becomes non-zero
        parts = synthetic.SHAPES[name](rng)
        x1, y1, x2, y2 = synthetic._draw_object(
            img, parts, rng.uniform(16, 32), rng.uniform(0, 6.3), np.float32([40, 40]), np.float32([2, 1])
        )
        ys, xs = np.nonzero(img.max(2) > 0)
        assert x1 - 2 <= xs.min() <= x1 and x2 <= xs.max() <= x2 + 2
        assert y1 - 2 <= ys.min() <= y1 and y2 <= ys.max() <= y2 + 2
        outside = np.ones(img.shape[:2], bool)
        outside[y1 : y2 + 1, x1 : x2 + 1] = False
        brightest = max(float(part.colour.max()) for part in parts)
        assert img.max(2)[outside].max() < synthetic.ALPHA_VISIBLE * brightest  # only faint antialiasing outside


def test_cli(tmp_path, capsys):
    args = synthetic.get_args_parser().parse_args(
        ["--out", str(tmp_path), "--train", "2", "--val", "1", "--test", "0", "--seed", "1", "--size", "96x160"]
    )
    synthetic.main(args)
    assert "pictures/s" in capsys.readouterr().out
    assert len(read_split(tmp_path, "trainval")) == 3
    with pytest.raises(ValueError, match="split 'test' lists no pictures"):
        read_split(tmp_path, "test")
    assert parse_annotation(tmp_path / "Annotations" / "train_00000.xml", FOD_CLASSES)["width"] == 160


def test_marker_guards_other_folders(tmp_path):
    counts, size = {"train": 1}, (96, 160)
    generate(tmp_path / "s", counts, seed=1, size=size)
    generate(tmp_path / "s", counts, seed=1, size=size)  # its own folder: rewritten
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="user"):
        generate(tmp_path / "user", counts, seed=1, size=size)
    assert sorted(p.name for p in (tmp_path / "user").iterdir()) == ["notes.txt"]


def test_a_data_set_with_the_splits_is_used_as_it_is_and_only_an_empty_folder_is_generated_into(tmp_path):
    counts = {"train": 2, "test": 1}
    assert ensure_data_set(tmp_path / "new", counts, 0, ["train", "test"])  # absent: generated
    assert read_split(tmp_path / "new", "test") == ["test_00000"]
    assert not ensure_data_set(tmp_path / "new", {"train": 5, "test": 5}, 3, ["train", "test"])  # there: kept
    assert len(read_split(tmp_path / "new", "train")) == 2
    (tmp_path / "new" / MARKER).write_text('{"counts": {"train": 2, "test": 1}}')  # a generation cut short
    assert ensure_data_set(tmp_path / "new", counts, 0, ["train", "test"])
    users = tmp_path / "users"
    (users / "ImageSets" / "Main").mkdir(parents=True)
    (users / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    with pytest.raises(FileExistsError, match="users"):  # a split missing, and not this project's folder
        ensure_data_set(users, counts, 0, ["train", "test"])
