"""What to deploy with: confusion matrix, precision/recall/F1 against the threshold, operating points, errors.

All of it from one evaluation's detections (the XML frame) and ground truth. A detection counts when its
score reaches the threshold: one number, or per class (``"auto"``: each class's best-F1 threshold).
Difficult objects are left out of the confusion matrix and the error list.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou

from dataset import GroundTruth, xml_to_pixels
from dataset.drawing import class_colour, label_box

from .metrics import Detection, match_detections
from .plots import new_figure, save_figure
from .thresholds import FALLBACK_THRESHOLD, PRECISION_TARGETS, curve, deploy_thresholds, operating_points

ERROR_FIELDS = ("image_id", "kind", "category", "x1", "y1", "x2", "y2", "score", "best_iou", "cause")


def kept(
    detections: Sequence[Detection], classes: Sequence[str], threshold: float | Sequence[float]
) -> list[Detection]:
    """The detections that reach ``threshold`` (one number, or one per class in ``classes`` order)."""
    per_class = dict(zip(classes, threshold)) if isinstance(threshold, (list, tuple)) else None
    return [d for d in detections if d["score"] >= (per_class[d["category"]] if per_class else threshold)]


def _pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [A, B] of XML-frame boxes (inclusive pixels)."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    return box_iou(
        xml_to_pixels(torch.as_tensor(a, dtype=torch.float64)), xml_to_pixels(torch.as_tensor(b, dtype=torch.float64))
    ).numpy()


def _by_image(detections: Sequence[Detection], class_ids: dict[str, int]) -> dict[str, tuple[np.ndarray, ...]]:
    """image_id -> (boxes [D,4], labels [D] 1..C, scores [D], indices [D] into ``detections``)."""
    grouped: dict[str, list[int]] = {}
    for i, d in enumerate(detections):
        grouped.setdefault(d["image_id"], []).append(i)
    return {
        image_id: (
            np.array([detections[i]["bbox"] for i in idx], dtype=np.float64).reshape(-1, 4),
            np.array([class_ids[detections[i]["category"]] for i in idx], dtype=np.int64),
            np.array([detections[i]["score"] for i in idx], dtype=np.float64),
            np.array(idx),
        )
        for image_id, idx in grouped.items()
    }


def confusion_matrix(
    detections: Sequence[Detection], ground_truth: GroundTruth, classes: Sequence[str], iou_threshold: float = 0.5
) -> np.ndarray:
    """Counts ``[C+1, C+1]``: rows the true class (last: background, i.e. false alarms), columns the predicted
    class (last: background, i.e. missed objects). In each picture, ground truth and detections (already
    thresholded) are paired one to one by IoU above ``iou_threshold``, best IoU first, whatever their classes."""
    num_classes = len(classes)
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    by_image = _by_image(detections, {name: k for k, name in enumerate(classes, start=1)})
    empty = (np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))
    for image_id, gt in ground_truth.items():
        gt_boxes, gt_labels = gt["boxes"][~gt["difficult"]], gt["labels"][~gt["difficult"]]
        det_boxes, det_labels, _, _ = by_image.get(image_id, empty)
        iou = _pairwise_iou(gt_boxes, det_boxes)
        g, d = np.nonzero(iou > iou_threshold)
        order = np.argsort(-iou[g, d], kind="stable")
        g, d = g[order], d[order]
        _, first = np.unique(d, return_index=True)  # each detection keeps its best object
        g, d = g[np.sort(first)], d[np.sort(first)]
        _, first = np.unique(g, return_index=True)  # each object keeps its best detection
        g, d = g[np.sort(first)], d[np.sort(first)]
        np.add.at(matrix, (gt_labels[g] - 1, det_labels[d] - 1), 1)
        np.add.at(matrix, (np.delete(gt_labels, g) - 1, num_classes), 1)
        np.add.at(matrix, (num_classes, np.delete(det_labels, d) - 1), 1)
    return matrix


def error_list(
    detections: Sequence[Detection], ground_truth: GroundTruth, classes: Sequence[str], iou_threshold: float = 0.5
) -> list[dict[str, Any]]:
    """Every miss and false alarm of (thresholded) ``detections`` under the VOC rules, with a likely cause.

    A false alarm's cause: ``duplicate`` (its object was already found), ``localisation`` (it overlaps an
    object of its class, IoU 0.1 to the threshold), ``confusion`` (it covers an object of another class) or
    ``background``. A miss's: ``localisation`` (a detection of its class overlaps it, IoU >= 0.1),
    ``confusion`` (detected as another class) or ``missed``.
    """
    class_ids = {name: k for k, name in enumerate(classes, start=1)}
    match = match_detections(detections, ground_truth, classes, iou_threshold)
    offsets = np.cumsum([0] + [len(g["labels"]) for g in ground_truth.values()])
    found = set(match["gt"][match["tp"]].tolist())
    by_image = _by_image(detections, class_ids)
    empty = (np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))
    rows: list[dict[str, Any]] = []
    for k, (image_id, gt) in enumerate(ground_truth.items()):
        det_boxes, det_labels, _, det_index = by_image.get(image_id, empty)
        iou = _pairwise_iou(gt["boxes"], det_boxes)
        same = gt["labels"][:, None] == det_labels[None, :]
        for j in range(len(gt["labels"])):  # a picture's objects: a handful
            if gt["difficult"][j] or offsets[k] + j in found:
                continue
            best_same = iou[j][same[j]].max(initial=0.0)
            cause = (
                "localisation"
                if best_same >= 0.1
                else "confusion"
                if iou[j][~same[j]].max(initial=0.0) > iou_threshold
                else "missed"
            )
            rows.append(_row(image_id, "miss", classes[gt["labels"][j] - 1], gt["boxes"][j], None, best_same, cause))
        for col, i in enumerate(det_index):
            if not match["fp"][i]:
                continue
            best_same = iou[:, col][same[:, col]].max(initial=0.0)
            cause = (
                "duplicate"
                if best_same > iou_threshold
                else "localisation"
                if best_same >= 0.1
                else "confusion"
                if iou[:, col][~same[:, col]].max(initial=0.0) > iou_threshold
                else "background"
            )
            d = detections[i]
            rows.append(_row(image_id, "false_alarm", d["category"], d["bbox"], d["score"], best_same, cause))
    return rows


def _row(
    image_id: str, kind: str, category: str, box: Sequence[float], score: float | None, iou: float, cause: str
) -> dict[str, Any]:
    x1, y1, x2, y2 = (round(float(v), 1) for v in box)
    return {
        "image_id": image_id,
        "kind": kind,
        "category": category,
        "x1": x1,
        "y1": y1,
        "x2": x2,
        "y2": y2,
        "score": "" if score is None else round(float(score), 4),
        "best_iou": round(float(iou), 3),
        "cause": cause,
    }


def write_confusion(matrix: np.ndarray, classes: Sequence[str], out_dir: Path) -> None:
    """``confusion_matrix.csv`` (counts, then row-normalised) and ``confusion_matrix.png`` (both in each cell)."""
    names = [*classes, "background"]
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = matrix / np.maximum(rows, 1)
    with open(out_dir / "confusion_matrix.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted (counts)", *names])
        writer.writerows([name, *row] for name, row in zip(names, matrix.tolist()))
        writer.writerow([])
        writer.writerow(["true \\ predicted (share of the row)", *names])
        writer.writerows([name, *(f"{v:.3f}" for v in row)] for name, row in zip(names, normalised))
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
    save_figure(fig, out_dir / "confusion_matrix.png")


def write_curves(result: dict[str, Any], out_dir: Path) -> None:
    """``thresholds.csv`` (class, threshold, precision, recall, F1 at every distinct score) and ``pr_f1.png``."""
    fig = new_figure(13, 4)
    axes = fig.subplots(1, 3)
    with open(out_dir / "thresholds.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["category", "threshold", "precision", "recall", "f1"])
        for k, name in enumerate(result["ap"], start=1):
            c = curve(result, name)
            writer.writerows(
                [name, *(f"{c[key][i]:.6f}" for key in ("threshold", "precision", "recall", "f1"))]
                for i in range(len(c["threshold"]))
            )
            colour = tuple(v / 255 for v in class_colour(k)[::-1])
            for ax, key in zip(axes, ("precision", "recall", "f1")):
                ax.plot(c["threshold"], c[key], color=colour, label=name, lw=1.5)
    for ax, key in zip(axes, ("precision", "recall", "F1")):
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="score threshold", ylabel=key, title=f"{key} against the threshold")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, out_dir / "pr_f1.png")


def draw_errors(
    rows: list[dict[str, Any]],
    detections: Sequence[Detection],
    ground_truth: GroundTruth,
    classes: Sequence[str],
    images_dir: Path,
    out_dir: Path,
    worst: int,
    max_side: int = 1600,
) -> list[Path]:
    """The ``worst`` pictures (most misses and false alarms) with ground truth dashed white and detections
    solid in class colours; errors labelled MISS or FP. Scaled to at most ``max_side`` pixels."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["image_id"]] = counts.get(row["image_id"], 0) + 1
    ranked = sorted(counts, key=lambda i: (-counts[i], i))[:worst]
    class_ids = {name: k for k, name in enumerate(classes, start=1)}
    written = []
    for image_id in ranked:
        picture = cv2.imread(str(images_dir / f"{image_id}.jpg"), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if picture is None:
            continue
        scale = min(1.0, max_side / max(picture.shape[:2]))
        picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else picture
        line = max(1, round(max(picture.shape[:2]) / 600))
        missed = {
            (r["x1"], r["y1"], r["x2"], r["y2"]) for r in rows if r["image_id"] == image_id and r["kind"] == "miss"
        }
        gt = ground_truth[image_id]
        for box, label in zip(gt["boxes"].tolist(), gt["labels"].tolist()):
            corners = _corners(box, scale)
            _dashed_rectangle(picture, corners, (255, 255, 255), line)
            is_miss = tuple(round(v, 1) for v in box) in missed
            text = f"MISS {classes[label - 1]}" if is_miss else classes[label - 1]
            label_box(
                picture,
                text,
                (corners[0], corners[3] + 1),
                (0, 0, 255) if is_miss else (90, 90, 90),
                0.4 * line,
                max(1, line // 2),
                below=True,
            )
        false_alarms = {
            (r["category"], r["x1"], r["y1"]) for r in rows if r["image_id"] == image_id and r["kind"] == "false_alarm"
        }
        for d in detections:
            if d["image_id"] != image_id:
                continue
            corners = _corners(d["bbox"], scale)
            colour = class_colour(class_ids[d["category"]])
            cv2.rectangle(picture, corners[:2], corners[2:], colour, line)
            is_fp = (d["category"], round(d["bbox"][0], 1), round(d["bbox"][1], 1)) in false_alarms
            label_box(
                picture,
                f"{'FP ' if is_fp else ''}{d['category']} {d['score']:.2f}",
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


def format_points(points: dict[str, Any]) -> str:
    """The table printed by ``eval_voc.py --analysis``."""
    width = max([5] + [len(name) for name in points])
    lines = [
        f"{'class':<{width}}  {'best-F1 threshold':>17}  {'precision':>9}  {'recall':>6}  {'F1':>5}  "
        f"{'recall at precision 0.95':>24}"
    ]
    for name, p in points.items():
        best, strict = p["best_f1"], p["precision_0.95"]
        threshold = "-" if best["threshold"] is None else f"{best['threshold']:.3f}"
        precision = "-" if best["precision"] is None else f"{best['precision']:.3f}"
        at_95 = (
            "unreached"
            if strict["threshold"] is None
            else f"{strict['recall']:.3f} (threshold {strict['threshold']:.3f})"
        )
        lines.append(
            f"{name:<{width}}  {threshold:>17}  {precision:>9}  {best['recall']:>6.3f}  {best['f1']:>5.3f}  {at_95:>24}"
        )
    return "\n".join(lines)


def analyse(
    result: dict[str, Any],
    detections: Sequence[Detection],
    ground_truth: GroundTruth,
    classes: Sequence[str],
    out_dir: Path,
    images_dir: Path,
    score_threshold: float | str = "auto",
    iou_threshold: float = 0.5,
    worst: int = 12,
) -> dict[str, Any]:
    """Write everything into ``out_dir`` and print the operating points; returns them and the errors."""
    out_dir.mkdir(parents=True, exist_ok=True)
    points = operating_points(result)
    (out_dir / "thresholds.json").write_text(json.dumps(points, indent=2))
    write_curves(result, out_dir)
    threshold = (
        deploy_thresholds(points, tuple(classes), FALLBACK_THRESHOLD)
        if score_threshold == "auto"
        else float(score_threshold)
    )
    shown = kept(detections, classes, threshold)
    write_confusion(confusion_matrix(shown, ground_truth, classes, iou_threshold), classes, out_dir)
    errors = error_list(shown, ground_truth, classes, iou_threshold)
    with open(out_dir / "errors.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ERROR_FIELDS)
        writer.writeheader()
        writer.writerows(errors)
    pictures = draw_errors(errors, shown, ground_truth, classes, images_dir, out_dir / "errors", worst)
    described = (
        "each class's best-F1 threshold" if score_threshold == "auto" else f"score threshold {float(score_threshold):g}"
    )
    print(
        f"\noperating points (IoU {iou_threshold:g}; precision targets {', '.join(map(str, PRECISION_TARGETS))} in "
        f"thresholds.json):\n{format_points(points)}"
    )
    print(
        f"\nat {described}: {sum(r['kind'] == 'miss' for r in errors)} misses and "
        f"{sum(r['kind'] == 'false_alarm' for r in errors)} false alarms (errors.csv); {len(pictures)} pictures in "
        f"{out_dir / 'errors'}; confusion_matrix.png, pr_f1.png, thresholds.csv in {out_dir}"
    )
    return {"points": points, "errors": errors, "threshold": threshold}
