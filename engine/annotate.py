"""Detection on picture files: each picture annotated at its original size, and one detections.json."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from dataset.drawing import draw_detections
from dataset.pictures import PictureDataset, collate_pictures
from model import FCOSConfig

from .atomic import write_text_atomically
from .inference import Detector, detect_batch, to_detections


@dataclass
class DetectReport:
    detections: list[dict[str, Any]] = field(default_factory=list)  # the JSON's entries
    failures: list[str] = field(default_factory=list)  # one message per file not read or not written
    outputs: list[Path] = field(default_factory=list)  # annotated pictures written
    processed: int = 0
    model_ms: float = 0.0  # per picture, the detector alone
    total_ms: float = 0.0  # per picture, reading and writing included


def output_path(picture: Path, output_dir: Path) -> Path:
    """Where the annotated ``picture`` goes: same stem, .png for a PNG, .jpg otherwise."""
    return output_dir / (picture.stem + (".png" if picture.suffix.lower() == ".png" else ".jpg"))


def check_outputs(pictures: Sequence[Path], output_dir: Path) -> None:
    """``ValueError`` when two pictures share a stem (the image id) or an output would overwrite its input;
    ``OSError`` when ``output_dir`` cannot be written (found before any work is done)."""
    seen: dict[str, Path] = {}
    for picture in pictures:
        if picture.stem in seen:
            raise ValueError(
                f"{seen[picture.stem]} and {picture} share the image id {picture.stem!r}; detect them in separate runs"
            )
        seen[picture.stem] = picture
        if output_path(picture, output_dir).resolve() == picture.resolve():
            raise ValueError(f"--output-dir {output_dir} would overwrite the input {picture}")
    check_writable(output_dir)


def check_writable(folder: Path) -> None:
    """Create ``folder`` and prove a file can be written there, or raise an ``OSError`` naming it."""
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder}: is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".write_test_{os.getpid()}"
    try:
        probe.write_bytes(b"0" * 4096)
    except OSError as err:
        raise OSError(f"{folder}: cannot write there ({err.strerror})") from None
    finally:
        # a read-only file system refuses even to remove a missing file; that error would hide the folder's
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)


def write_json_atomically(data: Any, path: Path) -> None:
    """One detection a line, written as :func:`write_text_atomically` writes."""
    write_text_atomically("[\n" + ",\n".join(json.dumps(d) for d in data) + "\n]\n", path)


def picture_loader(
    pictures: Sequence[Path], config: FCOSConfig, batch_size: int, workers: int, device: torch.device
) -> DataLoader:
    """Batches (images, targets, failed) of ``pictures`` prepared as the model of ``config`` takes them."""
    return DataLoader(
        PictureDataset(pictures, config.resize_size, config.normalization),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_pictures,
        pin_memory=device.type == "cuda",
    )


def detect_files(
    detector: Detector,
    pictures: Sequence[Path],
    output_dir: Path,
    *,
    device: torch.device | str = "cpu",
    amp: str = "off",
    score_threshold: float | Sequence[float] | None = None,
    batch_size: int = 2,
    workers: int = 0,
    progress: bool = True,
) -> DetectReport:
    """Detect on every picture: annotated copies (boxes in class colours, ``class score`` labels, a legend)
    and ``detections.json`` in ``output_dir``, boxes in the original pixels' XML frame. A file that cannot be
    read or written is reported (``failures``) and skipped. ``score_threshold``: one number, or one per
    class (the detector's own threshold when None)."""
    device = torch.device(device)
    config = detector.config
    threshold = torch.tensor(score_threshold) if isinstance(score_threshold, (list, tuple)) else score_threshold
    check_outputs(pictures, output_dir)
    report, model_seconds, start = DetectReport(), 0.0, time.perf_counter()
    loader = picture_loader(pictures, config, batch_size, workers, device)
    with tqdm(total=len(pictures), desc="detect", unit="picture", disable=not progress) as bar:
        for images, targets, failed in loader:
            for target in failed:
                report.failures.append(f"cannot read {target['path']}, skipped ({target['error']})")
                tqdm.write(f"detect: {report.failures[-1]}", file=sys.stderr)
            if targets:
                tic = time.perf_counter()
                outputs = detect_batch(detector, images.to(device), amp, score_threshold=threshold)
                model_seconds += time.perf_counter() - tic
                report.processed += len(targets)
                for output, target in zip(outputs, targets):
                    found = to_detections(output, target, config.classes)
                    report.detections += found
                    path = output_path(target["path"], output_dir)
                    if cv2.imwrite(str(path), draw_detections(target["picture"].numpy(), found, config.classes)):
                        report.outputs.append(path)
                    else:
                        report.failures.append(f"cannot write {path}")
                        tqdm.write(f"detect: {report.failures[-1]}", file=sys.stderr)
            bar.update(len(targets) + len(failed))
    write_json_atomically(report.detections, output_dir / "detections.json")
    report.model_ms = 1000 * model_seconds / max(report.processed, 1)
    report.total_ms = 1000 * (time.perf_counter() - start) / max(report.processed, 1)
    return report
