"""Export a checkpoint to ONNX for deployment: dynamic batch, height and width, self-describing metadata.

    python export_onnx.py --checkpoint checkpoint/fod-cpu/last.pth --output fcos.onnx
    python detect.py --onnx fcos.onnx --input test_images --output-dir outputs/detect_onnx

The graph holds the network and the decoding (``images [B,3,H,W]`` normalised and padded to multiples of 32
-> ``scores [B,N,C]``, ``boxes [B,N,4]``); thresholding and NMS run in the same Python code as for PyTorch.
The classes, the resize rule, the normalisation and the score thresholds are in the file's metadata.
``--check`` compares the export with PyTorch on the project's ``test_images/`` (wherever the script is run from)
before writing it out. ``--int8 PICTURES`` also writes ``<output>_int8.onnx``, its convolutions quantised to int8
with activation ranges measured on those pictures (a few dozen like the ones it will see); score it with
``eval_voc.py --onnx``. The pictures of both are read before the export starts."""

from __future__ import annotations

import argparse
import contextlib
import errno
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from cli import DefaultsFormatter, run
from dataset.pictures import find_pictures
from engine.annotate import check_writable
from engine.checkpoint import load_detector
from engine.export import export_onnx, load_onnx_detector, model_inputs, quantize_int8
from model import FCOSConfig

SAMPLE_PICTURES = Path(__file__).resolve().parent / "test_images"


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export an FCOS checkpoint to ONNX", add_help=add_help, formatter_class=DefaultsFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by train_voc.py")
    parser.add_argument("--output", required=True, help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset")
    parser.add_argument(
        "--check",
        default=str(SAMPLE_PICTURES),
        metavar="PICTURES",
        help="pictures to compare PyTorch and onnxruntime on, a folder, a file or a glob ('' to skip)",
    )
    parser.add_argument(
        "--int8",
        metavar="PICTURES",
        help="also write <output>_int8.onnx, calibrated on these pictures (a folder, a file or a glob)",
    )
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    output = Path(args.output)
    check_writable(output.parent if str(output.parent) else Path("."))
    detector, checkpoint = load_detector(args.checkpoint)
    checked = pictures_for("--check", args.check, detector.config) if args.check else []
    calibration = pictures_for("--int8", args.int8, detector.config) if args.int8 else []
    with full_disk_named(output), tempfile.TemporaryDirectory(dir=output.parent if str(output.parent) else ".") as tmp:
        path = export_onnx(detector, Path(tmp) / output.name, args.opset, checkpoint.get("thresholds"))
        worst = compare(detector, path, checked) if checked else None
        int8 = None
        if calibration:
            quantized = quantize_int8(path, Path(tmp) / f"{output.stem}_int8.onnx", calibration)
            int8 = quantized.replace(output.with_name(quantized.name))
        path.replace(output)
    print(f"wrote {output} ({output.stat().st_size / 2**20:.1f} MiB, opset {args.opset}, dynamic batch, height, width)")
    if int8 is not None:
        print(f"wrote {int8} ({int8.stat().st_size / 2**20:.1f} MiB, int8 convolutions, {len(calibration)} pictures)")
    if worst is not None:
        print(
            f"onnxruntime against PyTorch on {args.check} ({len(checked)} pictures): largest difference "
            f"{worst['scores']:.2e} in scores, {worst['boxes']:.2e} px in boxes"
        )
    return {"output": output, "int8": int8, "difference": worst}


@contextlib.contextmanager
def full_disk_named(output: Path) -> Iterator[None]:
    """A full disk reported with ``output``'s name: the write that fails is to a temporary file, and Python's
    error for it names no file at all."""
    try:
        yield
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise OSError(errno.ENOSPC, err.strerror, str(output)) from None


def pictures_for(flag: str, spec: str, config: FCOSConfig) -> list[torch.Tensor]:
    """The pictures ``spec`` names, as the model takes them (``[1,3,H,W]`` each, see :func:`model_inputs`): read
    before the export, so that a wrong ``flag`` costs no export; an error naming the flag and the pictures."""
    try:
        return model_inputs(find_pictures(spec), config)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{flag} {err}") from None
    except ValueError as err:
        raise ValueError(f"{flag} {spec}: {err}") from None


def compare(detector: torch.nn.Module, path: Path, images: list[torch.Tensor]) -> dict[str, float]:
    """Largest absolute difference of the dense outputs (scores, boxes in pixels) over ``images``, each
    ``[1,3,H,W]``."""
    session = load_onnx_detector(path)
    worst = {"scores": 0.0, "boxes": 0.0}
    for image in images:
        with torch.inference_mode():
            reference = detector.dense(image)
        for name, a, b in zip(worst, reference, session.dense(image)):
            worst[name] = max(worst[name], float((a - b).abs().max()))
    return worst


if __name__ == "__main__":
    run(main, get_args_parser().parse_args(), "export_onnx.py")
