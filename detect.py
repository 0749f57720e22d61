"""Detect foreign objects in pictures, videos, streams or a camera with an FCOS checkpoint (or its ONNX export).

    python detect.py --checkpoint checkpoint/fod-cpu/last.pth --input test_images --output-dir outputs/detect
    python detect.py --input "photos/*.png" --score-threshold 0.5          # newest *.pth under checkpoint/
    python detect.py --onnx fcos.onnx --input test_images --output-dir outputs/detect_onnx
    python detect.py --input road.mp4 --vid-stride 2 --roi "0,500 1280,500 1280,720 0,720" --output-dir outputs/road
    python detect.py --input rtsp://camera.local/stream --confirm 3/5      # or --input 0 for the first webcam

Each input picture (jpg, jpeg, png, bmp; a file, a folder or a glob pattern) gives a picture of its original size
in ``--output-dir`` (same stem; .png stays .png, anything else becomes .jpg) with every box drawn in its class's
colour, labelled ``class score``, and a legend of the class colours. ``detections.json`` there lists
``{"image_id": stem, "category", "score", "bbox": [x1, y1, x2, y2]}`` in original pixels in the VOC XML's
1-based frame, so ``eval_voc.py --detections detections.json`` scores it directly. A file that cannot be read
is reported and skipped; the exit status is then 1. Detections are kept from each class's best-F1 threshold
stored with the model (from 0.3 for a model without them) unless ``--score-threshold`` says otherwise.

A video file (mp4, avi, mkv, mov, webm ...), a stream URL (rtsp://, http:// ...) or a webcam index is read frame
by frame (every ``--vid-stride``-th), its detections tracked (ByteTrack) and each object confirmed in K of the
last N processed frames (``--confirm``) raised once as an event: see :mod:`engine.video_detection` for the
outputs (an annotated video, ``detections.jsonl``, ``events.csv`` / ``events.json`` and ``crops/``). A video
that cannot be opened or decoded, or a file that ends before its announced length, gives one line naming it and
the exit status 1. A stream or camera that drops is opened again for up to ``--reconnect`` seconds; one that does
not come back ends the run with everything processed written and the exit status 1. A run slower than its stream
or camera takes the newest frame each time, skipping those between (``--every-frame`` reads them all, in order).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from cli import DefaultsFormatter, error_message, run
from dataset.pictures import find_pictures
from engine.amp import resolve_amp
from engine.annotate import detect_files
from engine.checkpoint import load_detector, newest_checkpoint
from engine.events import parse_confirm
from engine.export import load_onnx_detector
from engine.flags import (
    add_amp_argument,
    add_channels_last_argument,
    add_compile_argument,
    add_device_argument,
    add_nms_argument,
    add_runtime_argument,
    check_runtime,
    threshold_spec,
)
from engine.folder_lock import folder_lock
from engine.frame_detector import FrameDetector
from engine.inference import compile_network, place
from engine.roi import RegionOfInterest, parse_polygon
from engine.thresholds import FALLBACK_THRESHOLD, deploy_thresholds, read_thresholds
from engine.video import VideoReader, video_source
from engine.video_detection import detect_video


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Detect foreign objects: annotated pictures and detections.json, or for a video, a stream or a "
        "camera an annotated video, detections.jsonl and one event per confirmed object",
        add_help=add_help,
        formatter_class=DefaultsFormatter,
    )
    model = parser.add_mutually_exclusive_group()
    model.add_argument(
        "--checkpoint", help="checkpoint written by train_voc.py (default: the newest *.pth under checkpoint/)"
    )
    model.add_argument("--onnx", help="a model written by export_onnx.py, run on the CPU (by --runtime)")
    parser.add_argument(
        "--input",
        default="test_images",
        help="a picture, a folder of pictures or a glob pattern; or a video file, a stream URL (rtsp://, http://) "
        "or a webcam index (0)",
    )
    parser.add_argument("--output-dir", default="outputs/detect", help="where the outputs go")
    parser.add_argument(
        "--score-threshold",
        type=threshold_spec,
        default=None,
        help="keep detections scoring at least this; auto: each class's best-F1 threshold, from "
        "--thresholds or the checkpoint's final evaluation (default: those where the model stores them, "
        f"else {FALLBACK_THRESHOLD})",
    )
    parser.add_argument("--thresholds", metavar="FILE", help="thresholds.json from eval_voc.py --analysis")
    add_nms_argument(parser)
    video = parser.add_argument_group("videos, streams and cameras")
    video.add_argument(
        "--vid-stride", type=positive_int, default=1, help="detect on every N-th frame (tracking adapts to the rate)"
    )
    video.add_argument(
        "--confirm",
        type=confirm_spec,
        default="3/5",
        metavar="K/N",
        help="an object becomes an event once tracked in K of the last N processed frames; 3/5 raises it at its "
        "third sighting (0.2 s after the first at 10 processed frames/s) and tolerates two missed frames, while a "
        "false alarm that flickers for a frame or two never becomes one",
    )
    video.add_argument(
        "--roi",
        metavar="POLYGON",
        help="keep only detections whose box's bottom centre (where an object touches the road) lies in this "
        'polygon of frame pixels: "x1,y1 x2,y2 x3,y3 ..." or a JSON file [[x, y], ...]; drawn on the video',
    )
    video.add_argument(
        "--reconnect",
        type=non_negative_seconds,
        default=60.0,
        metavar="SECONDS",
        help="a stream or camera that stops giving frames is opened again, every 1, 2, 4, then 8 s, for up to this "
        "long before the run ends with exit status 1 (what was processed written); 0: end at once",
    )
    video.add_argument(
        "--every-frame",
        action="store_true",
        help="read a stream or camera in order, every --vid-stride-th frame, however far the run falls behind it; "
        "by default a run slower than the source takes its newest frame each time and skips those between, so "
        "its events come as the objects do",
    )
    video.add_argument(
        "--save-video",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write the annotated video; --no-save-video keeps the events, their crops and detections.jsonl only "
        "(a camera watched around the clock fills no disk with video, and each frame is neither drawn nor encoded)",
    )
    parser.add_argument("--batch-size", type=int, default=2, help="pictures a batch")
    parser.add_argument("--workers", type=int, default=2, help="picture loading processes")
    add_device_argument(parser)
    add_runtime_argument(parser)
    add_compile_argument(parser)
    add_amp_argument(parser)
    add_channels_last_argument(parser)
    return parser


def non_negative_seconds(text: str) -> float:
    """A number of seconds >= 0 (argparse type)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"a number of seconds >= 0, got {text!r}")
    return seconds


