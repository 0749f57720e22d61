"""Annotation exports read into :class:`Record`: keras-retinanet CSV, VGG Image Annotator, COCO, YOLO, LabelMe.

Every reader gives each box in one frame, 0-based inclusive pixel indices ``(x1, y1, x2, y2)``: the first
and the last pixel the box covers. Formats in continuous coordinates (VIA, COCO, YOLO, LabelMe), where a
box from x = 10 to x = 30 covers the pixels 10 .. 29, lose 1 at the far edges. Every error names the file
and the entry (row, region, annotation, line or shape).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pycocotools.coco import COCO

from dataset.decoding import read_header
from dataset.pictures import IMAGE_SUFFIXES

Box = tuple[float, float, float, float]


@dataclass
class Record:
    """One picture of an export: its path as written, where it is in the export (for error messages), the
    size (W, H) the export states or implies for it (None when neither; for a picture stored on its side, the
    size tells whether the boxes lie on its stored pixels or on its upright view), and its objects: 0-based
    inclusive pixel boxes, class names, difficult flags and each object's place in the export."""

    image: str
    where: str
    size: tuple[int, int] | None = None
    boxes: list[Box] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    difficult: list[bool] = field(default_factory=list)
    places: list[str] = field(default_factory=list)

    def add(self, box: Box, name: str, where: str, difficult: bool = False) -> None:
        self.boxes.append(box)
        self.names.append(name)
        self.difficult.append(difficult)
        self.places.append(where)


def _numbers(values: Sequence[Any], where: str, what: str = "box fields") -> tuple[float, ...]:
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {what} must be numbers, got {list(values)}") from None
    if not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"{where}: {what} must be finite numbers, got {list(values)}")
    return numbers


def _inclusive_box(box: Sequence[float], where: str) -> Box:
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"{where}: empty box, need x2 > x1 and y2 > y1, got {[x1, y1, x2, y2]}")
    return (x1, y1, x2, y2)


def _continuous_box(box: Sequence[float], where: str) -> Box:
    """The 0-based inclusive box of one in continuous coordinates: [x1, x2) covers the pixels x1 .. x2 - 1.
    VOC needs xmax > xmin, so a box must be more than one pixel across."""
    x1, y1, x2, y2 = box
    if x2 - x1 <= 1 or y2 - y1 <= 1:
        raise ValueError(f"{where}: empty box, need x2 - x1 > 1 and y2 - y1 > 1 (continuous), got {[x1, y1, x2, y2]}")
    return (x1, y1, x2 - 1, y2 - 1)


