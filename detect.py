"""Detect foreign objects in pictures with an FCOS checkpoint: annotated pictures and a detections JSON.

    python detect.py --checkpoint checkpoint/fod/best.pth --input test_images --output-dir outputs/detect
    python detect.py --input "photos/*.png" --score-threshold 0.5      # newest *.pth under checkpoint/

Each input picture (jpg, jpeg, png, bmp; a file, a folder or a glob pattern) gives a picture of its original size
in ``--output-dir`` (same stem; .png stays .png, anything else becomes .jpg) with every box drawn in its class's
colour, labelled ``class score``, and a legend of the class colours. ``detections.json`` there lists
``{"image_id": stem, "category", "score", "bbox": [x1, y1, x2, y2]}`` in original pixels in the VOC XML's
1-based frame, so ``eval_voc.py --detections detections.json`` scores it directly. A file that cannot be read
is reported and skipped; the exit status is then 1.
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dataset.transforms import normalize_pad
from dataset.voc import collate_fn, load_resized
from eval_voc import parse_resize, to_detections
from model import FCOSDetector

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
CHECKPOINT_DIR = "checkpoint"
# Colour of class id k (RGB): PALETTE[(k - 1) % 20], twenty colours that are easy to tell apart.
PALETTE = (
    (230, 25, 75), (0, 130, 200), (255, 225, 25), (60, 180, 75), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
)  # fmt: skip
FONT = cv2.FONT_HERSHEY_SIMPLEX


def find_pictures(spec: str) -> list[Path]:
    """The pictures ``--input`` names: a file (taken as it is), a folder (its pictures, sorted, not recursive)
    or a glob pattern (``**`` recursive; its matches that are pictures, sorted). Suffixes are case-insensitive."""
    path = Path(spec)
    if path.is_file():
        return [path]
    if path.is_dir():
        candidates = sorted(path.iterdir())
    elif any(c in spec for c in "*?["):
        candidates = sorted(Path(p) for p in glob.glob(spec, recursive=True))
    else:
        raise FileNotFoundError(f"{spec}: no such file or folder")
    pictures = [p for p in candidates if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not pictures:
        raise FileNotFoundError(f"{spec}: no pictures ({', '.join(IMAGE_SUFFIXES)}) found")
    return pictures


def newest_checkpoint(folder: str | Path = CHECKPOINT_DIR) -> Path:
    """The most recently modified ``*.pth`` under ``folder``, sub-folders included (train_voc.py writes to
    ``checkpoint/<preset>/``)."""
    candidates = [p for p in Path(folder).rglob("*.pth") if p.is_file()]
    if not candidates:
        raise FileNotFoundError(f"no checkpoint (*.pth) under {folder}/; pass --checkpoint")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def output_path(picture: Path, output_dir: Path) -> Path:
    """Where the annotated ``picture`` goes: same stem, .png for a PNG, .jpg otherwise."""
    return output_dir / (picture.stem + (".png" if picture.suffix.lower() == ".png" else ".jpg"))


def check_outputs(pictures: Sequence[Path], output_dir: Path) -> None:
    """``ValueError`` when two pictures share a stem (the image id) or an output would overwrite its input."""
    seen: dict[str, Path] = {}
    for picture in pictures:
        if picture.stem in seen:
            raise ValueError(f"{seen[picture.stem]} and {picture} share the image id {picture.stem!r}; "
                             "detect them in separate runs")
        seen[picture.stem] = picture
        if output_path(picture, output_dir).resolve() == picture.resolve():
            raise ValueError(f"--output-dir {output_dir} would overwrite the input {picture}")


class PictureDataset(Dataset):
    """Pictures prepared exactly like ``VOCDataset(train=False)`` does.

    ``ds[i]`` -> (image, target):
        image: float32 [3, H, W], RGB, resized keeping the aspect ratio with ``resize_size`` (min_side, max_side),
            ImageNet-normalised, zero-padded right/bottom to a multiple of 32; None when the file cannot be read;
        target: "path", "image_id" (the stem), "orig_size" (H0, W0), "scale" float32 [2] (new_w / W0, new_h / H0)
            and "offset" zeros [2] (what ``boxes_to_original`` reads), "picture" uint8 [H0, W0, 3] BGR (the
            original, to draw on); for a file that cannot be read only "path" and "error".
    Grayscale pictures become three equal channels and an alpha channel is dropped.
    """

    def __init__(self, paths: Sequence[Path], resize_size: Sequence[int]) -> None:
        self.paths = list(paths)
        self.resize_size = (int(resize_size[0]), int(resize_size[1]))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, dict[str, Any]]:
        path = self.paths[index]
        try:
            original = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
            if original is None:
                raise ValueError(f"{path}: cannot decode image")
            picture, (h0, w0) = load_resized(path, self.resize_size, decoded=original)
        except (OSError, ValueError, cv2.error) as err:
            return None, {"path": path, "error": str(err).removeprefix(f"{path}: ")}
        height, width = picture.shape[:2]
        return normalize_pad(picture), {
            "path": path,
            "image_id": path.stem,
            "orig_size": (h0, w0),
            "scale": torch.tensor([width / w0, height / h0], dtype=torch.float32),
            "offset": torch.zeros(2, dtype=torch.float32),
            "picture": torch.from_numpy(original),
        }


def collate_pictures(batch: Sequence[tuple[torch.Tensor | None, dict]]) -> tuple[torch.Tensor | None, list, list]:
    """(images [B', 3, H, W] of the pictures that loaded, collated by ``collate_fn``, or None when none did;
    their targets; the targets of those that failed, with "path" and "error")."""
    loaded = [item for item in batch if item[0] is not None]
    failed = [target for image, target in batch if image is None]
    images, targets = collate_fn(loaded) if loaded else (None, [])
    return images, targets, failed


def class_colour(label: int) -> tuple[int, int, int]:
    """BGR colour of class id ``label`` (1..C)."""
    r, g, b = PALETTE[(label - 1) % len(PALETTE)]
    return b, g, r


def _text_colour(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on a light BGR background, white on a dark one."""
    b, g, r = colour
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def _label(picture: np.ndarray, text: str, corner: tuple[int, int], colour: tuple[int, int, int],
           font_scale: float, thickness: int) -> None:
    """``text`` on a filled box of ``colour`` standing on ``corner`` (a box's top-left); inside the box when there
    is no room above it, and moved left when it would leave the picture."""
    (text_w, text_h), baseline = cv2.getTextSize(text, FONT, font_scale, thickness)
    pad = max(1, text_h // 4)
    w, h = text_w + 2 * pad, text_h + baseline + 2 * pad
    x = min(max(corner[0], 0), max(picture.shape[1] - w, 0))
    y = corner[1] - h if corner[1] >= h else max(corner[1], 0)
    cv2.rectangle(picture, (x, y), (x + w, y + h), colour, cv2.FILLED)
    cv2.putText(picture, text, (x + pad, y + pad + text_h), FONT, font_scale, _text_colour(colour), thickness,
                cv2.LINE_AA)


def _legend(picture: np.ndarray, classes: Sequence[str], counts: Counter, font_scale: float, thickness: int) -> None:
    """A swatch of each class's colour with ``name: count`` on a darkened panel in the top-right corner."""
    lines = [f"{name}: {counts[name]}" for name in classes]
    sizes = [cv2.getTextSize(line, FONT, font_scale, thickness) for line in lines]
    text_w = max(w for (w, _), _ in sizes)
    row = max(h + b for (_, h), b in sizes)
    pad = max(2, row // 3)
    panel_w, panel_h = text_w + row + 3 * pad, len(lines) * (row + pad) + pad
    x0, y0 = max(picture.shape[1] - panel_w - pad, 0), min(pad, picture.shape[0])
    panel = picture[y0:y0 + panel_h, x0:x0 + panel_w]
    panel[:] = (panel * 0.35).astype(np.uint8)
    for k, (line, ((_, text_h), _)) in enumerate(zip(lines, sizes), start=1):
        top = y0 + pad + (k - 1) * (row + pad)
        cv2.rectangle(picture, (x0 + pad, top), (x0 + pad + row, top + row), class_colour(k), cv2.FILLED)
        cv2.putText(picture, line, (x0 + row + 2 * pad, top + text_h), FONT, font_scale, (255, 255, 255), thickness,
                    cv2.LINE_AA)


def draw_detections(picture: np.ndarray, detections: Sequence[dict[str, Any]], classes: Sequence[str]) -> np.ndarray:
    """Draw ``detections`` (boxes in the XML frame, as in detections.json) onto the BGR ``picture`` [H, W, 3] in
    place: each box in its class's colour labelled ``class score``, and a legend with this picture's counts.
    Line width and font grow with the picture."""
    size = max(picture.shape[:2])
    line, font_scale, thickness = max(1, round(size / 500)), max(0.35, size / 2000), max(1, round(size / 1000))
    ids = {name: k for k, name in enumerate(classes, start=1)}
    for det in detections:
        colour = class_colour(ids[det["category"]])
        x1, y1, x2, y2 = (round(v - 1) for v in det["bbox"])
        cv2.rectangle(picture, (x1, y1), (x2, y2), colour, line)
        _label(picture, f"{det['category']} {det['score']:.2f}", (x1, y1), colour, font_scale, thickness)
    _legend(picture, classes, Counter(det["category"] for det in detections), font_scale, thickness)
    return picture


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Detect foreign objects: annotated pictures and detections.json",
                                     add_help=add_help)
    parser.add_argument("--checkpoint",
                        help=f"checkpoint written by train_voc.py (default: the newest *.pth under {CHECKPOINT_DIR}/)")
    parser.add_argument("--input", default="test_images",
                        help="a picture, a folder of pictures or a glob pattern (default: test_images)")
    parser.add_argument("--output-dir", default="outputs/detect",
                        help="where the annotated pictures and detections.json go (default: outputs/detect)")
    parser.add_argument("--score-threshold", type=float, default=0.3,
                        help="keep detections scoring above this (default: 0.3)")
    parser.add_argument("--resize", type=parse_resize, metavar="MIN,MAX",
                        help="picture size the model sees (default: the checkpoint's resize_size)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="picture loading processes")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action="store_true", help="autocast: float16 on CUDA, bfloat16 on CPU")
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Detect on every picture of ``args.input``. Returns ``detections`` (the JSON's list), ``failures`` (one
    message per file that could not be read or written), ``outputs`` (annotated picture paths), ``checkpoint``,
    and ``model_ms`` / ``total_ms`` per picture."""
    try:
        checkpoint = Path(args.checkpoint) if args.checkpoint else newest_checkpoint()
        model = FCOSDetector.from_checkpoint(checkpoint, map_location="cpu")
        pictures = find_pictures(args.input)
        output_dir = Path(args.output_dir)
        check_outputs(pictures, output_dir)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"detect.py: error: {err}")

    device = torch.device(args.device)
    classes = model.config.classes
    model.config.score_threshold = args.score_threshold
    model.to(device)
    dataset = PictureDataset(pictures, args.resize or model.config.resize_size)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers, collate_fn=collate_pictures,
                        pin_memory=device.type == "cuda")
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    output_dir.mkdir(parents=True, exist_ok=True)

    detections: list[dict[str, Any]] = []
    failures: list[str] = []
    written: list[Path] = []
    processed, model_seconds = 0, 0.0
    start = time.perf_counter()
    with torch.inference_mode(), tqdm(total=len(dataset), desc="detect", unit="picture") as progress:
        for images, targets, failed in loader:
            for target in failed:
                failures.append(f"cannot read {target['path']}, skipped ({target['error']})")
                tqdm.write(f"detect.py: {failures[-1]}", file=sys.stderr)
            if targets:
                images = images.to(device, non_blocking=True)
                _synchronize(device)
                model_start = time.perf_counter()
                with torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
                    outputs = model(images)
                _synchronize(device)
                model_seconds += time.perf_counter() - model_start
                processed += len(targets)
                for output, target in zip(outputs, targets):
                    found = to_detections(output, target, classes)
                    detections += found
                    path = output_path(target["path"], output_dir)
                    if cv2.imwrite(str(path), draw_detections(target["picture"].numpy(), found, classes)):
                        written.append(path)
                    else:
                        failures.append(f"cannot write {path}")
                        tqdm.write(f"detect.py: {failures[-1]}", file=sys.stderr)
            progress.update(len(targets) + len(failed))
    total_seconds = time.perf_counter() - start

    # one detection a line
    (output_dir / "detections.json").write_text("[\n" + ",\n".join(json.dumps(d) for d in detections) + "\n]\n")
    counts = Counter(det["category"] for det in detections)
    model_ms, total_ms = (1000 * s / max(processed, 1) for s in (model_seconds, total_seconds))
    print(f"checkpoint: {checkpoint}")
    print(f"pictures: {processed} processed, {len(pictures) - processed} unreadable")
    print(f"objects (score > {args.score_threshold:g}): {len(detections)}; "
          + ", ".join(f"{name} {counts[name]}" for name in classes))
    print(f"time per picture: model {model_ms:.1f} ms, total {total_ms:.1f} ms "
          f"({device.type}, batch {args.batch_size}{', amp' if args.amp else ''})")
    print(f"outputs: {len(written)} annotated pictures and detections.json in {output_dir}")
    return {"detections": detections, "failures": failures, "outputs": written, "checkpoint": checkpoint,
            "model_ms": model_ms, "total_ms": total_ms}


if __name__ == "__main__":
    sys.exit(1 if main(get_args_parser().parse_args())["failures"] else 0)