def positive_int(text: str) -> int:
    """An integer >= 1 (argparse type)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number >= 1, got {text!r}")
    return int(text)


def confirm_spec(text: str) -> tuple[int, int]:
    """``K/N`` (argparse type)."""
    try:
        return parse_confirm(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--confirm ")) from None


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Detect on every picture of ``args.input``, or on a video, stream or camera; returns the report's fields,
    the checkpoint and the thresholds."""
    check_runtime(args)
    source = video_source(args.input)
    if source is None:
        if args.roi:
            raise ValueError("--roi is for videos, streams and cameras")
        with folder_lock(Path(args.output_dir)):
            return detect_pictures(args)
    region = RegionOfInterest(parse_polygon(args.roi)) if args.roi else None
    try:
        reader = VideoReader(source, args.vid_stride, reconnect_seconds=args.reconnect, newest=not args.every_frame)
    except OSError as err:
        print(f"detect.py: error: {error_message(err)}", file=sys.stderr)
        return {"failures": [str(err)], "frames": 0, "events": []}
    try:
        detector, model = load_frame_detector(args)
        with folder_lock(Path(args.output_dir)) as output_dir:
            report = detect_video(
                detector,
                reader,
                output_dir,
                confirm=args.confirm,
                region=region,
                save_video=args.save_video,
                progress=True,
            )
    finally:
        reader.close()
    for failure in report.failures:
        print(f"detect.py: error: {failure}", file=sys.stderr)
    print(f"model: {model}")
    skipped = f", {report.skipped} more skipped to keep up with the source" if report.skipped else ""
    reconnected = f", the source opened again {reader.reconnects} times" if reader.reconnects else ""
    print(
        f"frames: {report.frames} processed (every {args.vid_stride}){skipped}, {report.detections} detections"
        + reconnected
    )
    print(f"events: {len(report.events)} objects confirmed in {args.confirm[0]} of {args.confirm[1]} frames")
    print(f"speed: {report.fps:.1f} frames/s end to end, model {report.model_ms:.1f} ms a frame")
    print(f"outputs: {', '.join(p.name for p in report.outputs)} and crops/ in {args.output_dir}")
    return {**vars(report), "checkpoint": model, "threshold": detector.score_threshold}


