"""PASCAL VOC2007-layout data: annotations, pictures, the training/evaluation Dataset, collation.

Layout under ``root``: ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg``,
``ImageSets/Main/<split>.txt`` (one id a line).

Two box frames. The XML's: 1-based inclusive pixel indices, ``xmin=1, xmax=W`` covering the whole
width (what is written to and read from files, detections JSON included). The tensors': continuous
0-based pixel edges, ``[x1, x2)`` with ``x1 = xmin - 1`` and ``x2 = xmax``, where a flip, a rescale
or a crop maps a box exactly (:func:`xml_to_pixels`, :func:`pixels_to_xml`).

    python -m dataset.voc --data-root ../shared/foreign_object_dataset --split train
    python -m dataset.voc --data-root DIR --split train --show 4 --out outputs/samples
    python -m dataset.voc --data-root DIR --show 8 --resize 720x1280 --crop 320x320 --augment flip,paste
    python -m dataset.voc --data-root DIR --split train --benchmark
    python -m dataset.voc --data-root DIR --check-split --train-split train --val-split val
"""

from __future__ import annotations

import argparse
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision import tv_tensors

from cli import DefaultsFormatter, parse_size, run
from dataset.drawing import draw_detections
from dataset.near_duplicates import MEASURE, NEAR_DUPLICATE_THRESHOLD, SplitCheck, check_split, split_report
from dataset.paste import ObjectBank, cut_out
from dataset.sizes import format_size, resize_scale, resized_shape
from dataset.transforms import (
    DEFAULT_AUGMENT,
    build_augmentation,
    build_noise,
    normalize_pad,
    random_crop,
)
from model.config import FOD_CLASSES, NORMALIZATIONS

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
    a path to a text file (one name a line) -> its names, "a,b,c" -> that list,
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
        names = tuple(line.strip() for line in Path(spec).read_text().splitlines() if line.strip())
    else:
        names = tuple(s.strip() for s in spec.split(",") if s.strip())
    if not names or len(set(names)) != len(names):
        raise ValueError(f"class list {spec!r} is empty or has duplicates")
    return names


def split_path(root: str | Path, split: str) -> Path:
    return Path(root) / "ImageSets" / "Main" / f"{split}.txt"


def read_split(root: str | Path, split: str) -> list[str]:
    """Image ids listed in ``ImageSets/Main/<split>.txt`` (empty lines ignored).

    ``FileNotFoundError`` when the file or ``root`` is missing, ``ValueError`` when it lists nothing.
    """
    path = split_path(root, split)
    if not Path(root).is_dir():
        raise FileNotFoundError(f"{root}: data set folder not found")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file not found")
    try:
        ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file of image ids") from None
    if not ids:
        raise ValueError(f"{path}: split {split!r} lists no pictures")
    return ids


def image_path(root: str | Path, image_id: str) -> Path:
    return Path(root) / "JPEGImages" / f"{image_id}.jpg"


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
    """``image_id -> {"boxes" float32 [M,4] XML frame, "labels" int64 [M], "difficult" bool [M]}``."""
    return {i: {k: a[k] for k in ("boxes", "labels", "difficult")} for i, a in zip(ids, annotations)}


def load_ground_truth(root: str | Path, split: str, classes: Sequence[str] | str | None) -> GroundTruth:
    """The ground truth of a split from its XML files alone (never the pictures): see :func:`ground_truth_of`."""
    classes = resolve_classes(classes)
    ids = read_split(root, split)
    return ground_truth_of(ids, [parse_annotation(Path(root) / "Annotations" / f"{i}.xml", classes) for i in ids])


def _coordinate(v: float) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() else repr(v)


def annotation_xml(
    filename: str,
    width: int,
    height: int,
    boxes: np.ndarray | Sequence[Sequence[float]],
    names: Sequence[str],
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
    difficult: Sequence[bool] | None = None,
) -> None:
    """Write ``xml_path``, the VOC XML file of :func:`annotation_xml` for these fields, making its folder."""
    Path(xml_path).parent.mkdir(parents=True, exist_ok=True)
    Path(xml_path).write_bytes(annotation_xml(filename, width, height, boxes, names, difficult))


