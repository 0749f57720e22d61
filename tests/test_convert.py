"""Annotation exports (CSV, VIA) -> VOC layout -> loader."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import ExifTags, Image

import cli
from dataset import FOD_CLASSES, VOCDataset, parse_annotation, read_split
from dataset import convert as conv
from dataset.convert import convert
from dataset.exports import read_coco, read_csv, read_labelme, read_via, read_yolo, read_yolo_names


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


def test_csv_values_that_are_not_finite_are_refused(photos, tmp_path):
    (tmp_path / "ann.csv").write_text("a.jpg,nan,5,40,30,nail\n")  # was written as <xmin>nan</xmin>
    with pytest.raises(ValueError, match=r"ann.csv: row 1: box fields must be finite numbers"):
        read_csv(tmp_path / "ann.csv")


def test_exports_that_are_not_text_or_not_via_name_the_file(tmp_path):
    (tmp_path / "ann.csv").write_bytes(b"\xff\xfe\x00\x81binary")
    with pytest.raises(ValueError, match=r"ann.csv: not a text file"):
        read_csv(tmp_path / "ann.csv")
    (tmp_path / "via.json").write_text("[1, 2]")  # was an AttributeError
    with pytest.raises(ValueError, match=r"via.json: not a VIA export"):
        read_via(tmp_path / "via.json")
    with pytest.raises(FileNotFoundError, match=r"absent.csv: annotation file not found"):
        read_csv(tmp_path / "absent.csv")


# ---------------------------------------------------------------- COCO


def coco_export() -> dict:
    return {
        "images": [
            {"id": 7, "file_name": "a.jpg", "width": 100, "height": 60},
            {"id": 8, "file_name": "sub/b.jpg", "width": 64, "height": 80},
            {"id": 9, "file_name": "c.png", "width": 70, "height": 50},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 5, 20, 25], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [50.5, 10, 49.5, 50], "iscrowd": 1},
            {"id": 3, "image_id": 8, "category_id": 4, "bbox": [0, 0, 64, 80]},
        ],
        "categories": [{"id": 1, "name": "nail"}, {"id": 3, "name": "clip_Y"}, {"id": 4, "name": "L_stick"}],
    }


def test_coco_round_trip(photos, tmp_path):
    (tmp_path / "coco.json").write_text(json.dumps(coco_export()))
    out = tmp_path / "voc"
    convert(read_coco(tmp_path / "coco.json"), photos, out, FOD_CLASSES)
    # [x, y, w, h] is continuous: x 10 width 20 covers the pixels 10 .. 29, VOC xmin 11 xmax 30
    assert torch.equal(loaded_boxes(out, "a"), torch.tensor([[10.0, 5, 30, 30], [50.5, 10, 100, 60]]))
    ann = parse_annotation(out / "Annotations" / "a.xml", FOD_CLASSES)
    assert ann["boxes"].tolist() == [[11, 6, 30, 30], [51.5, 11, 100, 60]]
    assert ann["labels"].tolist() == [3, 1] and ann["difficult"].tolist() == [False, True]  # a crowd is difficult
    assert torch.equal(loaded_boxes(out, "b"), torch.tensor([[0.0, 0, 64, 80]]))
    assert loaded_boxes(out, "c").shape == (0, 4)


def _set(data: dict, where: tuple, value) -> dict:
    *path, last = where
    node = data
    for key in path:
        node = node[key]
    node[last] = value
    return data


@pytest.mark.parametrize(
    "where, value, error, words",
    [
        (("images", 0, "width"), 200, ValueError, "image id 7 ('a.jpg'): the export says 200x60 but"),
        (("images", 0, "file_name"), "gone.jpg", FileNotFoundError, "image id 7 ('gone.jpg'): image file"),
        (("images", 1, "id"), 7, ValueError, "image 1: id 7 is used twice"),
        (("annotations", 0, "category_id"), 2, ValueError, "annotation id 1: category_id 2 is not in 'categories'"),
        (("annotations", 0, "image_id"), 5, ValueError, "annotation id 1: image_id 5 is not in 'images'"),
        (("annotations", 0, "bbox"), [10, 5, 20], ValueError, "annotation id 1: bbox must be [x, y, w, h]"),
        (("annotations", 0, "bbox"), [10, 5, "w", 3], ValueError, "annotation id 1: bbox values must be numbers"),
        (("annotations", 0, "bbox"), [10, 5, 0.5, 25], ValueError, "annotation id 1: empty box"),
        (("annotations", 0, "bbox"), [150, 5, 20, 20], ValueError, "annotation id 1 (image "),
        (("annotations", 2), {"id": 3, "image_id": 8}, ValueError, "annotation 2: needs id, image_id, category_id"),
        (("categories", 1, "name"), "hammer", ValueError, "annotation id 1: class 'hammer' is not in the class list"),
        (("annotations",), {}, ValueError, "not a COCO detection file"),
    ],
)
def test_coco_errors_name_file_and_entry(photos, tmp_path, where, value, error, words):
    (tmp_path / "coco.json").write_text(json.dumps(_set(coco_export(), where, value)))
    with pytest.raises(error) as info:
        convert(read_coco(tmp_path / "coco.json"), photos, tmp_path / "voc", FOD_CLASSES)
    assert f"{tmp_path / 'coco.json'}: " in str(info.value) and words in str(info.value)
    assert not (tmp_path / "voc").exists()  # nothing written


@pytest.mark.parametrize(
    "where, value, words",
    [
        (("images", 0, "id"), [7], "image 0: id must be an integer or a string, got [7]"),
        (("images", 1, "id"), {"id": 8}, "image 1: id must be an integer or a string, got {'id': 8}"),
        (("images", 2, "id"), True, "image 2: id must be an integer or a string, got True"),
        (("categories", 0, "id"), [1], "category 0: id must be an integer or a string, got [1]"),
        (("annotations", 0, "id"), [1], "annotation 0: id must be an integer or a string, got [1]"),
        (("annotations", 0, "image_id"), [7], "annotation id 1: image_id must be an integer or a string, got [7]"),
        (("annotations", 1, "category_id"), {"id": 1}, "annotation id 2: category_id must be an integer or a string"),
        (("images", 0, "file_name"), ["a.jpg"], "image id 7: file_name must be a path, got ['a.jpg']"),
        (("categories", 0, "name"), ["nail"], "category id 1: name must be a string, got ['nail']"),
        (("categories",), {"1": "nail"}, "'categories' must be a list, got {'1': 'nail'}"),
    ],
)
def test_coco_fields_of_the_wrong_type_are_one_line_errors(photos, tmp_path, monkeypatch, capsys, where, value, words):
    (tmp_path / "coco.json").write_text(json.dumps(_set(coco_export(), where, value)))
    monkeypatch.delenv("FCOS_DEBUG", raising=False)
    argv = ["--coco", str(tmp_path / "coco.json"), "--images", str(photos), "--out", str(tmp_path / "voc")]
    with pytest.raises(SystemExit) as err:
        cli.run(conv.main, conv.get_args_parser().parse_args(argv), "python -m dataset.convert")
    printed = capsys.readouterr().err.strip()
    assert err.value.code == 2 and printed.startswith(f"python -m dataset.convert: error: {tmp_path / 'coco.json'}: ")
    assert words in printed and "\n" not in printed
    assert not (tmp_path / "voc").exists()


# ---------------------------------------------------------------- YOLO


YOLO_LABELS = {
    # a.jpg is 100x60: cx 0.25 w 0.2 span x 15 .. 35; 0.29 * 100 - 0.14 * 100 / 2 is 21.999999999999996, rounded off
    "a.txt": "2 0.25 0.3 0.2 0.4\n\n0 0.75 0.5 0.5 1.0\n1 0.29 0.35 0.14 0.3\n",
    "sub/b.txt": "3 0.5 0.5 0.25 0.125\n",  # b.jpg is 64x80
}


@pytest.fixture
def yolo_labels(tmp_path) -> Path:
    for name, text in YOLO_LABELS.items():
        (tmp_path / "labels" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "labels" / name).write_text(text)
    return tmp_path / "labels"


@pytest.mark.parametrize(
    "names_file, text",
    [
        ("classes.txt", "nail\nclip_B\nclip_Y\nL_stick\n\n"),  # beside the labels, as LabelImg writes it
        ("data.yaml", "path: .\nnames:\n  0: nail\n  1: clip_B\n  2: clip_Y\n  3: L_stick\n"),
        ("data.yaml", "nc: 4\nnames: [nail, clip_B, clip_Y, L_stick]\n"),
    ],
)
def test_yolo_round_trip(photos, yolo_labels, names_file, text):
    (yolo_labels / names_file).write_text(text)
    names = read_yolo_names(yolo_labels / names_file)
    assert names == FOD_CLASSES
    records = read_yolo(yolo_labels, photos, names, yolo_labels / names_file)
    assert [r.image for r in records] == ["a.jpg", "c.png", "sub/b.jpg"]  # c.png has no label file: no objects
    out = yolo_labels.parent / "voc"
    convert(records, photos, out, FOD_CLASSES)
    expected = torch.tensor([[15.0, 6, 35, 30], [50, 0, 100, 60], [22, 12, 36, 30]])
    assert torch.equal(loaded_boxes(out, "a"), expected)
    ann = parse_annotation(out / "Annotations" / "a.xml", FOD_CLASSES)
    assert ann["boxes"].tolist() == [[16, 7, 35, 30], [51, 1, 100, 60], [23, 13, 36, 30]]
    assert "<xmin>23</xmin>" in (out / "Annotations" / "a.xml").read_text()  # not 22.999999999999996
    assert ann["labels"].tolist() == [3, 1, 2]
    assert torch.equal(loaded_boxes(out, "b"), torch.tensor([[24.0, 35, 40, 45]]))
    assert loaded_boxes(out, "c").shape == (0, 4)


@pytest.mark.parametrize(
    "name, text, error, words",
    [
        ("a.txt", "1 0.5 0.5 0.2\n", ValueError, "a.txt: line 1: expected 5 fields class cx cy w h, got 4"),
        (
            "a.txt",
            "0 0.5 0.5 0.2 0.2\n4 0.5 0.5 0.2 0.2\n",
            ValueError,
            "a.txt: line 2: class '4' is not an index 0 .. 3",
        ),
        ("a.txt", "-1 0.5 0.5 0.2 0.2\n", ValueError, "a.txt: line 1: class '-1' is not an index"),
        ("a.txt", "1 0.5 x 0.2 0.2\n", ValueError, "a.txt: line 1: box fields must be numbers"),
        ("a.txt", "1 0.5 0.5 0.005 0.2\n", ValueError, "a.txt: line 1: empty box"),
        ("a.txt", "1 1.5 0.5 0.2 0.2\n", ValueError, "a.txt: line 1 (image "),  # nothing inside the picture
        ("zzz.txt", "1 0.5 0.5 0.2 0.2\n", FileNotFoundError, "zzz.txt: label file without a picture under"),
    ],
)
def test_yolo_errors_name_file_and_line(photos, tmp_path, name, text, error, words):
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / name).write_text(text)
    with pytest.raises(error) as info:
        convert(read_yolo(tmp_path / "labels", photos, FOD_CLASSES), photos, tmp_path / "voc", FOD_CLASSES)
    assert words in str(info.value)


def test_yolo_box_reaching_past_the_picture_is_clipped_with_a_warning(photos, tmp_path):
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("1 0.9 0.5 0.4 0.5\n")  # x 70 .. 110 in a 100-pixel-wide picture
    with pytest.warns(UserWarning, match=r"a.txt: line 1 \(image .*a.jpg\): box \[71.0, 16.0, 110.0, 45.0\] reaches"):
        convert(read_yolo(tmp_path / "labels", photos, FOD_CLASSES), photos, tmp_path / "voc", FOD_CLASSES)
    assert torch.equal(loaded_boxes(tmp_path / "voc", "a"), torch.tensor([[70.0, 15, 100, 45]]))


@pytest.mark.parametrize(
    "name, text, words",
    [
        ("classes.txt", "nail\n\nclip_B\n", "classes.txt: line 2 is empty"),
        ("classes.txt", "nail\nnail\n", "classes.txt: the class list is empty or has duplicates"),
        ("data.yaml", "nc: 2\n", "data.yaml: needs 'names'"),
        ("data.yaml", "names:\n  0: nail\n  2: clip_B\n", "data.yaml: 'names' must number the classes 0 .. 1"),
        ("data.yaml", "nc: 3\nnames: [nail, clip_B]\n", "data.yaml: 'nc' is 3 but 'names' has 2"),
        ("data.yaml", "names: [nail\n", "data.yaml: not valid YAML"),
    ],
)
def test_yolo_class_list_errors_name_the_file(tmp_path, name, text, words):
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=words):
        read_yolo_names(tmp_path / name)


def test_yolo_names_not_in_the_class_list_are_refused(photos, yolo_labels):
    with pytest.raises(ValueError, match=r"a.txt: line 1: class 'c' is not in the class list"):
        convert(read_yolo(yolo_labels, photos, ("a", "b", "c", "d")), photos, yolo_labels.parent / "voc", FOD_CLASSES)


# ---------------------------------------------------------------- LabelMe


def labelme_files(photos: Path) -> None:
    a = {
        "imagePath": "a.jpg",
        "imageWidth": 100,
        "imageHeight": 60,
        "shapes": [
            {"label": "clip_B", "points": [[40, 30], [10, 5]], "shape_type": "rectangle"},  # corners in any order
            {"label": "L_stick", "points": [[60, 20], [90, 25], [75, 50]], "shape_type": "polygon"},
        ],
    }
    b = {
        "imagePath": "..\\sub\\b.jpg",  # relative to the JSON file, written on Windows
        "imageWidth": 64,
        "imageHeight": 80,
        "shapes": [{"label": "clip_Y", "points": [[10, 10], [20, 10], [20, 30]]}],  # LabelMe < 3: no shape_type
    }
    (photos / "a.json").write_text(json.dumps(a))
    (photos / "sub" / "b.json").write_text(json.dumps(b))


def test_labelme_round_trip(photos, tmp_path):
    labelme_files(photos)
    records = read_labelme(photos)
    assert [r.image for r in records] == ["a.jpg", "sub/b.jpg"]
    out = tmp_path / "voc"
    convert(records, photos, out, FOD_CLASSES)
    # corner points are continuous: the rectangle (10, 5) .. (40, 30) covers the pixels 10 .. 39 x 5 .. 29
    assert torch.equal(loaded_boxes(out, "a"), torch.tensor([[10.0, 5, 40, 30], [60, 20, 90, 50]]))
    ann = parse_annotation(out / "Annotations" / "a.xml", FOD_CLASSES)
    assert ann["boxes"].tolist() == [[11, 6, 40, 30], [61, 21, 90, 50]] and ann["labels"].tolist() == [2, 4]
    assert torch.equal(loaded_boxes(out, "b"), torch.tensor([[10.0, 10, 20, 30]]))


@pytest.mark.parametrize(
    "change, error, words",
    [
        ({"imageWidth": 99}, ValueError, "a.json: the export says 99x60 but"),
        ({"imagePath": "gone.jpg"}, FileNotFoundError, "a.json: image file"),
        ({"imageWidth": "wide"}, ValueError, "a.json: imageWidth and imageHeight must be numbers"),
        ({"shapes": [{"label": "nail", "points": [[1, 1], [5, 5]], "shape_type": "circle"}]}, ValueError,
         "a.json: shape 0: shape 'circle' is not supported"),
        ({"shapes": [{"label": "nail", "points": [[1, 1], [5, 5], [9, 9]], "shape_type": "rectangle"}]}, ValueError,
         "a.json: shape 0: a rectangle needs 2 corner points"),
        ({"shapes": [{"label": "nail", "points": [[1, 1], [5, 5]], "shape_type": "polygon"}]}, ValueError,
         "a.json: shape 0: a polygon needs 3 or more points"),
        ({"shapes": [{"label": "", "points": [[1, 1], [5, 5]], "shape_type": "rectangle"}]}, ValueError,
         "a.json: shape 0: no label"),
        ({"shapes": [{"label": "nail", "points": [[1, 1], [1.5, 5]], "shape_type": "rectangle"}]}, ValueError,
         "a.json: shape 0: empty box"),
        ({"shapes": [{"label": "hammer", "points": [[1, 1], [5, 5]], "shape_type": "rectangle"}]}, ValueError,
         "a.json: shape 0: class 'hammer' is not in the class list"),
        ({"shapes": None}, ValueError, "a.json: 'shapes' must be a list"),
    ],
)  # fmt: skip
def test_labelme_errors_name_file_and_shape(photos, tmp_path, change, error, words):
    labelme_files(photos)
    data = json.loads((photos / "a.json").read_text())
    (photos / "a.json").write_text(json.dumps({**data, **change}))
    with pytest.raises(error, match=words.replace("(", r"\(")):
        convert(read_labelme(photos), photos, tmp_path / "voc", FOD_CLASSES)
    assert not (tmp_path / "voc").exists()


# ---------------------------------------------------------------- every format


def export_files(fmt: str, photos: Path, folder: Path) -> tuple[list[Path], list[str]]:
    """The text files of a small export of ``photos`` in ``fmt``, written under ``folder`` (LabelMe's beside
    the pictures), and the command line that converts it."""
    if fmt == "labelme":
        labelme_files(photos)
        return [photos / "a.json", photos / "sub" / "b.json"], ["--labelme", str(photos)]
    folder.mkdir()
    if fmt == "yolo":
        for name, text in {**YOLO_LABELS, "classes.txt": "\n".join(FOD_CLASSES) + "\n"}.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        classes = ["--yolo-classes", str(folder / "classes.txt")]
        return sorted(folder.rglob("*.txt")), ["--yolo", str(folder), *classes, "--images", str(photos)]
    name, text = {
        "csv": ("export.csv", CSV),
        "via": ("via.json", json.dumps(via_project())),
        "coco": ("coco.json", json.dumps(coco_export())),
    }[fmt]
    file = folder / name
    file.write_text(text)
    return [file], [f"--{fmt}", str(file), "--images", str(photos)]


@pytest.mark.parametrize(
    "fmt, wrote",
    [
        ("csv", "3 images (train 3, val 0), 3 boxes"),
        ("via", "2 images (train 2, val 0), 2 boxes"),
        ("coco", "3 images (train 3, val 0), 3 boxes"),
        ("yolo", "3 images (train 3, val 0), 4 boxes"),
        ("labelme", "2 images (train 2, val 0), 3 boxes"),
    ],
)
def test_a_utf8_byte_order_mark_is_read(photos, tmp_path, capsys, fmt, wrote):
    """Many Windows tools begin a UTF-8 text file with a byte-order mark (EF BB BF)."""
    files, argv = export_files(fmt, photos, tmp_path / "export")
    for file in files:
        file.write_text(file.read_text(), encoding="utf-8-sig")
        assert file.read_bytes().startswith(b"\xef\xbb\xbf")
    conv.main(conv.get_args_parser().parse_args([*argv, "--out", str(tmp_path / "voc")]))
    assert f"wrote {wrote}" in capsys.readouterr().out


# ---------------------------------------------------------------- nothing overwritten


def test_converting_again_changes_nothing(photos, tmp_path):
    (tmp_path / "ann.csv").write_text(CSV)
    out = tmp_path / "voc"
    first = convert(read_csv(tmp_path / "ann.csv"), photos, out, FOD_CLASSES, val_fraction=0.34)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    written = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    again = convert(read_csv(tmp_path / "ann.csv"), photos, out, FOD_CLASSES, val_fraction=0.34, link=True)
    assert again == first and sorted(p for p in out.rglob("*") if p.is_file()) == files
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == written


@pytest.mark.parametrize(
    "csv_text, val_fraction, words",
    [
        (CSV.replace("10,5,40,30", "10,5,41,30"), 0.0, "Annotations/a.xml: exists with other content; nothing"),
        (CSV, 0.34, "ImageSets/Main/train.txt: exists with other content (and 1 more)"),
        (
            "a.jpg,10,5,40,30,nail\n",
            0.0,
            "holds 4 files of pictures not in this export (e.g. Annotations/b.xml)",
        ),
    ],
)
def test_a_different_data_set_is_never_written_over(photos, tmp_path, csv_text, val_fraction, words):
    (tmp_path / "ann.csv").write_text(CSV)
    out = tmp_path / "voc"
    convert(read_csv(tmp_path / "ann.csv"), photos, out, FOD_CLASSES)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (tmp_path / "other.csv").write_text(csv_text)
    with pytest.raises(ValueError) as info:
        convert(read_csv(tmp_path / "other.csv"), photos, out, FOD_CLASSES, val_fraction=val_fraction)
    assert words in str(info.value)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_changed_picture_is_not_written_over(photos, tmp_path):
    (tmp_path / "ann.csv").write_text(CSV)
    convert(read_csv(tmp_path / "ann.csv"), photos, tmp_path / "voc", FOD_CLASSES)
    Image.new("RGB", (100, 60)).save(photos / "a.jpg")
    with pytest.raises(ValueError, match=r"JPEGImages/a.jpg: exists with other content"):
        convert(read_csv(tmp_path / "ann.csv"), photos, tmp_path / "voc", FOD_CLASSES)


# ---------------------------------------------------------------- splits


def scenes(folder: Path, names: list[str], frames_per_scene: int = 1) -> list[str]:
    """Pictures ``<name>_<k>.jpg``: noisy copies of one random smooth scene per name (near-duplicates of each
    other), unrelated across names. Returns their file names."""
    rng = np.random.default_rng(0)
    files = []
    for name in names:
        base = cv2.resize(rng.uniform(0, 255, (9, 16, 3)), (256, 144), interpolation=cv2.INTER_CUBIC)
        for k in range(frames_per_scene):
            files.append(f"{name}_{k}.jpg")
            noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
            (folder / files[-1]).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / files[-1]), noisy)
    return files


def test_split_keeps_near_duplicates_together(tmp_path, capsys):
    files = scenes(tmp_path / "photos", ["s0", "s1", "s2", "s3"], frames_per_scene=3)
    (tmp_path / "photos" / "ann.csv").write_text("".join(f"{f},,,,,\n" for f in files))
    out = tmp_path / "voc"
    argv = ["--csv", str(tmp_path / "photos" / "ann.csv"), "--out", str(out), "--split-val", "0.25", "--seed", "2"]
    conv.main(conv.get_args_parser().parse_args(argv))
    val = read_split(out, "val")
    assert len(val) == 3 and len({i.split("_")[0] for i in val}) == 1  # one whole scene
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"wrote 12 images (train 9, val 3), 0 boxes to {out}"
    assert printed[1].startswith("val pictures with a near-duplicate in train: 0 of 3 (0.0%;")
    seeds = {tuple(convert(read_csv(tmp_path / "photos" / "ann.csv"), tmp_path / "photos", tmp_path / f"v{s}",
                           FOD_CLASSES, val_fraction=0.25, seed=s)["val"]) for s in range(6)}  # fmt: skip
    assert len(seeds) > 1


@pytest.mark.parametrize(
    "files, group_by",
    [
        ([f"rec{r}_{k}" for r in range(4) for k in range(2)], r"^(rec\d)_"),
        ([f"rec{r}/{r}-{k}" for r in range(4) for k in range(2)], "folder"),
    ],
)
def test_split_keeps_groups_together(tmp_path, files, group_by):
    files = scenes(tmp_path / "photos", files)  # every picture its own scene
    (tmp_path / "ann.csv").write_text("".join(f"{f},,,,,\n" for f in files))
    records = read_csv(tmp_path / "ann.csv")
    ungrouped = convert(records, tmp_path / "photos", tmp_path / "a", FOD_CLASSES, val_fraction=0.25)
    grouped = convert(records, tmp_path / "photos", tmp_path / "b", FOD_CLASSES, val_fraction=0.25, group_by=group_by)
    group_of = {Path(f).stem: f[:4] for f in files}
    assert len(ungrouped["val"]) == 2 and len(grouped["val"]) == 2
    assert len({group_of[i] for i in grouped["val"]}) == 1  # one whole recording
    assert all(group_of[i] not in {group_of[j] for j in grouped["val"]} for i in grouped["train"])


def test_cli_options_that_need_another(tmp_path):
    args = conv.get_args_parser().parse_args(["--yolo", str(tmp_path), "--out", str(tmp_path / "voc")])
    with pytest.raises(ValueError, match=r"--yolo needs --yolo-classes FILE"):
        conv.main(args)
    args = conv.get_args_parser().parse_args(["--csv", "a.csv", "--out", str(tmp_path / "voc"), "--group-by", "folder"])
    with pytest.raises(ValueError, match=r"--group-by decides the train/val split: it needs --split-val"):
        conv.main(args)


# ---------------------------------------------------------------- pictures stored on their side


@pytest.mark.parametrize("fmt, picture", [("yolo", "a.jpg"), ("yolo", "a.png"), ("labelme", "a.jpg")])
def test_an_export_drawn_on_the_upright_view_of_a_turned_picture(tmp_path, fmt, picture):
    """YOLO tools (ultralytics, CVAT) and LabelMe label a phone picture stored on its side (EXIF orientation 6)
    as every viewer shows it: the XML is written in that upright frame, and training reads the picture so (a
    re-encoded PNG keeps its orientation)."""
    upright = np.zeros((64, 96, 3), np.uint8)
    upright[20:50, 10:40] = 255  # the object: x 10 .. 40, y 20 .. 50 (continuous) on the upright view
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    (tmp_path / "photos").mkdir()
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(tmp_path / "photos" / picture, exif=exif)
    if fmt == "yolo":
        (tmp_path / "labels").mkdir()
        (tmp_path / "labels/a.txt").write_text(f"0 {25 / 96} {35 / 64} {30 / 96} {30 / 64}\n")
        (tmp_path / "classes.txt").write_text("\n".join(FOD_CLASSES))
        argv = ["--yolo", str(tmp_path / "labels"), "--yolo-classes", str(tmp_path / "classes.txt")]
        argv += ["--images", str(tmp_path / "photos")]
    else:
        shape = {"label": "nail", "points": [[10, 20], [40, 50]], "shape_type": "rectangle"}
        labelme = {"imagePath": picture, "imageWidth": 96, "imageHeight": 64, "shapes": [shape]}
        (tmp_path / "photos/a.json").write_text(json.dumps(labelme))
        argv = ["--labelme", str(tmp_path / "photos")]
    conv.main(conv.get_args_parser().parse_args([*argv, "--out", str(tmp_path / "voc")]))
    ann = parse_annotation(tmp_path / "voc/Annotations/a.xml", FOD_CLASSES)
    assert (ann["width"], ann["height"]) == (96, 64)
    np.testing.assert_allclose(ann["boxes"], [[11, 21, 40, 50]], atol=1e-4)
    image, target = VOCDataset(tmp_path / "voc", "trainval", resize_size=(64, 96))[0]
    x1, y1, x2, y2 = target["boxes"][0].round().int().tolist()
    assert image[:, y1 + 2 : y2 - 2, x1 + 2 : x2 - 2].mean() > 1.5  # white, ImageNet-normalised
    assert image[:, : y1 - 2].mean() < -1.5  # black around it