def load_frame_detector(args: argparse.Namespace) -> tuple[FrameDetector, Path]:
    """The model of ``--checkpoint`` or ``--onnx`` (the newest checkpoint by default) on its device, with the
    thresholds the flags choose; and its path."""
    if args.onnx:
        source = Path(args.onnx)
        detector = load_onnx_detector(source, runtime=args.runtime)
        stored, device = detector.thresholds, torch.device("cpu")
    else:
        source = Path(args.checkpoint) if args.checkpoint else newest_checkpoint()
        detector, checkpoint = load_detector(source)
        stored, device = checkpoint.get("thresholds"), torch.device(args.device)
    if args.nms_iou is not None:
        detector.config.nms_iou = args.nms_iou
    classes = detector.config.classes
    threshold = choose_threshold(args, stored, classes)
    amp, _ = resolve_amp(args.amp, device, detector.config.backbone)
    detector = place(detector, device=device, channels_last=args.channels_last)
    if args.compile:
        print(f"network: {compile_network(detector, source)}")
    return FrameDetector(detector, score_threshold=threshold, device=device, amp=amp), source


def detect_pictures(args: argparse.Namespace) -> dict[str, Any]:
    """Detect on every picture of ``args.input`` in batches, into ``args.output_dir`` (held)."""
    frame_detector, source = load_frame_detector(args)
    detector, device, amp, threshold = (
        frame_detector.detector,
        frame_detector.device,
        frame_detector.amp,
        frame_detector.score_threshold,
    )
    classes = detector.config.classes
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
        f"({args.runtime if args.onnx else device.type}, batch {args.batch_size}, amp {amp})"
    )
    print(f"outputs: {len(report.outputs)} annotated pictures and detections.json in {args.output_dir}")
    return {**vars(report), "checkpoint": source, "threshold": threshold}


def choose_threshold(
    args: argparse.Namespace, stored: dict[str, Any] | None, classes: tuple[str, ...]
) -> float | list[float]:
    """A number as given; with ``auto`` the per-class best-F1 thresholds (from --thresholds, else stored); without
    a choice those where there are some, else :data:`FALLBACK_THRESHOLD`."""
    if args.score_threshold not in (None, "auto"):
        if args.thresholds:
            raise ValueError("--thresholds goes with --score-threshold auto (or none), not with a number")
        return args.score_threshold
    points = read_thresholds(args.thresholds) if args.thresholds else stored
    if not points and args.score_threshold is None:
        return FALLBACK_THRESHOLD
    if not points:
        raise ValueError(
            "--score-threshold auto needs per-class thresholds: this model has none stored (it was "
            "trained without a final evaluation); pass --thresholds thresholds.json from "
            "eval_voc.py --analysis, or a number"
        )
    missing = [name for name in classes if name not in points]
    if missing and args.score_threshold == "auto":
        raise ValueError(f"the thresholds lack the classes {missing} of this model")
    return deploy_thresholds(points, classes, FALLBACK_THRESHOLD)


if __name__ == "__main__":
    sys.exit(1 if run(main, get_args_parser().parse_args(), "detect.py")["failures"] else 0)