def picture_size(path: str | Path) -> tuple[int, int]:
    """(W, H) from a picture file's header; ``FileNotFoundError`` or ``ValueError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"{path}: cannot read image ({e})") from None


def load_resized(
    path: str | Path, resize_size: tuple[int, int], decoded: np.ndarray | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode a picture as RGB uint8 [h, w, 3] resized by :func:`dataset.sizes.resize_scale` (at least
    1 x 1 pixel). Returns (picture, (H0, W0)).

    The original size comes from the file header. For s <= 0.5 (<= 0.25) a picture is decoded at
    1/2 (1/4) size, which is several times faster than a full decode, then resized the rest of
    the way (INTER_LINEAR, or INTER_AREA when still shrinking by more than 2). ``decoded``, the
    picture already decoded at full size (BGR), is used instead of decoding it again when no
    reduced decode applies; the result is the same either way.
    """
    path = Path(path)
    w0, h0 = picture_size(path)
    s = resize_scale(h0, w0, *resize_size)
    new_h, new_w = resized_shape(h0, w0, resize_size)
    flag = cv2.IMREAD_REDUCED_COLOR_4 if s <= 0.25 else cv2.IMREAD_REDUCED_COLOR_2 if s <= 0.5 else cv2.IMREAD_COLOR
    if min(h0, w0) < 64:  # a reduced decode of a sliver can come back empty
        flag = cv2.IMREAD_COLOR
    if flag == cv2.IMREAD_COLOR and decoded is not None:
        bgr = decoded
    else:
        bgr = cv2.imread(str(path), flag | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise ValueError(f"{path}: cannot decode image")
    if bgr.shape[:2] != (new_h, new_w):
        shrink = new_w / bgr.shape[1]
        interp = cv2.INTER_AREA if shrink < 0.5 else cv2.INTER_LINEAR
        bgr = cv2.resize(bgr, (new_w, new_h), interpolation=interp)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (h0, w0)


class VOCDataset(Dataset):
    """VOC-layout detection data set.

    ``ds[i]`` -> (image float32 [3, H, W], target):
        image: RGB, normalised (``normalization``), resized keeping the aspect ratio
            (scale = min(min_side / short, max_side / long)), zero-padded right/bottom to a
            multiple of 32 (and at least to crop_size when cropping);
        target: "boxes" float32 [M, 4] x1, y1, x2, y2 continuous pixel edges of the returned image;
            "labels" int64 [M] in 1..C; "difficult" bool [M]; "image_id" str; "orig_size" (H0, W0);
            "scale" float32 [2] (x, y: returned image pixels per original pixel) and "offset" float32 [2]
            (x0, y0 of the returned image's origin in original pixels), so that
            original = boxes / scale + offset (:func:`boxes_to_original`).

    Args:
        root: data set folder. split: name of ``ImageSets/Main/<split>.txt``.
        classes: anything ``resolve_classes`` takes (default: the foreign-object classes).
        train: apply ``augment`` (random, for training). resize_size: (min_side, max_side).
        keep_difficult: keep difficult objects in targets; default False when train else True.
        crop_size: (h, w) object-centred random crops taken from the resized picture before
            augmentation (objects at least half inside are kept, clipped).
        scale_jitter, background_crops: see :func:`dataset.transforms.random_crop` (with crop_size).
        cache: keep decoded, resized pictures (uint8) in memory. Each DataLoader worker has its own
            copy unless every picture is loaded (``load_picture``) before the workers start, as
            ``train_voc.py --cache`` does: forked workers then share the parent's.
        augment: names from ``dataset.transforms.AUGMENTATIONS`` used when train ("paste": objects of the
            split pasted into the crop, :meth:`object_bank`).
        normalization: the pixel statistics (a name of :data:`model.config.NORMALIZATIONS`) the model expects.

    Annotations are parsed and picture headers read when the data set is built, so missing or
    unreadable files and bad annotations are reported before training starts; :meth:`ground_truth`
    gives the parsed annotations to the metric, so they are read once.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        classes: str | Sequence[str] | None = None,
        train: bool = False,
        resize_size: tuple[int, int] = (922, 1640),
        keep_difficult: bool | None = None,
        crop_size: tuple[int, int] | None = None,
        cache: bool = False,
        augment: Sequence[str] = DEFAULT_AUGMENT,
        scale_jitter: float = 1.0,
        background_crops: float = 0.0,
        normalization: str = "imagenet",
    ) -> None:
        self.root = Path(root)
        self.split = split
        self._classes = resolve_classes(classes)
        self.train = train
        self.resize_size = (int(resize_size[0]), int(resize_size[1]))
        self.keep_difficult = (not train) if keep_difficult is None else keep_difficult
        self.crop_size = None if crop_size is None else (int(crop_size[0]), int(crop_size[1]))
        self.scale_jitter, self.background_crops = float(scale_jitter), float(background_crops)
        self.cache = cache
        self.normalization = normalization
        self.augmentation = build_augmentation(augment, normalization) if train else None
        self.noise = build_noise(augment, normalization) if train else None
        self.paste = train and "paste" in augment
        self._bank: ObjectBank | None = None
        self.ids = read_split(self.root, split)
        sizes = [picture_size(self.image_path(i)) for i in self.ids]
        self.annotations = [
            parse_annotation(self.root / "Annotations" / f"{i}.xml", self._classes, size)
            for i, size in zip(self.ids, sizes)
        ]
        for image_id, size, ann in zip(self.ids, sizes, self.annotations):
            if (ann["width"], ann["height"]) != size:
                raise ValueError(
                    f"{self.root / 'Annotations' / image_id}.xml: <size> says {ann['width']}x"
                    f"{ann['height']} but {self.image_path(image_id)} is {size[0]}x{size[1]}"
                )
        self._pictures: dict[int, tuple[np.ndarray, tuple[int, int]]] = {}

    @property
    def classes(self) -> tuple[str, ...]:
        return self._classes

    def image_path(self, image_id: str) -> Path:
        return image_path(self.root, image_id)

    def ground_truth(self) -> GroundTruth:
        """The split's annotations for :func:`engine.metrics.evaluate_detections` (XML frame)."""
        return ground_truth_of(self.ids, self.annotations)

    def __len__(self) -> int:
        return len(self.ids)

    def load_picture(self, index: int) -> tuple[np.ndarray, tuple[int, int]]:
        """Resized uint8 RGB picture [h, w, 3] and the original (H0, W0), from the cache if kept."""
        if index in self._pictures:
            return self._pictures[index]
        item = load_resized(self.image_path(self.ids[index]), self.resize_size)
        if self.cache:
            self._pictures[index] = item
        return item

    def object_bank(self) -> ObjectBank:
        """Cut-outs of the split's objects (difficult ones left out) in the resized pictures, for the
        ``"paste"`` augmentation; cut once, on first use (before workers fork when the pictures are cached)."""
        if self._bank is None:
            cutouts = []
            for index, ann in enumerate(self.annotations):
                picture, (h0, w0) = self.load_picture(index)
                scale = torch.tensor([picture.shape[1] / w0, picture.shape[0] / h0]).repeat(2)
                boxes = xml_to_pixels(torch.from_numpy(ann["boxes"][~ann["difficult"]])) * scale
                labels = ann["labels"][~ann["difficult"]]
                cutouts += [cut_out(picture, box.tolist(), label) for box, label in zip(boxes, labels)]
            self._bank = ObjectBank([c for c in cutouts if c is not None])
        return self._bank

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        picture, (h0, w0) = self.load_picture(index)
        ann = self.annotations[index]
        keep = np.ones(len(ann["labels"]), dtype=bool) if self.keep_difficult else ~ann["difficult"]
        height, width = picture.shape[:2]
        scale = torch.tensor([width / w0, height / h0], dtype=torch.float32)
        boxes = xml_to_pixels(torch.from_numpy(ann["boxes"][keep])) * scale.repeat(2)
        labels = torch.from_numpy(ann["labels"][keep])
        difficult = torch.from_numpy(ann["difficult"][keep])
        offset = torch.zeros(2, dtype=torch.float32)
        jitter = 1.0

        if self.crop_size is not None:
            picture, boxes, inside, (x0, y0, jitter) = random_crop(
                picture, boxes, self.crop_size, self.scale_jitter, self.background_crops
            )
            labels, difficult = labels[inside], difficult[inside]
            offset = torch.tensor([x0, y0]) / scale
            scale = scale * jitter

        if self.paste:
            picture, boxes, labels, kept = self.object_bank().paste(picture, boxes, labels, jitter)
            difficult = torch.cat([difficult[kept], difficult.new_zeros(len(labels) - int(kept.sum()))])

        if self.augmentation is not None:
            h, w = picture.shape[:2]
            target = {
                "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
                "labels": labels,
                "difficult": difficult,
            }
            augmented, target = self.augmentation(Image.fromarray(picture), target)
            picture = np.array(augmented)
            boxes, labels, difficult = target["boxes"].as_subclass(torch.Tensor), target["labels"], target["difficult"]

        image = normalize_pad(picture, min_size=self.crop_size, normalization=self.normalization)
        if self.noise is not None:
            image = self.noise(image)
        return image, {
            "boxes": boxes.float().reshape(-1, 4),
            "labels": labels,
            "difficult": difficult,
            "image_id": self.ids[index],
            "orig_size": (h0, w0),
            "scale": scale,
            "offset": offset,
        }


def boxes_to_original(boxes: torch.Tensor, target: dict) -> torch.Tensor:
    """Boxes [K, 4] in a returned image's pixels -> the original picture's (continuous, 0-based):
    ``boxes / scale + offset``. :func:`pixels_to_xml` then gives the XML frame."""
    offset = target["offset"].to(boxes.device, boxes.dtype).repeat(2)
    scale = target["scale"].to(boxes.device, boxes.dtype).repeat(2)
    return boxes / scale + offset


def collate_fn(batch: Sequence[tuple[torch.Tensor, dict]]) -> tuple[torch.Tensor, list[dict]]:
    """Stack images [3, H_i, W_i] into [B, 3, H_max, W_max], zero-padded right/bottom;
    targets stay a list of dicts. (Stacking goes through default_collate, which writes straight
    into shared memory inside a DataLoader worker.)"""
    h = max(image.shape[1] for image, _ in batch)
    w = max(image.shape[2] for image, _ in batch)
    images = [F.pad(image, (0, w - image.shape[2], 0, h - image.shape[1])) for image, _ in batch]
    return default_collate(images), [target for _, target in batch]


def benchmark_loader(dataset: Dataset, batch_size: int = 2, num_workers: int = 2, num_batches: int = 40) -> float:
    """Images per second delivered as collated batches by a DataLoader (after one warm-up batch)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers, collate_fn=collate_fn)
    it = iter(loader)
    next(it)
    count, start = 0, time.perf_counter()
    for _, (images, _) in zip(range(num_batches), it):
        count += images.shape[0]
    return count / (time.perf_counter() - start)


def _denormalize(image: torch.Tensor, normalization: str) -> np.ndarray:
    """[3, H, W] normalised with ``normalization`` -> uint8 BGR [H, W, 3] for cv2."""
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in NORMALIZATIONS[normalization])
    rgb = ((image * std + mean) * 255).clamp(0, 255).byte().permute(1, 2, 0).numpy()
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Inspect a VOC-layout data set", add_help=add_help, formatter_class=DefaultsFormatter
    )
    parser.add_argument("--data-root", required=True, help="folder with Annotations/, JPEGImages/, ImageSets/Main/")
    parser.add_argument("--split", default="train", help="ImageSets/Main/<split>.txt")
    parser.add_argument("--classes", default="fod", help='"fod", "voc", "a,b,c" or a text file')
    parser.add_argument("--show", type=int, default=0, metavar="K", help="write K augmented samples with boxes")
    parser.add_argument("--out", default="outputs/samples", help="folder for --show")
    parser.add_argument(
        "--augment", default=",".join(DEFAULT_AUGMENT), help="comma list of the augmentations --show applies"
    )
    parser.add_argument("--crop", type=parse_size, metavar="HxW", help="--show crops of this size around an object")
    parser.add_argument("--benchmark", action="store_true", help="measure DataLoader throughput")
    parser.add_argument("--resize", type=parse_size, default="922x1640", metavar="SHORTxLONG", help="picture size")
    parser.add_argument("--batch-size", type=int, default=2, help="pictures a batch, with --benchmark")
    parser.add_argument("--workers", type=int, default=2, help="loading processes, with --benchmark")
    parser.add_argument("--num-batches", type=int, default=40, help="batches timed, with --benchmark")
    parser.add_argument("--train", action="store_true", help="benchmark with training augmentation")
    parser.add_argument(
        "--check-split", action="store_true", help="count the val pictures that have a near-duplicate in train"
    )
    parser.add_argument("--train-split", default="train", help="train split, with --check-split")
    parser.add_argument("--val-split", default="val", help="val split, with --check-split")
    parser.add_argument(
        "--threshold", type=float, default=NEAR_DUPLICATE_THRESHOLD, help=f"near-duplicates: {MEASURE} below it"
    )
    parser.add_argument("--worst", type=int, default=5, metavar="K", help="closest val-train pairs listed")
    return parser


def check_voc_split(
    root: str | Path, train_split: str = "train", val_split: str = "val", threshold: float = NEAR_DUPLICATE_THRESHOLD
) -> tuple[SplitCheck, list[str], list[str]]:
    """:func:`dataset.near_duplicates.check_split` of a VOC set's splits; returns it with the train and val ids."""
    train_ids, val_ids = read_split(root, train_split), read_split(root, val_split)
    check = check_split([image_path(root, i) for i in train_ids], [image_path(root, i) for i in val_ids], threshold)
    return check, train_ids, val_ids


def main(args: argparse.Namespace) -> None:
    if args.check_split:
        check, train_ids, val_ids = check_voc_split(args.data_root, args.train_split, args.val_split, args.threshold)
        print(split_report(check, train_ids, val_ids, args.worst))
        return
    classes = resolve_classes(args.classes)
    ids = read_split(args.data_root, args.split)
    anns = [parse_annotation(Path(args.data_root) / "Annotations" / f"{i}.xml", classes) for i in ids]
    labels = np.concatenate([a["labels"] for a in anns])
    num_difficult = int(sum(a["difficult"].sum() for a in anns))
    print(f"images: {len(ids)}")
    print(f"boxes: {len(labels)}")
    for k, name in enumerate(classes, start=1):
        print(f"{name}: {int((labels == k).sum())}")
    if num_difficult:
        print(f"difficult: {num_difficult}")

    if args.show:
        augment = tuple(a for a in args.augment.split(",") if a)
        ds = VOCDataset(
            args.data_root, args.split, classes, True, args.resize, crop_size=args.crop, cache=True, augment=augment
        )
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for k in range(args.show):
            image, target = ds[k % len(ds)]
            boxes = pixels_to_xml(target["boxes"]).tolist()
            objects = [
                {"category": classes[label - 1], "bbox": box} for box, label in zip(boxes, target["labels"].tolist())
            ]
            picture = draw_detections(_denormalize(image, ds.normalization), objects, classes)
            path = out / f"{target['image_id']}_{k}.jpg"
            cv2.imwrite(str(path), picture)
            print(f"wrote {path}")

    if args.benchmark:
        ds = VOCDataset(args.data_root, args.split, classes, train=args.train, resize_size=args.resize)
        rate = benchmark_loader(ds, args.batch_size, args.workers, args.num_batches)
        print(
            f"loader: {rate:.1f} images/s (resize {format_size(args.resize)}, batch {args.batch_size}, "
            f"{args.workers} workers, train={args.train})"
        )


if __name__ == "__main__":
    run(main, get_args_parser().parse_args(), "python -m dataset.voc")