def _read_text(path: Path, what: str) -> str:
    """The file as UTF-8 text, without the byte-order mark many Windows tools begin it with."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file") from None


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(_read_text(path, what))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def _nonempty(records: list[Record], source: Path) -> list[Record]:
    if not records:
        raise ValueError(f"{source}: the export lists no pictures")
    return records


def read_csv(path: str | Path) -> list[Record]:
    """Records of a keras-retinanet CSV file, in file order: rows ``path,x1,y1,x2,y2,class`` with 0-based
    inclusive pixel indices (x2 is the box's last pixel); a row ``path,,,,,`` lists a picture without objects."""
    path = Path(path)
    records: dict[str, Record] = {}
    for line, row in enumerate(csv.reader(io.StringIO(_read_text(path, "annotation file"))), start=1):
        if not row or all(not c.strip() for c in row):
            continue
        where = f"{path}: row {line}"
        if len(row) != 6:
            raise ValueError(f"{where}: expected 6 fields path,x1,y1,x2,y2,class, got {len(row)}: {row}")
        image, *coords, name = (c.strip() for c in row)
        if line == 1 and coords == ["x1", "y1", "x2", "y2"]:
            continue  # header
        record = records.setdefault(image, Record(image, where))
        if not any(coords) and not name:
            continue  # picture without objects
        box = _inclusive_box(_numbers(coords, where), where)
        if not name:
            raise ValueError(f"{where}: missing class name")
        record.add(box, name, where)
    return _nonempty(list(records.values()), path)


def _via_class(attributes: dict, attribute: str, where: str) -> str:
    value = attributes.get(attribute)
    if isinstance(value, dict):  # checkbox attribute: {"nail": true}
        chosen = [k for k, v in value.items() if v]
        value = chosen[0] if len(chosen) == 1 else None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: region attribute {attribute!r} missing or not a single class ({attributes})")
    return value.strip()


def _via_box(shape: Any, where: str) -> Box:
    """A VIA rectangle (x, y, width, height) or polygon (all_points_x/y -> its extent), continuous coordinates."""
    kind = shape.get("name") if isinstance(shape, dict) else None
    if kind not in ("rect", "polygon", "polyline"):
        raise ValueError(f"{where}: shape {kind!r} is not supported (rect or polygon)")
    try:
        if kind == "rect":
            x, y, w, h = (shape[k] for k in ("x", "y", "width", "height"))
        else:
            xs, ys = list(shape["all_points_x"]), list(shape["all_points_y"])
    except (KeyError, TypeError):
        raise ValueError(f"{where}: malformed shape attributes {shape}") from None
    if kind == "rect":
        x, y, w, h = _numbers([x, y, w, h], where)
        return _continuous_box((x, y, x + w, y + h), where)
    if not xs or len(xs) != len(ys):
        raise ValueError(f"{where}: malformed shape attributes {shape}")
    xs, ys = _numbers(xs, where), _numbers(ys, where)
    return _continuous_box((min(xs), min(ys), max(xs), max(ys)), where)


def read_via(path: str | Path, attribute: str = "class") -> list[Record]:
    """Records of a VGG Image Annotator export (the project file or "annotations as json"): rectangles and
    polygons (-> their bounding box) in continuous coordinates, the class from the region attribute
    ``attribute``; a rectangle at x of width w covers the pixels x .. x + w - 1."""
    path = Path(path)
    data = _read_json(path, "annotation file")
    metadata = data.get("_via_img_metadata", data) if isinstance(data, dict) else None
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: not a VIA export (a JSON object of image records)")
    records = []
    for key, entry in metadata.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str):
            raise ValueError(f"{path}: entry {key!r} is not a VIA image record (no 'filename')")
        record = Record(entry["filename"], f"{path}: image {entry['filename']!r}")
        regions = entry.get("regions") or []
        for k, region in enumerate(regions.values() if isinstance(regions, dict) else regions):
            where = f"{path}: image {entry['filename']!r} region {k}"
            if not isinstance(region, dict):
                raise ValueError(f"{where}: not a VIA region")
            box = _via_box(region.get("shape_attributes"), where)
            record.add(box, _via_class(region.get("region_attributes") or {}, attribute, where), where)
        records.append(record)
    return _nonempty(records, path)


