"""The detection Dataset of a VOC-layout data set (crops, copy-paste, augmentation) and its collation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, default_collate
from torchvision import tv_tensors

from dataset.annotations import (
    GroundTruth,
    annotation_path,
    ground_truth_of,
    image_path,
    read_annotations,
    read_split,
    resolve_classes,
    xml_to_pixels,
)
from dataset.decoding import PictureHeader, load_resized, read_header
from dataset.paste import ObjectBank, cut_out
from dataset.transforms import DEFAULT_AUGMENT, build_augmentation, build_noise, normalize_pad, random_crop


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

    Each picture is read in the frame its XML's <size> names (``upright``, a bool a picture): upright, as
    viewers show it (:mod:`dataset.decoding`), when the size is the upright one or the XML gives none; as
    its pixels are stored when the size is the stored one and the picture is stored on its side. The
    boxes, the ground truth and the detections all stay in that frame.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        classes: str | Sequence[str] | None = None,
        *,
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
        headers = [read_header(self.image_path(i)) for i in self.ids]
        self.annotations = read_annotations(self.root, self.ids, self._classes, [h.upright for h in headers])
        self.upright = [
            self._drawn_upright(image_id, header, (ann["width"], ann["height"]))
            for image_id, header, ann in zip(self.ids, headers, self.annotations)
        ]
        self._pictures: dict[int, tuple[np.ndarray, tuple[int, int]]] = {}

    def _drawn_upright(self, image_id: str, header: PictureHeader, size: tuple[int, int]) -> bool:
        """Whether the boxes of ``image_id``, whose XML says its picture is ``size`` (W, H), were drawn on the
        upright view of the picture (else on its pixels as stored); upright when both frames fit."""
        if size in (header.upright, header.stored):
            return header.drawn_upright(size)
        (w, h), (uw, uh) = header.stored, header.upright
        upright = f" ({uw}x{uh} upright)" if header.upright != header.stored else ""
        raise ValueError(
            f"{annotation_path(self.root, image_id)}: <size> says {size[0]}x{size[1]} but "
            f"{self.image_path(image_id)} is {w}x{h}{upright}"
        )

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
        item = load_resized(self.image_path(self.ids[index]), self.resize_size, upright=self.upright[index])
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
