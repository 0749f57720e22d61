"""Evaluate an FCOS checkpoint, or a detections file, on a VOC-layout split with the VOC AP metric.

    python eval_voc.py --checkpoint checkpoint/last.pth --data-root DIR --split val
    python eval_voc.py --detections dets.json --data-root DIR --split val [--classes a,b,c]

Prints ``ap for CLASS is X`` per class and ``mAP=====>X`` like the original, then a table.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from dataset.voc import VOCDataset, boxes_to_original, collate_fn, resolve_classes
from dataset.voc_eval import (METRICS, coco_metrics, evaluate_detections, format_results, load_ground_truth,
                              plot_pr_curves, validate_detections)


def predict(model: torch.nn.Module, loader: DataLoader, device: torch.device | str, classes: Sequence[str],
            amp: bool = False, progress: bool = True) -> list[dict[str, Any]]:
    """Run ``model`` over ``loader`` (batches of ``VOCDataset`` + ``collate_fn``) and return detections.

    Boxes go back to the original picture (``boxes_to_original``), are clipped to it and shifted by +1
    into the XML's 1-based frame: a list of ``{"image_id", "category", "score", "bbox": [x1,y1,x2,y2]}``.
    ``amp`` runs the model under autocast (bfloat16 on CPU, float16 on CUDA).
    """
    device = torch.device(device)
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    model.eval()
    detections = []
    with torch.inference_mode():
        for images, targets in tqdm(loader, desc="detect", unit="batch", disable=not progress):
            images = images.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                outputs = model(images)
            for output, target in zip(outputs, targets):
                detections += to_detections(output, target, classes)
    return detections


def to_detections(output: dict[str, torch.Tensor], target: dict[str, Any],
                  classes: Sequence[str]) -> list[dict[str, Any]]:
    """One picture's model output (``boxes [K,4]`` in the input tensor's pixels, ``scores [K]``, ``labels [K]``)
    -> ``{"image_id", "category", "score", "bbox"}`` dicts with boxes mapped back to the original picture
    (``boxes_to_original`` with the target's ``scale``/``offset``), clipped to it (``orig_size``) and shifted by +1
    into the XML's 1-based frame."""
    boxes = boxes_to_original(output["boxes"].float().cpu(), target)
    height, width = target["orig_size"]
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, int(width) - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, int(height) - 1)
    boxes += 1
    return [{"image_id": target["image_id"], "category": classes[label - 1], "score": score, "bbox": box}
            for box, score, label in zip(boxes.tolist(), output["scores"].float().tolist(), output["labels"].tolist())]


def make_loader(data_root: str | Path, split: str, classes: Sequence[str], resize_size: Sequence[int],
                batch_size: int, workers: int, device: torch.device | str) -> DataLoader:
    """The evaluation loader: ``VOCDataset(train=False)`` in order, collated with ``collate_fn``."""
    dataset = VOCDataset(data_root, split, classes=classes, train=False, resize_size=tuple(resize_size))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_fn,
                      pin_memory=torch.device(device).type == "cuda")


def evaluate_model(model: torch.nn.Module, data_root: str | Path, split: str, classes: Sequence[str],
                   resize_size: Sequence[int], device: torch.device | str, batch_size: int = 2, workers: int = 2,
                   iou_threshold: float = 0.5, metric: str = "voc12", amp: bool = False,
                   progress: bool = True) -> dict[str, Any]:
    """Detect on ``split`` and score it: the result dict of :func:`dataset.voc_eval.evaluate_detections`."""
    loader = make_loader(data_root, split, classes, resize_size, batch_size, workers, device)
    detections = predict(model, loader, device, classes, amp=amp, progress=progress)
    ground_truth = load_ground_truth(data_root, split, classes)
    return evaluate_detections(detections, ground_truth, classes, iou_threshold=iou_threshold, metric=metric)


def load_detections(path: str | Path, ground_truth_ids: Sequence[str], classes: Sequence[str]) -> list[dict[str, Any]]:
    """Read and check a detections JSON file; ``ValueError`` naming the file when it breaks the contract."""
    try:
        with open(path) as f:
            detections = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    validate_detections(detections, ground_truth_ids, classes, source=str(path))
    return detections


def parse_resize(text: str) -> tuple[int, int]:
    """``"MIN,MAX"`` -> ``(min_side, max_side)``."""
    try:
        min_side, max_side = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX (two integers), got {text!r}") from None
    return min_side, max_side


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="VOC AP of an FCOS checkpoint or of a detections file",
                                     add_help=add_help)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint written by train_voc.py (config and classes come from it)")
    source.add_argument("--detections", help="detections JSON to score: [{image_id, category, score, bbox}]")
    parser.add_argument("--data-root", required=True,
                        help="VOC-layout root (Annotations/, ImageSets/Main/, JPEGImages/)")
    parser.add_argument("--split", default="val", help="ImageSets/Main/<split>.txt (default: val)")
    parser.add_argument("--classes", default=None,
                        help="with --detections: 'a,b,c', 'fod', 'voc' or a file with one name a line (default: fod)")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU a match must exceed (default: 0.5)")
    parser.add_argument("--metric", choices=METRICS, default="voc12",
                        help="voc12: all-point interpolation (default); voc07: 11-point")
    parser.add_argument("--coco", action="store_true", help="also report COCO AP@[.5:.95] and AP@.5")
    parser.add_argument("--plot", metavar="DIR", help="write a precision-recall curve per class into DIR")
    parser.add_argument("--resize", type=parse_resize, metavar="MIN,MAX",
                        help="picture size to evaluate at (default: the checkpoint's resize_size)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="data loading processes")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action="store_true", help="autocast: float16 on CUDA, bfloat16 on CPU")
    parser.add_argument("--save-detections", metavar="FILE", help="with --checkpoint: write the detections JSON")
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    try:
        if args.checkpoint:
            if args.classes is not None:
                raise ValueError("--classes is only for --detections; a checkpoint carries its classes")
            from model import FCOSDetector

            model = FCOSDetector.from_checkpoint(args.checkpoint, map_location="cpu")
            classes = tuple(model.config.classes)
            resize_size = args.resize or model.config.resize_size
            ground_truth = load_ground_truth(args.data_root, args.split, classes)
            loader = make_loader(args.data_root, args.split, classes, resize_size, args.batch_size, args.workers,
                                 args.device)
        else:
            if args.save_detections:
                raise ValueError("--save-detections is only for --checkpoint")
            classes = resolve_classes(args.classes)
            ground_truth = load_ground_truth(args.data_root, args.split, classes)
            detections = load_detections(args.detections, list(ground_truth), classes)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"eval_voc.py: error: {err}")

    if args.checkpoint:
        detections = predict(model.to(args.device), loader, args.device, classes, amp=args.amp)
        if args.save_detections:
            Path(args.save_detections).parent.mkdir(parents=True, exist_ok=True)
            with open(args.save_detections, "w") as f:
                json.dump(detections, f)
            print(f"detections written to {args.save_detections}")

    result = evaluate_detections(detections, ground_truth, classes, iou_threshold=args.iou, metric=args.metric)
    print(format_results(result))
    if args.coco:
        coco = coco_metrics(detections, ground_truth, classes)
        print(f"COCO AP@[.5:.95]=====>{coco['AP@[.5:.95]']:.3f}")
        print(f"COCO AP@.5=====>{coco['AP@.5']:.3f}")
        result["coco"] = coco
    if args.plot:
        paths = plot_pr_curves(result, args.plot)
        print(f"{len(paths)} precision-recall curves written to {args.plot}")
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