def _check_id(value: Any, where: str, key: str) -> None:
    """A COCO id is an integer (or, in some tools' exports, a string)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{where}: {key} must be an integer or a string, got {value!r}")


def _check_entries(path: Path, entries: list, what: str, keys: Sequence[str]) -> dict[Any, dict]:
    """COCO entries by id, each a JSON object with ``keys``; an id that is not an integer or a string, or one
    id twice, is an error."""
    by_id: dict[Any, dict] = {}
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict) or any(key not in entry for key in keys):
            raise ValueError(f"{path}: {what} {k}: needs {', '.join(keys)}, got {entry}")
        _check_id(entry["id"], f"{path}: {what} {k}", "id")
        if entry["id"] in by_id:
            raise ValueError(f"{path}: {what} {k}: id {entry['id']!r} is used twice")
        by_id[entry["id"]] = entry
    return by_id


def read_coco(path: str | Path) -> list[Record]:
    """Records of a COCO detection file, indexed by pycocotools, in the order of its ``images``.

    ``bbox`` is [x, y, w, h] in continuous pixel coordinates: a box at x = 10 of width 20 covers the pixels
    10 .. 29 (VOC xmin 11, xmax 30). A ``file_name`` is the picture's path; its ``width`` x ``height`` is
    checked against the picture. ``iscrowd`` boxes become difficult objects (left out of training and ignored
    by the metric, as COCO's evaluation ignores crowds); a picture without annotations has no objects.
    """
    path = Path(path)
    data = _read_json(path, "annotation file")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations")):
        raise ValueError(f"{path}: not a COCO detection file (needs 'images' and 'annotations' lists)")
    if not isinstance(data.get("categories") or [], list):
        raise ValueError(f"{path}: 'categories' must be a list, got {data['categories']!r}")
    images = _check_entries(path, data["images"], "image", ("id", "file_name", "width", "height"))
    for image in images.values():
        if not isinstance(image["file_name"], str) or not image["file_name"]:
            raise ValueError(f"{path}: image id {image['id']!r}: file_name must be a path, got {image['file_name']!r}")
    categories = _check_entries(path, data.get("categories") or [], "category", ("id", "name"))
    for category in categories.values():
        if not isinstance(category["name"], str):
            raise ValueError(f"{path}: category id {category['id']!r}: name must be a string, got {category['name']!r}")
    _check_entries(path, data["annotations"], "annotation", ("id", "image_id", "category_id", "bbox"))
    for ann in data["annotations"]:
        where = f"{path}: annotation id {ann['id']!r}"
        _check_id(ann["image_id"], where, "image_id")
        _check_id(ann["category_id"], where, "category_id")
        if ann["image_id"] not in images:
            raise ValueError(f"{where}: image_id {ann['image_id']!r} is not in 'images'")
        if ann["category_id"] not in categories:
            raise ValueError(f"{where}: category_id {ann['category_id']!r} is not in 'categories'")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco.createIndex()
    records = []
    for image_id in coco.getImgIds():
        image = coco.imgs[image_id]
        where = f"{path}: image id {image_id!r} ({image['file_name']!r})"
        width, height = _numbers([image["width"], image["height"]], where, "width and height")
        record = Record(image["file_name"], where, (int(width), int(height)))
        for ann in coco.imgToAnns[image_id]:
            where = f"{path}: annotation id {ann['id']!r}"
            if not isinstance(ann["bbox"], list) or len(ann["bbox"]) != 4:
                raise ValueError(f"{where}: bbox must be [x, y, w, h], got {ann['bbox']}")
            x, y, w, h = _numbers(ann["bbox"], where, "bbox values")
            box = _continuous_box((x, y, x + w, y + h), where)
            record.add(box, coco.cats[ann["category_id"]]["name"], where, bool(ann.get("iscrowd", 0)))
        records.append(record)
    return _nonempty(records, path)


def read_yolo_names(path: str | Path) -> tuple[str, ...]:
    """A YOLO export's class names, by class index: a text file with one name a line (``classes.txt``,
    ``obj.names``), or a ``data.yaml`` whose ``names`` is a list or an {index: name} mapping."""
    path = Path(path)
    text = _read_text(path, "class list")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
        names = data.get("names") if isinstance(data, dict) else None
        if isinstance(names, dict):
            if set(names) != set(range(len(names))):
                raise ValueError(f"{path}: 'names' must number the classes 0 .. {len(names) - 1}, got {list(names)}")
            names = [names[i] for i in range(len(names))]
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise ValueError(f"{path}: needs 'names', a list of class names or a mapping from 0, 1, ... to them")
        if isinstance(data.get("nc"), int) and data["nc"] != len(names):
            raise ValueError(f"{path}: 'nc' is {data['nc']} but 'names' has {len(names)}")
    else:
        names = [line.strip() for line in text.splitlines()]
        while names and not names[-1]:
            names.pop()
        if "" in names:
            raise ValueError(f"{path}: line {names.index('') + 1} is empty (line k names class k - 1)")
    names = [n.strip() for n in names]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"{path}: the class list is empty or has duplicates")
    return tuple(names)


def _add_yolo_labels(record: Record, label: Path, size: tuple[int, int], names: Sequence[str]) -> None:
    """The boxes of a YOLO label file, for a picture of ``size`` (W, H), added to ``record``."""
    width, height = size
    for line, text in enumerate(_read_text(label, "label file").splitlines(), start=1):
        fields = text.split()
        if not fields:
            continue
        where = f"{label}: line {line}"
        if len(fields) != 5:
            raise ValueError(f"{where}: expected 5 fields class cx cy w h, got {len(fields)}: {text.strip()!r}")
        if not fields[0].isdigit() or int(fields[0]) >= len(names):
            raise ValueError(f"{where}: class {fields[0]!r} is not an index 0 .. {len(names) - 1} of {tuple(names)}")
        cx, cy, w, h = _numbers(fields[1:], where)
        x1, y1 = cx * width - w * width / 2, cy * height - h * height / 2
        box = (x1, y1, x1 + w * width, y1 + h * height)
        # products of decimal fractions carry float noise (0.07 * 100 = 7.000000000000001)
        box = tuple(round(v, 6) for v in box)
        record.add(_continuous_box(box, where), names[int(fields[0])], where)


def read_yolo(
    labels: str | Path, images: str | Path, names: Sequence[str], names_file: str | Path | None = None
) -> list[Record]:
    """Records of a YOLO export: every picture under ``images`` (searched recursively), with the boxes of
    ``labels/<its path under images, .txt>``; a picture without a label file has no objects (YOLO's rule
    for background pictures), and a label file without a picture is an error (``names_file``, a class list
    kept among the labels, is skipped).

    A line is ``class cx cy w h``: an index into ``names``, then the box's centre and size relative to the
    picture's width and height in its upright view (EXIF orientation applied, as the tools show it), read from
    the picture file; that is the records' size. The coordinates are continuous: in a picture
    100 pixels wide, cx 0.2 and w 0.2 span x = 10 .. 30, the pixels 10 .. 29 (VOC xmin 11, xmax 30).
    """
    labels, images = Path(labels), Path(images)
    for folder, what in ((labels, "label folder"), (images, "picture folder")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: {what} not found")
    skipped = Path(names_file).resolve() if names_file is not None else None
    label_files = {p.relative_to(labels).with_suffix(""): p for p in sorted(labels.rglob("*.txt"))}
    label_files = {stem: p for stem, p in label_files.items() if p.resolve() != skipped}
    pictures = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    records = []
    for picture in pictures:
        relative = picture.relative_to(images)
        label = label_files.pop(relative.with_suffix(""), None)
        size = read_header(picture).upright  # YOLO tools label the view every viewer shows
        record = Record(str(relative), str(label or picture), size)
        if label is not None:
            _add_yolo_labels(record, label, size, names)
        records.append(record)
    if label_files:
        first = next(iter(label_files.values()))
        more = f" (and {len(label_files) - 1} more)" if len(label_files) > 1 else ""
        raise FileNotFoundError(f"{first}: label file without a picture under {images}{more}")
    if not records:
        raise ValueError(f"{images}: no pictures ({', '.join(IMAGE_SUFFIXES)}) found")
    return records


def read_labelme(folder: str | Path) -> list[Record]:
    """Records of a folder of LabelMe files (``*.json``, searched recursively; one file a picture).

    ``imagePath`` is relative to its JSON file (Windows backslashes read as slashes), and ``imageWidth`` x
    ``imageHeight`` is checked against the picture; the records' paths are relative to ``folder``. Shapes
    are ``rectangle`` (two corner points, in either order) or ``polygon`` (-> its bounding box; LabelMe
    before 3.0 wrote polygons without a ``shape_type``); other shapes are refused. Points are continuous
    coordinates: a rectangle from (10, 5) to (30, 25) covers the pixels 10 .. 29 x 5 .. 24 (VOC 11, 6, 30, 25).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: LabelMe folder not found")
    records = []
    for file in sorted(folder.rglob("*.json")):
        data = _read_json(file, "LabelMe file")
        if not isinstance(data, dict) or not isinstance(data.get("imagePath"), str) or "shapes" not in data:
            raise ValueError(f"{file}: not a LabelMe file (needs 'imagePath' and 'shapes')")
        size = _numbers([data.get("imageWidth"), data.get("imageHeight")], str(file), "imageWidth and imageHeight")
        image = os.path.relpath(file.parent / data["imagePath"].replace("\\", "/"), folder)
        record = Record(image, str(file), (int(size[0]), int(size[1])))
        if not isinstance(data["shapes"], list):
            raise ValueError(f"{file}: 'shapes' must be a list, got {data['shapes']!r}")
        for k, shape in enumerate(data["shapes"]):
            where = f"{file}: shape {k}"
            kind = (shape.get("shape_type") or "polygon") if isinstance(shape, dict) else None
            if kind not in ("rectangle", "polygon"):
                raise ValueError(f"{where}: shape {kind!r} is not supported (rectangle or polygon)")
            label, points = shape.get("label"), shape.get("points")
            if not isinstance(label, str) or not label.strip():
                raise ValueError(f"{where}: no label")
            if not isinstance(points, list) or not all(isinstance(p, list) and len(p) == 2 for p in points):
                raise ValueError(f"{where}: points must be a list of [x, y], got {points}")
            if (len(points) != 2) if kind == "rectangle" else (len(points) < 3):
                needed = "2 corner points" if kind == "rectangle" else "3 or more points"
                raise ValueError(f"{where}: a {kind} needs {needed}, got {points}")
            xs = _numbers([p[0] for p in points], where, "points")
            ys = _numbers([p[1] for p in points], where, "points")
            record.add(_continuous_box((min(xs), min(ys), max(xs), max(ys)), where), label.strip(), where)
        records.append(record)
    return _nonempty(records, folder)
