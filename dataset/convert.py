"""Convert annotation exports to VOC layout, with a train/val split that cannot leak.

    python -m dataset.convert --coco instances.json --images photos/ --out foreign_object_dataset --split-val 0.2
    python -m dataset.convert --yolo labels/ --yolo-classes data.yaml --images images/ --out DIR --split-val 0.2
    python -m dataset.convert --labelme photos/ --out DIR --split-val 0.2 --group-by folder
    python -m dataset.convert --csv annotations.csv --images photos/ --out DIR --split-val 0.2 --seed 0
    python -m dataset.convert --via via_project.json --images photos/ --out DIR --attribute class --link

The formats and their coordinates: :mod:`dataset.exports`. Image paths are relative to ``--images``
(default: the export's folder). Output: ``JPEGImages/<stem>.jpg`` (copied, symlinked with ``--link``, or
re-encoded when the source is not a JPEG), ``Annotations/<stem>.xml`` (1-based VOC coordinates) and
``ImageSets/Main/{train,val,trainval}.txt``. ``--split-val`` sends whole clusters of pictures to val
(:mod:`dataset.splits`), so that no val picture has a near-duplicate in train, and with ``--group-by`` no
group is split either.

Nothing is overwritten: a file already in ``--out`` is left as it is when it holds what would be written,
and one that differs, or files of pictures that are not in the export, stop the conversion before anything
is written. Converting the same export into the same folder again changes nothing.
"""

from __future__ import annotations

import argparse
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from cli import DefaultsFormatter, run
from dataset.annotations import annotation_xml, fit_box_to_picture, image_path, resolve_classes, split_path
from dataset.decoding import read_header
from dataset.exports import Record, read_coco, read_csv, read_labelme, read_via, read_yolo, read_yolo_names
from dataset.near_duplicates import MEASURE, NEAR_DUPLICATE_THRESHOLD, check_voc_split, split_report, thumbnails
from dataset.splits import clusters, group_keys, split_clusters


@dataclass(frozen=True)
class Picture:
    """A picture to write: its id (file stem), the export's record of it, its file and format, and its XML."""

    image_id: str
    record: Record
    source: Path
    format: str | None
    xml: bytes

    def jpeg(self) -> bytes:
        """The picture as a JPEG file: the source's own bytes, or re-encoded."""
        if self.format == "JPEG":
            return self.source.read_bytes()
        with Image.open(self.source) as im:
            buffer = io.BytesIO()
            # the EXIF orientation stays, so the picture keeps the frame its XML was written in
            im.convert("RGB").save(buffer, "JPEG", quality=95, exif=im.getexif() or b"")
            return buffer.getvalue()


def _picture(record: Record, images: Path, classes: Sequence[str]) -> Picture:
    """A record checked against its picture: size, classes, boxes inside (clipped with a warning)."""
    source = images / record.image
    if not source.is_file():
        raise FileNotFoundError(f"{record.where}: image file {source} not found")
    try:
        with Image.open(source) as im:
            fmt = im.format
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"{record.where}: cannot read image {source} ({e})") from None
    frames = read_header(source)
    if record.size is not None and record.size not in frames:
        (w, h), (uw, uh) = frames
        upright = f" ({uw}x{uh} upright)" if frames.upright != frames.stored else ""
        said = f"{record.size[0]}x{record.size[1]}"
        raise ValueError(f"{record.where}: the export says {said} but {source} is {w}x{h}{upright}")
    # the XML is in the frame the export's boxes were drawn in, the one the data set then reads the picture in
    width, height = record.size or frames.stored
    boxes = []
    for box, name, where in zip(record.boxes, record.names, record.places):
        if name not in classes:
            raise ValueError(f"{where}: class {name!r} is not in the class list {tuple(classes)}")
        xml_box = [v + 1 for v in box]  # 0-based pixels -> 1-based VOC
        boxes.append(fit_box_to_picture(xml_box, width, height, f"{where} (image {source})"))
    xml = annotation_xml(f"{source.stem}.jpg", width, height, boxes, record.names, difficult=record.difficult)
    return Picture(source.stem, record, source, fmt, xml)


