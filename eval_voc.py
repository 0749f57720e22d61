"""Evaluate an FCOS checkpoint, an exported ONNX model or a detections file on a VOC-layout split (VOC AP).

    python eval_voc.py --checkpoint checkpoint/fod-cpu/last.pth --data-root DIR --split val
    python eval_voc.py --onnx fcos_int8.onnx --data-root DIR --split val
    python eval_voc.py --detections dets.json --data-root DIR --split val [--classes a,b,c]
    python eval_voc.py --checkpoint CKPT --data-root DIR --split val --analysis outputs/analysis
    python eval_voc.py --checkpoint CKPT --data-root DIR --split val --tta --ci     # with a 90% interval

Prints ``ap for CLASS is X`` per class and ``mAP=====>X`` like the original, then a table.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch

from cli import DefaultsFormatter, parse_size, run
from dataset import VOCDataset, load_ground_truth, resolve_classes
from dataset.splits import picture_clusters
from engine.amp import resolve_amp
from engine.analysis import analyse
from engine.annotate import check_writable, write_json_atomically
from engine.bootstrap import LEVEL, RESAMPLES, bootstrap, format_intervals
from engine.checkpoint import load_detector
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
from engine.inference import compile_network, evaluate, place
from engine.metrics import (
    METRICS,
    coco_metrics,
    evaluate_by_size,
    evaluate_detections,
    format_by_size,
    format_results,
    load_detections,
    size_bins,
)
from engine.plots import plot_pr_curves


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="VOC AP of an FCOS checkpoint, an ONNX export or a detections file",
        add_help=add_help,
        formatter_class=DefaultsFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint written by train_voc.py (config and classes come from it)")
    source.add_argument("--onnx", help="a model written by export_onnx.py, run on the CPU (by --runtime)")
    source.add_argument("--detections", help="detections JSON to score: [{image_id, category, score, bbox}]")
    parser.add_argument(
        "--data-root", required=True, help="VOC-layout root (Annotations/, ImageSets/Main/, JPEGImages/)"
    )
    parser.add_argument("--split", default="val", help="ImageSets/Main/<split>.txt")
    parser.add_argument(
        "--classes", help="with --detections: 'a,b,c', 'fod', 'voc' or a file with one name a line (default: fod)"
    )
    parser.add_argument("--iou", type=float, default=0.5, help="IoU a match must exceed")
    parser.add_argument(
        "--metric", choices=METRICS, default="voc12", help="voc12: all-point interpolation; voc07: 11-point"
    )
    parser.add_argument(
        "--coco", action="store_true", help="also report COCO AP@[.5:.95], AP@.5 and AP small, medium and large"
    )
    parser.add_argument(
        "--size-bins",
        type=size_edges,
        metavar="PX,PX",
        help="AP of the objects of each size (the square root of a box's area, in pixels of the original picture) "
        "between these edges (default: the terciles of the split's objects)",
    )
    parser.add_argument(
        "--ci",
        action="store_true",
        help=f"a {LEVEL * 100:.0f}%% interval of mAP and each class's AP from {RESAMPLES} bootstrap resamples of "
        "the split's clusters of near-duplicate pictures (whole scenes drawn with replacement, not single boxes; "
        "the pictures are read to find them)",
    )
    parser.add_argument("--plot", metavar="DIR", help="write a precision-recall curve per class into DIR")
    parser.add_argument("--analysis", metavar="DIR", help="confusion matrix, operating points and error pictures")
    parser.add_argument(
        "--score-threshold",
        type=threshold_spec,
        default="auto",
        help="score a detection needs to count in the confusion matrix and error pictures (with "
        "--analysis): a number, or auto for each class's best-F1 threshold",
    )
    parser.add_argument("--worst", type=int, default=12, help="error pictures drawn (with --analysis)")
    parser.add_argument(
        "--resize",
        type=parse_size,
        metavar="SHORTxLONG",
        help="picture size to evaluate at (default: the model's)",
    )
    parser.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="with --checkpoint or --onnx: detect on the picture and its horizontal flip",
    )
    parser.add_argument(
        "--tta-scales",
        type=tta_scale,
        nargs="+",
        default=[1.0],
        metavar="S",
        help="with --checkpoint or --onnx: one pass per scale, the picture resized by it (to a multiple of 32), "
        "all passes selected together; 1 is the picture as it is, so 1 1.25 adds a larger pass",
    )
    parser.add_argument(
        "--ema",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --checkpoint: score the weight average of a run trained with --ema (--no-ema: the weights it "
        "trained, which the average leaves as they would be without it)",
    )
    add_nms_argument(parser)
    parser.add_argument("--batch-size", type=int, default=2, help="pictures a batch")
    parser.add_argument("--workers", type=int, default=2, help="data loading processes")
    add_device_argument(parser)
    add_runtime_argument(parser)
    add_compile_argument(parser)
    add_amp_argument(parser)
    add_channels_last_argument(parser)
    parser.add_argument("--save-detections", metavar="FILE", help="with a model: write the detections JSON")
    return parser


def tta_scale(text: str) -> float:
    """``"1.25"`` -> 1.25: a factor in (0, 4] to resize the input by (argparse type)."""
    try:
        scale = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number, e.g. 1.25; got {text!r}") from None
    if not (0 < scale <= 4):
        raise argparse.ArgumentTypeError(f"a scale must be in (0, 4], got {text!r}")
    return scale


def size_edges(text: str) -> tuple[float, ...]:
    """``"24,32"`` -> ``(24.0, 32.0)``: increasing positive edges between size bins (argparse type)."""
    try:
        edges = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated sizes in pixels, e.g. 24,32; got {text!r}") from None
    if not all(math.isfinite(e) and e > 0 for e in edges) or list(edges) != sorted(set(edges)):
        raise argparse.ArgumentTypeError(f"sizes must be positive and increasing, got {text!r}")
    return edges


def main(args: argparse.Namespace) -> dict[str, Any]:
    check_runtime(args)
    if not args.ema and not args.checkpoint:
        raise ValueError("--no-ema picks the weights of a checkpoint trained with --ema: it needs --checkpoint")
    for folder in (args.plot, args.analysis, args.save_detections and Path(args.save_detections).parent):
        if folder:
            check_writable(Path(folder))  # before the work, not after it
    if args.checkpoint or args.onnx:
        if args.classes is not None:
            raise ValueError("--classes is only for --detections; a model carries its classes")
        source = args.checkpoint or args.onnx
        detector = (
            load_detector(source, averaged=args.ema)[0]
            if args.checkpoint
            else load_onnx_detector(source, runtime=args.runtime)
        )
        if args.nms_iou is not None:
            detector.config.nms_iou = args.nms_iou
        device = torch.device(args.device)
        amp, _ = resolve_amp(args.amp, device, detector.config.backbone)
        detector = place(detector, device=device, channels_last=args.channels_last)
        if args.compile:
            print(f"network: {compile_network(detector, source)}")
        config = detector.config
        classes = config.classes
        dataset = VOCDataset(
            args.data_root,
            args.split,
            classes,
            resize_size=args.resize or config.resize_size,
            normalization=config.normalization,
        )
        result, detections = evaluate(
            detector,
            dataset,
            device=device,
            batch_size=args.batch_size,
            workers=args.workers,
            amp=amp,
            flip=args.tta,
            scales=args.tta_scales,
            iou_threshold=args.iou,
            metric=args.metric,
        )
        ground_truth = dataset.ground_truth()
        if args.save_detections:
            write_json_atomically(detections, Path(args.save_detections))
            print(f"detections written to {args.save_detections}")
    else:
        if args.save_detections or args.tta or args.tta_scales != [1.0] or args.nms_iou is not None:
            raise ValueError(
                "--save-detections, --tta, --tta-scales and --nms-iou need a model (--checkpoint or --onnx)"
            )
        classes = resolve_classes(args.classes)
        ground_truth = load_ground_truth(args.data_root, args.split, classes)
        detections = load_detections(args.detections, list(ground_truth), classes)
        result = evaluate_detections(detections, ground_truth, classes, args.iou, args.metric)

    print(format_results(result))
    if math.isnan(result["map"]):
        raise ValueError(
            f"split {args.split!r} of {args.data_root} has no objects of the classes {', '.join(classes)}; "
            "nothing to score"
        )
    if args.ci:
        cluster = picture_clusters(args.data_root, list(ground_truth)).numpy()
        result["ci"] = bootstrap(detections, ground_truth, classes, cluster, iou_threshold=args.iou, metric=args.metric)
        print(f"\n{format_intervals(result, result['ci'])}")
    if args.coco:
        result["coco"] = coco_metrics(detections, ground_truth, classes)
        print(f"COCO AP@[.5:.95]=====>{result['coco']['AP@[.5:.95]']:.3f}")
        print(f"COCO AP@.5=====>{result['coco']['AP@.5']:.3f}")
        sizes = ", ".join(f"{k} {v:.3f}" for k, v in result["coco"].items() if k.startswith("AP "))
        print(f"COCO {sizes} (areas below 32x32 pixels, up to 96x96, above)")
    bins = size_bins(ground_truth, args.size_bins)
    result["by_size"] = evaluate_by_size(
        detections, ground_truth, classes, bins, iou_threshold=args.iou, metric=args.metric
    )
    source = "as given" if args.size_bins else "the terciles of the split's objects"
    print(f"\nAP by object size (square root of the box area, pixels of the original picture; bins: {source}):")
    print(format_by_size(result["by_size"]))
    if args.plot:
        print(f"{len(plot_pr_curves(result, args.plot))} precision-recall curves written to {args.plot}")
    if args.analysis:
        result["analysis"] = analyse(
            result,
            detections,
            ground_truth=ground_truth,
            classes=classes,
            out_dir=Path(args.analysis),
            images_dir=Path(args.data_root) / "JPEGImages",
            score_threshold=args.score_threshold,
            iou_threshold=args.iou,
            worst=args.worst,
            size_bins=bins,
        )
    return result


if __name__ == "__main__":
    run(main, get_args_parser().parse_args(), "eval_voc.py")
