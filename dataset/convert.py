"""Convert annotation exports (keras-retinanet CSV, VGG Image Annotator JSON) to VOC layout.

    python -m dataset.convert --csv annotations.csv --images photos/ --out foreign_object_dataset \
        --split-val 0.2 --seed 0
    python -m dataset.convert --via via_project.json --images photos/ --out DIR --attribute class --link

CSV rows are ``path,x1,y1,x2,y2,class`` with 0-based pixel coordinates; a row with the five box
fields empty lists a picture without objects. VIA exports (the project file or the
"annotations as json" export) may hold rectangles and polygons; a polygon becomes its bounding
box and the class comes from the region attribute ``--attribute``. Image paths are taken
relative to ``--images`` (default: the annotation file's folder).

Output: ``JPEGImages/<stem>.jpg`` (copied, symlinked with ``--link``, or re-encoded when the source
is not a JPEG), ``Annotations/<stem>.xml`` (1-based VOC coordinates) and
``ImageSets/Main/{train,val,trainval}.txt`` (a random ``--split-val`` fraction goes to val).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from cli import DefaultsFormatter, run
from dataset.voc import fit_box_to_picture, resolve_classes, write_annotation, write_split

Box = tuple[float, float, float, float]


@dataclass
class Record:
    """One picture of an export: its path as written, and its objects (0-based inclusive pixel boxes)."""

    image: str
    where: str  # location in the export, for error messages
    boxes: list[Box] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    places: list[str] = field(default_factory=list)  # per object, location in the export


def _checked_box(box: Sequence[float], where: str) -> Box:
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"{where}: empty box, need x2 > x1 and y2 > y1, got {[x1, y1, x2, y2]}")
    return (x1, y1, x2, y2)


def read_csv(path: str | Path) -> list[Record]:
    """Records of a keras-retinanet CSV file (``path,x1,y1,x2,y2,class``), in file order."""
    path = Path(path)
    records: dict[str, Record] = {}
    with path.open(newline="") as f:
        for line, row in enumerate(csv.reader(f), start=1):
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
            try:
                box = tuple(float(c) for c in coords)
            except ValueError:
                raise ValueError(f"{where}: box fields must be numbers, got {coords}") from None
            if not name:
                raise ValueError(f"{where}: missing class name")
            record.boxes.append(_checked_box(box, where))
            record.names.append(name)
            record.places.append(where)
    return list(records.values())


def _via_class(attributes: dict, attribute: str, where: str) -> str:
    value = attributes.get(attribute)
    if isinstance(value, dict):  # checkbox attribute: {"nail": true}
        chosen = [k for k, v in value.items() if v]
        value = chosen[0] if len(chosen) == 1 else None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: region attribute {attribute!r} missing or not a single class ({attributes})")
    return value.strip()


def _via_box(shape: dict, where: str) -> Box:
    """0-based inclusive box of a VIA rectangle (x, y, width, height) or polygon (all_points_x/y).

    VIA draws in continuous coordinates: a rectangle at x of width w covers the pixels x .. x + w - 1.
    """
    kind = shape.get("name")
    if kind not in ("rect", "polygon", "polyline"):
        raise ValueError(f"{where}: shape {kind!r} is not supported (rect or polygon)")
    try:
        if kind == "rect":
            x, y = float(shape["x"]), float(shape["y"])
            box = (x, y, x + float(shape["width"]), y + float(shape["height"]))
        else:
            xs = [float(v) for v in shape["all_points_x"]]
            ys = [float(v) for v in shape["all_points_y"]]
            box = (min(xs), min(ys), max(xs), max(ys))
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{where}: malformed shape attributes {shape}") from None
    return _checked_box((box[0], box[1], box[2] - 1, box[3] - 1), where)


def read_via(path: str | Path, attribute: str = "class") -> list[Record]:
    """Records of a VGG Image Annotator export: rectangles and polygons (-> bounding box)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    metadata = data.get("_via_img_metadata", data)
    records = []
    for key, entry in metadata.items():
        if not isinstance(entry, dict) or "filename" not in entry:
            raise ValueError(f"{path}: entry {key!r} is not a VIA image record (no 'filename')")
        record = Record(entry["filename"], f"{path}: image {entry['filename']!r}")
        regions = entry.get("regions") or []
        for k, region in enumerate(regions.values() if isinstance(regions, dict) else regions):
            where = f"{path}: image {entry['filename']!r} region {k}"
            box = _via_box(region.get("shape_attributes", {}), where)
            record.boxes.append(box)
            record.names.append(_via_class(region.get("region_attributes", {}), attribute, where))
            record.places.append(where)
        records.append(record)
    return records


