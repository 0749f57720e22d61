"""Flags the scripts share, each defined once: the device, mixed precision, the memory format, torch.compile, the
runtime of an ONNX model, a score threshold and the NMS overlap."""

from __future__ import annotations

import argparse

import torch

from .amp import AMP_CHOICES
from .export import RUNTIMES
from .memory_format import CHANNELS_LAST_CHOICES

Flags = argparse._ActionsContainer  # a parser or one of its argument groups


def add_runtime_argument(flags: Flags) -> argparse.Action:
    return flags.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="onnxruntime",
        help="with --onnx: what runs the model on the CPU; openvino (pip install -r requirements-openvino.txt) ran "
        "int8 models in 0.5-0.7x onnxruntime's time on two AVX-512 CPUs (docs/speed.md)",
    )


def check_runtime(args: argparse.Namespace) -> None:
    """``ValueError`` for a ``--runtime`` other than the default without ``--onnx``, which it would not change."""
    if args.runtime != "onnxruntime" and not args.onnx:
        raise ValueError(f"--runtime {args.runtime} runs --onnx models; a --checkpoint runs in PyTorch")


def add_device_argument(flags: Flags) -> argparse.Action:
    return flags.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda or cuda:N"
    )


def add_amp_argument(flags: Flags) -> argparse.Action:
    return flags.add_argument(
        "--amp",
        nargs="?",
        const="auto",
        default="off",
        choices=AMP_CHOICES,
        help="mixed precision; auto (what --amp alone means): bf16 where it is faster (GPUs; on CPUs, ResNets with "
        "AMX or where a timed probe at start-up says so; EfficientNet-Lite stays float32), else float32; fp16 adds "
        "a gradient scaler",
    )


def add_channels_last_argument(flags: Flags) -> argparse.Action:
    return flags.add_argument(
        "--channels-last",
        nargs="?",
        const="on",
        default="auto",
        choices=CHANNELS_LAST_CHOICES,
        help="NHWC memory format; auto: on GPUs and CPUs with AVX-512, off on other CPUs",
    )


def add_compile_argument(flags: Flags) -> argparse.Action:
    return flags.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="torch.compile the network (backbone, FPN, head); helps GPUs more than CPUs",
    )


def threshold_spec(text: str) -> float | str:
    """A score threshold: a number, or ``auto`` for each class's best-F1 threshold (argparse type)."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number or auto, got {text!r}") from None


def add_nms_argument(flags: Flags) -> argparse.Action:
    return flags.add_argument(
        "--nms-iou",
        type=nms_iou,
        metavar="IOU",
        help="with a model: two boxes of one class overlapping by more than this IoU are one object (class-wise "
        "NMS keeps the higher score); default: the model's own, 0.6 unless its config says otherwise. The "
        "thresholds a model stores were chosen at its own",
    )


def nms_iou(text: str) -> float:
    """An IoU in (0, 1] (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"an IoU in (0, 1], got {text!r}")
    return value
