"""The files of a PASCAL VOC2007-layout data set: split lists, class lists, XML annotations, box frames.

Layout under ``root``: ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg``,
``ImageSets/Main/<split>.txt`` (one id a line).

Two box frames. The XML's: 1-based inclusive pixel indices, ``xmin=1, xmax=W`` covering the whole
width (what is written to and read from files, detections JSON included). The tensors': continuous
0-based pixel edges, ``[x1, x2)`` with ``x1 = xmin - 1`` and ``x2 = xmax``, where a flip, a rescale
or a crop maps a box exactly (:func:`xml_to_pixels`, :func:`pixels_to_xml`).
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from model.config import FOD_CLASSES

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

GroundTruth = dict[str, dict[str, np.ndarray]]
_XML_SHIFT = (1.0, 1.0, 0.0, 0.0)


def xml_to_pixels(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes [..., 4] in the XML's 1-based inclusive indices -> continuous 0-based pixel edges."""
    return boxes - boxes.new_tensor(_XML_SHIFT)


def pixels_to_xml(boxes: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`xml_to_pixels`."""
    return boxes + boxes.new_tensor(_XML_SHIFT)


def resolve_classes(spec: str | Sequence[str] | None = None) -> tuple[str, ...]:
    """Class names from a spec: None or "fod" -> FOD_CLASSES, "voc" -> VOC_CLASSES,
    a path to a UTF-8 text file (one name a line, a byte-order mark allowed) -> its names, "a,b,c" -> that list,
    a list/tuple -> a tuple of it. The order defines the label ids 1..C."""
    if spec is None:
        return FOD_CLASSES
    if isinstance(spec, (list, tuple)):
        names = tuple(str(s).strip() for s in spec)
    elif spec.lower() == "fod":
        return FOD_CLASSES
    elif spec.lower() == "voc":
        return VOC_CLASSES
    elif Path(spec).is_file():
        names = tuple(line.strip() for line in Path(spec).read_text(encoding="utf-8-sig").splitlines() if line.strip())
    else:
        names = tuple(s.strip() for s in spec.split(",") if s.strip())
    if not names or len(set(names)) != len(names):
        raise ValueError(f"class list {spec!r} is empty or has duplicates")
    return names


def split_path(root: str | Path, split: str) -> Path:
    return Path(root) / "ImageSets" / "Main" / f"{split}.txt"


def read_split(root: str | Path, split: str) -> list[str]:
    """Image ids listed in ``ImageSets/Main/<split>.txt``, UTF-8 (empty lines and a byte-order mark ignored).

    ``FileNotFoundError`` when the file or ``root`` is missing, ``ValueError`` when it lists nothing.
    """
    path = split_path(root, split)
    if not Path(root).is_dir():
        raise FileNotFoundError(f"{root}: data set folder not found")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file not found")
    try:
        ids = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file of image ids") from None
    if not ids:
        raise ValueError(f"{path}: split {split!r} lists no pictures")
    return ids


def image_path(root: str | Path, image_id: str) -> Path:
    return Path(root) / "JPEGImages" / f"{image_id}.jpg"


def annotation_path(root: str | Path, image_id: str) -> Path:
    return Path(root) / "Annotations" / f"{image_id}.xml"


def write_split(root: str | Path, split: str, ids: Sequence[str]) -> Path:
    """Write ``ImageSets/Main/<split>.txt`` with one id a line."""
    path = split_path(root, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))
    return path


def _number(node: ET.Element | None, tag: str, path: Path, what: str) -> float:
    text = node.findtext(tag) if node is not None else None
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = float("nan")
    if not np.isfinite(value):
        raise ValueError(f"{path}: {what}: <{tag}> is missing or not a number ({text!r})")
    return value


def fit_box_to_picture(box: Sequence[float], width: int, height: int, where: str) -> tuple[float, ...]:
    """A box in the XML frame (1-based inclusive) made to lie in a ``width`` x ``height`` picture.

    A box reaching past an edge is clipped with a warning naming ``where``; one with nothing inside the
    picture is a ``ValueError``. A size of 0 (unknown) checks nothing.
    """
    x1, y1, x2, y2 = box
    if not width or not height or (x1 >= 1 and y1 >= 1 and x2 <= width and y2 <= height):
        return tuple(box)
    clipped = (max(x1, 1.0), max(y1, 1.0), min(x2, float(width)), min(y2, float(height)))
    if clipped[2] < clipped[0] or clipped[3] < clipped[1]:
        raise ValueError(f"{where}: box {list(box)} lies outside the {width}x{height} picture")
    warnings.warn(
        f"{where}: box {list(box)} reaches outside the {width}x{height} picture; clipped to {list(clipped)}",
        stacklevel=2,
    )
    return clipped


def parse_annotation(xml_path: str | Path, classes: Sequence[str], picture_size: tuple[int, int] | None = None) -> dict:
    """Read one VOC XML file.

    Returns numpy arrays ``boxes`` float32 [M, 4] (x1, y1, x2, y2 in the XML's 1-based frame),
    ``labels`` int64 [M] in 1..C (position in ``classes`` + 1), ``difficult`` bool [M], and ints
    ``width``, ``height`` (from <size>, else ``picture_size`` (W, H), else 0). Boxes reaching past the
    picture are clipped to it with a warning (:func:`fit_box_to_picture`).
    Raises FileNotFoundError for a missing file and ValueError naming the file for malformed
    XML, a class not in ``classes``, a box with xmax <= xmin or ymax <= ymin, or one outside the picture.
    """
    path = Path(xml_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ValueError(f"{path}: malformed XML ({e})") from None
    class_ids = {name: i + 1 for i, name in enumerate(classes)}
    size = root.find("size")
    width = int(_number(size, "width", path, "<size>")) if size is not None else 0
    height = int(_number(size, "height", path, "<size>")) if size is not None else 0
    if not (width and height) and picture_size is not None:
        width, height = picture_size
    boxes, labels, difficult = [], [], []
    for k, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        if name not in class_ids:
            raise ValueError(f"{path}: object {k}: class {name!r} is not in the class list {tuple(classes)}")
        what = f"object {k} ({name})"
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise ValueError(f"{path}: {what}: no <bndbox>")
        box = tuple(_number(bndbox, t, path, what) for t in ("xmin", "ymin", "xmax", "ymax"))
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"{path}: {what}: empty box, need xmax > xmin and ymax > ymin, got {list(box)}")
        boxes.append(fit_box_to_picture(box, width, height, f"{path}: {what}"))
        labels.append(class_ids[name])
        difficult.append(
            int(_number(obj, "difficult", path, what)) != 0 if obj.find("difficult") is not None else False
        )
    return {
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        "labels": np.asarray(labels, dtype=np.int64),
        "difficult": np.asarray(difficult, dtype=bool),
        "width": width,
        "height": height,
    }


def ground_truth_of(ids: Sequence[str], annotations: Sequence[dict]) -> GroundTruth:
    """``image_id -> {"boxes" float32 [M,4] XML frame, "labels" int64 [M], "difficult" bool [M], "size" int64 [2]}``;
    ``size``, the XML's (W, H) (0, 0 when unknown), tells the frame of the picture the boxes were drawn on."""
    return {
        i: {
            "boxes": a["boxes"],
            "labels": a["labels"],
            "difficult": a["difficult"],
            "size": np.array([a["width"], a["height"]]),
        }
        for i, a in zip(ids, annotations)
    }


def read_annotations(
    root: str | Path,
    ids: Sequence[str],
    classes: Sequence[str],
    picture_sizes: Sequence[tuple[int, int]] | None = None,
) -> list[dict]:
    """:func:`parse_annotation` of each id's ``Annotations/<id>.xml``, in order; ``picture_sizes`` (W, H) a
    picture, when given, stand in for a missing <size>."""
    sizes = [None] * len(ids) if picture_sizes is None else picture_sizes
    return [parse_annotation(annotation_path(root, i), classes, size) for i, size in zip(ids, sizes, strict=True)]


def load_ground_truth(root: str | Path, split: str, classes: Sequence[str] | str | None) -> GroundTruth:
    """The ground truth of a split from its XML files alone (never the pictures): see :func:`ground_truth_of`."""
    ids = read_split(root, split)
    return ground_truth_of(ids, read_annotations(root, ids, resolve_classes(classes)))


def _coordinate(v: float) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() else repr(v)


def annotation_xml(
    filename: str,
    width: int,
    height: int,
    boxes: np.ndarray | Sequence[Sequence[float]],
    names: Sequence[str],
    *,
    difficult: Sequence[bool] | None = None,
    depth: int = 3,
    folder: str = "JPEGImages",
) -> bytes:
    """A VOC XML file's content (UTF-8). ``boxes`` [M, 4] are already in the 1-based VOC frame."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", depth)):
        ET.SubElement(size, tag).text = str(int(value))
    ET.SubElement(root, "segmented").text = "0"
    difficult = [False] * len(names) if difficult is None else difficult
    for box, name, diff in zip(boxes, names, difficult, strict=True):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = str(int(bool(diff)))
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bndbox, tag).text = _coordinate(value)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8")


def write_annotation(
    xml_path: str | Path,
    filename: str,
    width: int,
    height: int,
    boxes: np.ndarray | Sequence[Sequence[float]],
    names: Sequence[str],
    *,
    difficult: Sequence[bool] | None = None,
) -> None:
    """Write ``xml_path``, the VOC XML file of :func:`annotation_xml` for these fields, making its folder."""
    Path(xml_path).parent.mkdir(parents=True, exist_ok=True)
    Path(xml_path).write_bytes(annotation_xml(filename, width, height, boxes, names, difficult=difficult))