def _place_image(src: Path, dst: Path, fmt: str | None, link: bool) -> None:
    dst.unlink(missing_ok=True)
    if fmt != "JPEG":
        with Image.open(src) as im:
            im.convert("RGB").save(dst, "JPEG", quality=95)
    elif link:
        os.symlink(src.resolve(), dst)
    else:
        shutil.copyfile(src, dst)


def convert(
    records: Sequence[Record],
    images: str | Path,
    out: str | Path,
    classes: Sequence[str],
    val_fraction: float = 0.0,
    seed: int = 0,
    link: bool = False,
) -> dict[str, list[str]]:
    """Write the records as a VOC-layout set under ``out``; returns the ids of train, val, trainval.

    Picture sizes are read from the file headers. A box reaching past its picture is clipped with a
    warning, as the VOC reader does. Raises FileNotFoundError for a missing picture and ValueError for
    an unknown class, a box with nothing inside its picture or two pictures with one stem, each naming
    the export file and row.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val fraction must be in [0, 1), got {val_fraction}")
    images, out = Path(images), Path(out)
    (out / "JPEGImages").mkdir(parents=True, exist_ok=True)
    seen: dict[str, str] = {}
    for record in records:
        src = images / record.image
        if not src.is_file():
            raise FileNotFoundError(f"{record.where}: image file {src} not found")
        image_id = src.stem
        if image_id in seen:
            raise ValueError(f"{record.where}: {record.image} and {seen[image_id]} both give image id {image_id!r}")
        seen[image_id] = record.image
        try:
            with Image.open(src) as im:
                (width, height), fmt = im.size, im.format
        except (OSError, UnidentifiedImageError) as e:
            raise ValueError(f"{record.where}: cannot read image {src} ({e})") from None
        boxes = []
        for box, name, where in zip(record.boxes, record.names, record.places):
            if name not in classes:
                raise ValueError(f"{where}: class {name!r} is not in the class list {tuple(classes)}")
            xml_box = [v + 1 for v in box]  # 0-based pixels -> 1-based VOC
            boxes.append(fit_box_to_picture(xml_box, width, height, f"{where} (image {src})"))
        _place_image(src, out / "JPEGImages" / f"{image_id}.jpg", fmt, link)
        write_annotation(out / "Annotations" / f"{image_id}.xml", f"{image_id}.jpg", width, height, boxes, record.names)

    ids = sorted(seen)
    shuffled = ids.copy()
    random.Random(seed).shuffle(shuffled)
    num_val = round(len(ids) * val_fraction)
    splits = {"train": sorted(shuffled[num_val:]), "val": sorted(shuffled[:num_val]), "trainval": ids}
    for split, split_ids in splits.items():
        write_split(out, split, split_ids)
    return splits


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Convert CSV / VIA annotations to VOC layout", add_help=add_help, formatter_class=DefaultsFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", help="keras-retinanet CSV: path,x1,y1,x2,y2,class (0-based pixels)")
    source.add_argument("--via", help="VGG Image Annotator project or JSON export")
    parser.add_argument(
        "--images", default=None, help="folder the image paths are relative to (default: the annotation file's)"
    )
    parser.add_argument("--out", required=True, help="output folder (VOC layout)")
    parser.add_argument("--classes", default="fod", help='"fod", "voc", "a,b,c" or a text file')
    parser.add_argument("--attribute", default="class", help="VIA region attribute holding the class")
    parser.add_argument(
        "--split-val", type=float, default=0.0, metavar="FRACTION", help="random fraction of pictures for val"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val split")
    parser.add_argument("--link", action="store_true", help="symlink JPEG pictures instead of copying them")
    return parser


def main(args: argparse.Namespace) -> None:
    source = Path(args.csv or args.via)
    records = read_csv(source) if args.csv else read_via(source, args.attribute)
    images = Path(args.images) if args.images else source.parent
    splits = convert(records, images, args.out, resolve_classes(args.classes), args.split_val, args.seed, args.link)
    num_boxes = sum(len(r.boxes) for r in records)
    print(
        f"wrote {len(splits['trainval'])} images (train {len(splits['train'])}, val {len(splits['val'])}), "
        f"{num_boxes} boxes to {args.out}"
    )


if __name__ == "__main__":
    run(main, get_args_parser().parse_args(), "python -m dataset.convert")
