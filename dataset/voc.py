"""Inspect a VOC-layout data set: count its boxes, draw training samples, time its loader, check its split.

python -m dataset.voc --data-root ../shared/foreign_object_dataset --split train
python -m dataset.voc --data-root DIR --split train --show 4 --out outputs/samples
python -m dataset.voc --data-root DIR --show 8 --resize 720x1280 --crop 320x320 --augment flip,paste
python -m dataset.voc --data-root DIR --split train --benchmark
python -m dataset.voc --data-root DIR --check-split --train-split train --val-split val
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from cli import DefaultsFormatter, parse_size, run
from dataset.annotations import pixels_to_xml, read_annotations, read_split, resolve_classes
from dataset.drawing import draw_detections
from dataset.loader_benchmark import benchmark_loader
from dataset.near_duplicates import MEASURE, NEAR_DUPLICATE_THRESHOLD, check_voc_split, split_report
from dataset.sizes import format_size
from dataset.transforms import DEFAULT_AUGMENT
from dataset.voc_dataset import VOCDataset
from model.config import NORMALIZATIONS


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


def main(args: argparse.Namespace) -> None:
    if args.check_split:
        check, train_ids, val_ids = check_voc_split(args.data_root, args.train_split, args.val_split, args.threshold)
        print(split_report(check, train_ids, val_ids, args.worst))
        return
    classes = resolve_classes(args.classes)
    ids = read_split(args.data_root, args.split)
    anns = read_annotations(args.data_root, ids, classes)
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
            args.data_root,
            args.split,
            classes,
            train=True,
            resize_size=args.resize,
            crop_size=args.crop,
            cache=True,
            augment=augment,
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