def _differs(path: Path, content: Callable[[], bytes]) -> bool:
    """Whether a file is already at ``path`` holding something other than ``content()``."""
    if not path.exists():
        return path.is_symlink()  # a broken link is in the way too
    return path.read_bytes() != content()


def _refuse_to_overwrite(out: Path, pictures: Sequence[Picture], files: dict[Path, bytes]) -> None:
    ids = {p.image_id for p in pictures}
    others = sorted(
        f"{folder}/{f.name}"
        for folder, suffix in (("Annotations", ".xml"), ("JPEGImages", ".jpg"))
        for f in (out / folder).glob(f"*{suffix}")
        if f.stem not in ids
    )
    if others:
        raise ValueError(
            f"{out}: holds {len(others)} files of pictures not in this export (e.g. {others[0]}); "
            "nothing was written: convert into a new or empty folder"
        )
    changed = [path for path, content in files.items() if _differs(path, lambda content=content: content)]
    changed += [image_path(out, p.image_id) for p in pictures if _differs(image_path(out, p.image_id), p.jpeg)]
    if changed:
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise ValueError(
            f"{changed[0]}: exists with other content{more}; nothing was written: convert into a new or empty folder"
        )


def convert(
    records: Sequence[Record],
    images: str | Path,
    out: str | Path,
    classes: Sequence[str],
    *,
    val_fraction: float = 0.0,
    seed: int = 0,
    link: bool = False,
    group_by: str | None = None,
    threshold: float = NEAR_DUPLICATE_THRESHOLD,
) -> dict[str, list[str]]:
    """Write the records as a VOC-layout set under ``out``; returns the ids of train, val and trainval.

    Picture sizes are read from the file headers; a size the export states must be the picture's stored or
    upright (EXIF orientation applied) one, and the XML is written in that frame (the stored one when none).
    A box reaching past its picture is clipped with a warning, as the VOC reader does. ``val_fraction`` of the
    pictures at most go to val, by whole clusters of near-duplicates (``threshold``) and of ``group_by`` keys
    (:func:`dataset.splits.group_keys`), in a random order drawn with ``seed``. Raises FileNotFoundError for a
    missing picture and ValueError for an unknown class, a box with nothing inside its picture, two pictures
    with one stem (each naming the export file and entry), or a file in ``out`` it would change; nothing is
    written then.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val fraction must be in [0, 1), got {val_fraction}")
    images, out = Path(images), Path(out)
    pictures: dict[str, Picture] = {}
    for record in records:
        picture = _picture(record, images, classes)
        if picture.image_id in pictures:
            first = pictures[picture.image_id].record.image
            raise ValueError(f"{record.where}: {record.image} and {first} both give image id {picture.image_id!r}")
        pictures[picture.image_id] = picture
    ordered = [pictures[i] for i in sorted(pictures)]  # the split depends on the pictures, not the export's order

    in_val = [False] * len(ordered)
    if val_fraction > 0:
        keys = group_keys([p.record.image for p in ordered], group_by) if group_by else None
        cluster = clusters(thumbnails([p.source for p in ordered]), keys, threshold)
        in_val = split_clusters(cluster, val_fraction, seed).tolist()
    ids = [p.image_id for p in ordered]
    splits = {
        "train": [i for i, v in zip(ids, in_val) if not v],
        "val": [i for i, v in zip(ids, in_val) if v],
        "trainval": ids,
    }

    files = {out / "Annotations" / f"{p.image_id}.xml": p.xml for p in ordered}
    files |= {split_path(out, name): "".join(f"{i}\n" for i in ids).encode() for name, ids in splits.items()}
    _refuse_to_overwrite(out, ordered, files)
    for path, content in files.items():
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    (out / "JPEGImages").mkdir(parents=True, exist_ok=True)
    for p in ordered:
        target = image_path(out, p.image_id)
        if target.exists():
            continue
        if link and p.format == "JPEG":
            os.symlink(p.source.resolve(), target)
        else:
            target.write_bytes(p.jpeg())
    return splits


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Convert annotation exports (CSV, VIA, COCO, YOLO, LabelMe) to VOC layout",
        add_help=add_help,
        formatter_class=DefaultsFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", help="keras-retinanet CSV: path,x1,y1,x2,y2,class (0-based pixels)")
    source.add_argument("--via", help="VGG Image Annotator project or JSON export")
    source.add_argument("--coco", metavar="FILE", help="COCO detection JSON (bbox x, y, w, h)")
    source.add_argument("--yolo", metavar="LABELS_DIR", help="YOLO label folder (class cx cy w h, relative)")
    source.add_argument("--labelme", metavar="DIR", help="folder of LabelMe JSON files")
    parser.add_argument(
        "--yolo-classes", metavar="FILE", help="with --yolo: the class names, one a line, or a data.yaml's names"
    )
    parser.add_argument(
        "--images", default=None, help="folder the image paths are relative to (default: the export's folder)"
    )
    parser.add_argument("--out", required=True, help="output folder (VOC layout)")
    parser.add_argument("--classes", default="fod", help='"fod", "voc", "a,b,c" or a text file')
    parser.add_argument("--attribute", default="class", help="VIA region attribute holding the class")
    parser.add_argument(
        "--split-val",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="fraction of the pictures for val at most, by whole clusters of near-duplicates (and of --group-by)",
    )
    parser.add_argument(
        "--group-by",
        metavar="PATTERN",
        help="keep each group on one side: 'folder' (the picture's folder) or a regex on the file name "
        "(its first group, else the whole match)",
    )
    parser.add_argument(
        "--threshold", type=float, default=NEAR_DUPLICATE_THRESHOLD, help=f"near-duplicates: {MEASURE} below it"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val split")
    parser.add_argument("--link", action="store_true", help="symlink JPEG pictures instead of copying them")
    return parser


def read_export(args: argparse.Namespace) -> tuple[list[Record], Path]:
    """The records of the export the command line names, and the folder its image paths are relative to."""
    if args.yolo:
        if not args.yolo_classes:
            raise ValueError("--yolo needs --yolo-classes FILE (classes.txt, obj.names or data.yaml)")
        images = Path(args.images or args.yolo)
        return read_yolo(args.yolo, images, read_yolo_names(args.yolo_classes), args.yolo_classes), images
    if args.labelme:
        return read_labelme(args.labelme), Path(args.images or args.labelme)
    source = Path(args.csv or args.via or args.coco)
    images = Path(args.images) if args.images else source.parent
    if args.csv:
        return read_csv(source), images
    return (read_via(source, args.attribute) if args.via else read_coco(source)), images


def main(args: argparse.Namespace) -> None:
    if args.group_by and not args.split_val:
        raise ValueError("--group-by decides the train/val split: it needs --split-val FRACTION")
    records, images = read_export(args)
    splits = convert(
        records,
        images,
        args.out,
        resolve_classes(args.classes),
        val_fraction=args.split_val,
        seed=args.seed,
        link=args.link,
        group_by=args.group_by,
        threshold=args.threshold,
    )
    num_boxes = sum(len(r.boxes) for r in records)
    print(
        f"wrote {len(splits['trainval'])} images (train {len(splits['train'])}, val {len(splits['val'])}), "
        f"{num_boxes} boxes to {args.out}"
    )
    if splits["val"]:
        check, train_ids, val_ids = check_voc_split(args.out, "train", "val", args.threshold)
        print(split_report(check, train_ids, val_ids))
    elif args.split_val > 0:
        print("val is empty: every cluster of near-duplicates (or group) is larger than the val fraction")


if __name__ == "__main__":
    run(main, get_args_parser().parse_args(), "python -m dataset.convert")
