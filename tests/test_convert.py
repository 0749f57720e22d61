"""Annotation exports (CSV, VIA) -> VOC layout -> loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dataset import FOD_CLASSES, VOCDataset, parse_annotation, read_split
from dataset import convert as conv
from dataset.convert import convert, read_csv, read_via


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (60, 100, 3), dtype=np.uint8)).save(folder / "a.jpg", quality=90)
    Image.fromarray(rng.integers(0, 255, (80, 64, 3), dtype=np.uint8)).save(folder / "sub" / "b.jpg", quality=90)
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(folder / "c.png")
    return folder


CSV = """a.jpg,10,5,40,30,nail
a.jpg,50.5,10,99,59,clip_Y
sub/b.jpg,0,0,20,79,L_stick
c.png,,,,,
"""


def loaded_boxes(root: Path, image_id: str) -> torch.Tensor:
    """Boxes as the loader returns them at scale 1 (continuous 0-based pixel edges: an export's 0-based box
    x1, y1, x2, y2, which names the first and last pixels it covers, comes back as x1, y1, x2 + 1, y2 + 1)."""
    ann = parse_annotation(root / "Annotations" / f"{image_id}.xml", FOD_CLASSES)
    h, w = ann["height"], ann["width"]
    ds = VOCDataset(root, "trainval", resize_size=(min(h, w), max(h, w)))
    _, target = ds[ds.ids.index(image_id)]
    assert target["scale"].tolist() == [1.0, 1.0]
    return target["boxes"]


def test_csv_round_trip(photos, tmp_path):
    (tmp_path / "ann.csv").write_text(CSV)
    out = tmp_path / "voc"
    splits = convert(read_csv(tmp_path / "ann.csv"), photos, out, FOD_CLASSES)
    assert splits["trainval"] == ["a", "b", "c"] and splits["train"] == ["a", "b", "c"] and splits["val"] == []
    assert torch.equal(loaded_boxes(out, "a"), torch.tensor([[10.0, 5, 41, 31], [50.5, 10, 100, 60]]))
    assert torch.equal(loaded_boxes(out, "b"), torch.tensor([[0.0, 0, 21, 80]]))
    assert loaded_boxes(out, "c").shape == (0, 4)
    ann = parse_annotation(out / "Annotations" / "a.xml", FOD_CLASSES)
    assert (ann["width"], ann["height"]) == (100, 60) and ann["labels"].tolist() == [1, 3]
    assert ann["boxes"][0].tolist() == [11, 6, 41, 31]  # 1-based in the XML
    with Image.open(out / "JPEGImages" / "c.jpg") as im:
        assert im.format == "JPEG" and im.size == (70, 50)  # PNG re-encoded
    assert (out / "JPEGImages" / "a.jpg").read_bytes() == (photos / "a.jpg").read_bytes()


def test_split_is_random_but_seeded(photos, tmp_path):
    (tmp_path / "ann.csv").write_text(CSV)
    records = read_csv(tmp_path / "ann.csv")
    first = convert(records, photos, tmp_path / "x", FOD_CLASSES, val_fraction=0.34, seed=3)
    again = convert(records, photos, tmp_path / "y", FOD_CLASSES, val_fraction=0.34, seed=3)
    assert first == again and len(first["val"]) == 1 and len(first["train"]) == 2
    assert sorted(first["train"] + first["val"]) == first["trainval"] == read_split(tmp_path / "x", "trainval")
    assert read_split(tmp_path / "x", "val") == first["val"]


def test_link(photos, tmp_path):
    (tmp_path / "ann.csv").write_text(CSV)
    convert(read_csv(tmp_path / "ann.csv"), photos, tmp_path / "voc", FOD_CLASSES, link=True)
    assert (tmp_path / "voc" / "JPEGImages" / "a.jpg").is_symlink()
    assert not (tmp_path / "voc" / "JPEGImages" / "c.jpg").is_symlink()  # re-encoded PNG


def via_project(regions_as_dict: bool = False, attribute: str = "class") -> dict:
    rect = {
        "shape_attributes": {"name": "rect", "x": 10, "y": 5, "width": 30, "height": 25},
        "region_attributes": {attribute: "clip_B"},
    }
    poly = {
        "shape_attributes": {"name": "polygon", "all_points_x": [60, 90, 75], "all_points_y": [20, 25, 50]},
        "region_attributes": {attribute: {"L_stick": True, "nail": False}},  # checkbox attribute
    }
    regions = {"0": rect, "1": poly} if regions_as_dict else [rect, poly]
    meta = {
        "a.jpg12345": {"filename": "a.jpg", "size": 12345, "regions": regions, "file_attributes": {}},
        "sub/b.jpg999": {"filename": "sub/b.jpg", "size": 999, "regions": [], "file_attributes": {}},
    }
    return meta if regions_as_dict else {"_via_settings": {}, "_via_img_metadata": meta, "_via_attributes": {}}


@pytest.mark.parametrize("regions_as_dict", [False, True])
def test_via_rect_and_polygon(photos, tmp_path, regions_as_dict):
    (tmp_path / "via.json").write_text(json.dumps(via_project(regions_as_dict, attribute="kind")))
    out = tmp_path / "voc"
    convert(read_via(tmp_path / "via.json", attribute="kind"), photos, out, FOD_CLASSES)
    # VIA draws in continuous coordinates: the rectangle x 10 width 30 covers the pixels 10 .. 39 (XML 11 .. 40),
    # and the polygon's extent (60, 20, 90, 50) the pixels 60 .. 89 (XML 61 .. 90); loaded, the boxes are exact
    assert torch.equal(loaded_boxes(out, "a"), torch.tensor([[10.0, 5, 40, 30], [60, 20, 90, 50]]))
    assert parse_annotation(out / "Annotations" / "a.xml", FOD_CLASSES)["boxes"].tolist() == [
        [11, 6, 40, 30],
        [61, 21, 90, 50],
    ]
    assert parse_annotation(out / "Annotations" / "a.xml", FOD_CLASSES)["labels"].tolist() == [2, 4]
    assert loaded_boxes(out, "b").shape == (0, 4)


def test_cli(photos, tmp_path, capsys):
    (photos / "ann.csv").write_text(CSV)
    args = conv.get_args_parser().parse_args(
        ["--csv", str(photos / "ann.csv"), "--out", str(tmp_path / "voc"), "--split-val", "0.34", "--seed", "1"]
    )
    conv.main(args)
    assert "wrote 3 images (train 2, val 1), 3 boxes" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text, words",
    [
        ("a.jpg,10,5,40,30,nail\na.jpg,1,2,3,4,hammer\n", "row 2: class 'hammer'"),
        ("a.jpg,40,5,40,30,nail\n", "row 1: empty box"),
        ("a.jpg,10,30,40,5,nail\n", "row 1: empty box"),
        ("a.jpg,150,5,400,30,nail\n", ("row 1 (image ", "box [151.0, 6.0, 401.0, 31.0] lies outside the 100x60")),
        ("a.jpg,10,5,x,30,nail\n", "row 1: box fields must be numbers"),
        ("a.jpg,10,5,40,30\n", "row 1: expected 6 fields"),
        ("missing.jpg,10,5,40,30,nail\n", "row 1: image file"),
    ],
)
def test_csv_errors_name_file_and_row(photos, tmp_path, text, words):
    (tmp_path / "ann.csv").write_text(text)
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        convert(read_csv(tmp_path / "ann.csv"), photos, tmp_path / "voc", FOD_CLASSES)
    words = words if isinstance(words, tuple) else (words,)
    assert str(tmp_path / "ann.csv") in str(info.value) and all(w in str(info.value) for w in words)


def test_box_reaching_past_the_picture_is_clipped_with_a_warning(photos, tmp_path):
    (tmp_path / "ann.csv").write_text("a.jpg,10,5,400,30,nail\na.jpg,-3,-2,20,59,clip_B\n")
    with pytest.warns(UserWarning) as record:
        convert(read_csv(tmp_path / "ann.csv"), photos, tmp_path / "voc", FOD_CLASSES)
    messages = [str(w.message) for w in record]
    assert len(messages) == 2
    assert str(tmp_path / "ann.csv") in messages[0] and "row 1" in messages[0] and "100x60" in messages[0]
    assert "row 2" in messages[1]
    ann = parse_annotation(tmp_path / "voc" / "Annotations" / "a.xml", FOD_CLASSES)
    assert ann["boxes"].tolist() == [[11, 6, 100, 31], [1, 1, 21, 60]]  # XML frame: 1..100 x 1..60


def test_via_errors_name_file_and_region(photos, tmp_path):
    project = via_project()
    project["_via_img_metadata"]["a.jpg12345"]["regions"][1]["shape_attributes"] = {
        "name": "circle",
        "cx": 5,
        "cy": 5,
        "r": 3,
    }
    (tmp_path / "via.json").write_text(json.dumps(project))
    with pytest.raises(ValueError, match=r"via.json: image 'a.jpg' region 1: shape 'circle'"):
        read_via(tmp_path / "via.json")
    project = via_project()
    project["_via_img_metadata"]["a.jpg12345"]["regions"][0]["region_attributes"] = {}
    (tmp_path / "via.json").write_text(json.dumps(project))
    with pytest.raises(ValueError, match=r"region 0: region attribute 'class' missing"):
        read_via(tmp_path / "via.json")
