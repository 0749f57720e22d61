"""The pictures of ``eval_voc.py --analysis``: the confusion matrix, precision/recall/F1 against the threshold
(matplotlib) and the error pictures (OpenCV), drawn from the numbers of :mod:`engine.analysis`."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dataset import GroundTruth
from dataset.decoding import read_header, read_picture
from dataset.drawing import class_colour, label_box

from .metrics import Detection
from .plots import new_figure, save_figure
from .thresholds import curve


def plot_confusion(matrix: np.ndarray, classes: Sequence[str], path: Path) -> None:
    """The confusion matrix ``[C+1, C+1]`` (last row and column: background) coloured by the share of each row,
    with the count and the share in each cell."""
    names = [*classes, "background"]
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = matrix / np.maximum(rows, 1)
    fig = new_figure(1.3 * len(names) + 2, 1.1 * len(names) + 1.5)
    ax = fig.add_subplot()
    ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            f"{count}\n{normalised[i, j]:.2f}" if rows[i, 0] else "-",
            ha="center",
            va="center",
            color="white" if normalised[i, j] > 0.6 else "black",
            fontsize=9,
        )
    ax.set(
        xticks=range(len(names)),
        yticks=range(len(names)),
        xlabel="predicted",
        ylabel="true",
        title="confusion (count, share of the row)",
    )
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_yticklabels(names)
    fig.tight_layout()
    save_figure(fig, path)


def plot_threshold_curves(result: dict[str, Any], path: Path) -> None:
    """Precision, recall and F1 of each class against the score threshold, side by side."""
    fig = new_figure(13, 4)
    axes = fig.subplots(1, 3)
    for k, name in enumerate(result["ap"], start=1):
        c = curve(result, name)
        colour = tuple(v / 255 for v in class_colour(k)[::-1])
        for ax, key in zip(axes, ("precision", "recall", "f1")):
            ax.plot(c["threshold"], c[key], color=colour, label=name, lw=1.5)
    for ax, key in zip(axes, ("precision", "recall", "F1")):
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="score threshold", ylabel=key, title=f"{key} against the threshold")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


def draw_errors(
    rows: list[dict[str, Any]],
    detections: Sequence[Detection],
    *,
    ground_truth: GroundTruth,
    classes: Sequence[str],
    shown: Sequence[int],
    images_dir: Path,
    out_dir: Path,
    worst: int,
    max_side: int = 1600,
) -> list[Path]:
    """The ``worst`` pictures (most errors of ``rows``, :func:`engine.analysis.error_list`'s) with ground truth
    dashed white and the ``shown`` detections (indices into ``detections``) solid in class colours; errors
    labelled MISS or FP. Each picture is read in the frame its XML's boxes were drawn in (``ground_truth``'s
    ``size``), scaled to at most ``max_side`` pixels; one that cannot be read is skipped with a warning."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["image_id"]] = counts.get(row["image_id"], 0) + 1
    ranked = sorted(counts, key=lambda i: (-counts[i], i))[:worst]
    missed = {(r["image_id"], r["object_index"]) for r in rows if r["kind"] == "miss"}
    false_alarms = {r["detection_index"] for r in rows if r["kind"] == "false_alarm"}
    class_ids = {name: k for k, name in enumerate(classes, start=1)}
    written = []
    for image_id in ranked:
        gt = ground_truth[image_id]
        path = images_dir / f"{image_id}.jpg"
        try:
            rgb = read_picture(path, upright=read_header(path).drawn_upright(gt.get("size", (0, 0))))
        except (OSError, ValueError) as err:
            warnings.warn(f"{err}; no error picture drawn for it", stacklevel=2)
            continue
        picture = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        scale = min(1.0, max_side / max(picture.shape[:2]))
        picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else picture
        line = max(1, round(max(picture.shape[:2]) / 600))
        for j, (box, label) in enumerate(zip(gt["boxes"].tolist(), gt["labels"].tolist())):
            corners = _corners(box, scale)
            _dashed_rectangle(picture, corners, (255, 255, 255), line)
            is_miss = (image_id, j) in missed
            label_box(
                picture,
                f"MISS {classes[label - 1]}" if is_miss else classes[label - 1],
                (corners[0], corners[3] + 1),
                (0, 0, 255) if is_miss else (90, 90, 90),
                0.4 * line,
                max(1, line // 2),
                below=True,
            )
        for i in shown:
            d = detections[i]
            if d["image_id"] != image_id:
                continue
            corners = _corners(d["bbox"], scale)
            colour = class_colour(class_ids[d["category"]])
            cv2.rectangle(picture, corners[:2], corners[2:], colour, line)
            label_box(
                picture,
                f"{'FP ' if i in false_alarms else ''}{d['category']} {d['score']:.2f}",
                corners[:2],
                colour,
                0.4 * line,
                max(1, line // 2),
            )
        label_box(
            picture,
            "dashed white: ground truth   solid: detections   MISS / FP: errors",
            (0, 0),
            (40, 40, 40),
            0.5 * line,
            max(1, line // 2),
            below=True,
        )
        path = out_dir / f"{image_id}.jpg"
        cv2.imwrite(str(path), picture, [cv2.IMWRITE_JPEG_QUALITY, 90])
        written.append(path)
    return written


def _corners(box: Sequence[float], scale: float) -> tuple[int, int, int, int]:
    """XML-frame box -> pixel corners of the scaled picture."""
    x1, y1, x2, y2 = box
    return round((x1 - 1) * scale), round((y1 - 1) * scale), round(x2 * scale), round(y2 * scale)


def _dashed_rectangle(
    picture: np.ndarray, corners: tuple[int, int, int, int], colour: tuple[int, int, int], thickness: int, dash: int = 6
) -> None:
    x1, y1, x2, y2 = corners
    for a, b in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = max(abs(b[0] - a[0]), abs(b[1] - a[1]), 1)
        for start in range(0, length, 2 * dash):
            end = min(start + dash, length)
            p = (a[0] + (b[0] - a[0]) * start // length, a[1] + (b[1] - a[1]) * start // length)
            q = (a[0] + (b[0] - a[0]) * end // length, a[1] + (b[1] - a[1]) * end // length)
            cv2.line(picture, p, q, colour, thickness)
