"""Detect foreign objects in pictures with an FCOS checkpoint (or its ONNX export): annotated pictures and a JSON.

    python detect.py --checkpoint checkpoint/fod-cpu/last.pth --input test_images --output-dir outputs/detect
    python detect.py --input "photos/*.png" --score-threshold auto         # newest *.pth under checkpoint/
    python detect.py --onnx fcos.onnx --input test_images --output-dir outputs/detect_onnx

Each input picture (jpg, jpeg, png, bmp; a file, a folder or a glob pattern) gives a picture of its original size
in ``--output-dir`` (same stem; .png stays .png, anything else becomes .jpg) with every box drawn in its class's
colour, labelled ``class score``, and a legend of the class colours. ``detections.json`` there lists
``{"image_id": stem, "category", "score", "bbox": [x1, y1, x2, y2]}`` in original pixels in the VOC XML's
1-based frame, so ``eval_voc.py --detections detections.json`` scores it directly. A file that cannot be read
is reported and skipped; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from cli import DefaultsFormatter, run
from dataset.pictures import find_pictures
from engine.amp import resolve_amp
from engine.annotate import detect_files
from engine.checkpoint import load_detector, newest_checkpoint
from engine.export import load_onnx_detector
from engine.flags import (
    add_amp_argument,
    add_channels_last_argument,
    add_compile_argument,
    add_device_argument,
    threshold_spec,
)
from engine.inference import compile_network, place
from engine.thresholds import FALLBACK_THRESHOLD, deploy_thresholds, read_thresholds


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Detect foreign objects: annotated pictures and detections.json",
        add_help=add_help,
        formatter_class=DefaultsFormatter,
    )
    model = parser.add_mutually_exclusive_group()
    model.add_argument(
        "--checkpoint", help="checkpoint written by train_voc.py (default: the newest *.pth under checkpoint/)"
    )
    model.add_argument("--onnx", help="a model written by export_onnx.py, run with onnxruntime on the CPU")
    parser.add_argument("--input", default="test_images", help="a picture, a folder of pictures or a glob pattern")
    parser.add_argument("--output-dir", default="outputs/detect", help="where the pictures and detections.json go")
    parser.add_argument(
        "--score-threshold",
        type=threshold_spec,
        default=FALLBACK_THRESHOLD,
        help="keep detections scoring at least this; auto: each class's best-F1 threshold, from "
        "--thresholds or the checkpoint's final evaluation",
    )
    parser.add_argument("--thresholds", metavar="FILE", help="thresholds.json from eval_voc.py --analysis")
    parser.add_argument("--batch-size", type=int, default=2, help="pictures a batch")
    parser.add_argument("--workers", type=int, default=2, help="picture loading processes")
    add_device_argument(parser)
    add_compile_argument(parser)
    add_amp_argument(parser)
    add_channels_last_argument(parser)
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Detect on every picture of ``args.input``; returns the report's fields, the checkpoint and the thresholds."""
    if args.onnx:
        source = Path(args.onnx)
        detector = load_onnx_detector(source)
        stored, device = detector.thresholds, torch.device("cpu")
    else:
        source = Path(args.checkpoint) if args.checkpoint else newest_checkpoint()
        detector, checkpoint = load_detector(source)
        stored, device = checkpoint.get("thresholds"), torch.device(args.device)
    classes = detector.config.classes
    threshold = choose_threshold(args, stored, classes)
    amp, _ = resolve_amp(args.amp, device)
    detector = place(detector, device=device, channels_last=args.channels_last)
    if args.compile:
        print(f"network: {compile_network(detector, source)}")
    report = detect_files(
        detector,
        find_pictures(args.input),
        Path(args.output_dir),
        device=device,
        amp=amp,
        score_threshold=threshold,
        batch_size=args.batch_size,
        workers=args.workers,
    )

    counts = Counter(det["category"] for det in report.detections)
    shown = (
        f"{threshold:g}"
        if isinstance(threshold, float)
        else "per class " + ", ".join(f"{n} {t:.2f}" for n, t in zip(classes, threshold))
    )
    print(f"model: {source}")
    print(f"pictures: {report.processed} processed, {len(report.failures)} not read or not written")
    print(f"objects (score >= {shown}): {len(report.detections)}; " + ", ".join(f"{n} {counts[n]}" for n in classes))
    print(
        f"time per picture: model {report.model_ms:.1f} ms, total {report.total_ms:.1f} ms "
        f"({'onnxruntime' if args.onnx else device.type}, batch {args.batch_size}, amp {amp})"
    )
    print(f"outputs: {len(report.outputs)} annotated pictures and detections.json in {args.output_dir}")
    return {**vars(report), "checkpoint": source, "threshold": threshold}


def choose_threshold(
    args: argparse.Namespace, stored: dict[str, Any] | None, classes: tuple[str, ...]
) -> float | list[float]:
    """A number as given, or with ``auto`` the per-class best-F1 thresholds (from --thresholds, else stored)."""
    if args.score_threshold != "auto":
        if args.thresholds:
            raise ValueError("--thresholds goes with --score-threshold auto")
        return args.score_threshold
    points = read_thresholds(args.thresholds) if args.thresholds else stored
    if not points:
        raise ValueError(
            "--score-threshold auto needs per-class thresholds: this model has none stored (it was "
            "trained without a final evaluation); pass --thresholds thresholds.json from "
            "eval_voc.py --analysis, or a number"
        )
    missing = [name for name in classes if name not in points]
    if missing:
        raise ValueError(f"the thresholds lack the classes {missing} of this model")
    return deploy_thresholds(points, classes, FALLBACK_THRESHOLD)


if __name__ == "__main__":
    sys.exit(1 if run(main, get_args_parser().parse_args(), "detect.py")["failures"] else 0)
