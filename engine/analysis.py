"""What to deploy with: confusion matrix, operating points, the list of errors and how boxes fit the objects, and
``eval_voc.py --analysis``.

All of it from one evaluation's detections (the XML frame) and ground truth. A detection counts when its
score reaches the threshold: one number, or per class (``"auto"``: each class's best-F1 threshold).
Difficult objects are left out of the confusion matrix and the error list. The pictures (figures and
error pictures) are drawn by :mod:`engine.analysis_pictures`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

from dataset import GroundTruth, xml_to_pixels

from .analysis_pictures import draw_errors, plot_confusion, plot_threshold_curves
from .metrics import Detection, box_size, match_detections
from .thresholds import FALLBACK_THRESHOLD, PRECISION_TARGETS, curve, deploy_thresholds, operating_points

# detection_index: the false alarm's place in the detections evaluated; object_index: the missed object's
# place in its picture's annotation (XML order, difficult objects included)
ERROR_FIELDS = (
    "image_id",
    "kind",
    "category",
    "x1",
    "y1",
    "x2",
    "y2",
    "score",
    "best_iou",
    "cause",
    "detection_index",
    "object_index",
)

FIT_FIELDS = ("image_id", "category", "object_index", "size", "best_iou", "width_ratio", "height_ratio")
PLACED_IOU = 0.1  # a box overlapping its object less than this did not find it (errors.csv's localisation bound)


def reaching_threshold(
    detections: Sequence[Detection], classes: Sequence[str], threshold: float | Sequence[float]
) -> list[int]:
    """Indices of the detections whose score reaches ``threshold`` (one number, or one per class in ``classes``
    order)."""
    per_class = dict(zip(classes, threshold)) if isinstance(threshold, (list, tuple)) else None
    return [i for i, d in enumerate(detections) if d["score"] >= (per_class[d["category"]] if per_class else threshold)]


def _pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [A, B] of XML-frame boxes (inclusive pixels)."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    return box_iou(
        xml_to_pixels(torch.as_tensor(a, dtype=torch.float64)), xml_to_pixels(torch.as_tensor(b, dtype=torch.float64))
    ).numpy()


def _by_image(
    detections: Sequence[Detection], counted: Sequence[int], classes: Sequence[str]
) -> dict[str, tuple[np.ndarray, ...]]:
    """image_id -> (boxes [D,4], labels [D] 1..C, indices [D] into ``detections``) of the ``counted``
    detections. A picture without any gets empty arrays."""
    class_ids = {name: k for k, name in enumerate(classes, start=1)}
    grouped: dict[str, list[int]] = {}
    for i in counted:
        grouped.setdefault(detections[i]["image_id"], []).append(i)
    return {
        image_id: (
            np.array([detections[i]["bbox"] for i in idx], dtype=np.float64).reshape(-1, 4),
            np.array([class_ids[detections[i]["category"]] for i in idx], dtype=np.int64),
            np.array(idx, dtype=np.int64),
        )
        for image_id, idx in grouped.items()
    }


_NONE = (np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, np.int64))


def confusion_matrix(
    detections: Sequence[Detection],
    ground_truth: GroundTruth,
    classes: Sequence[str],
    *,
    score_threshold: float | Sequence[float] = 0.0,
    iou_threshold: float = 0.5,
) -> np.ndarray:
    """Counts ``[C+1, C+1]`` of the detections reaching ``score_threshold``: rows the true class (last:
    background, i.e. false alarms), columns the predicted class (last: background, i.e. missed objects). In each
    picture, ground truth and detections are paired one to one by IoU above ``iou_threshold``, best IoU first,
    whatever their classes."""
    num_classes = len(classes)
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    by_image = _by_image(detections, reaching_threshold(detections, classes, score_threshold), classes)
    for image_id, gt in ground_truth.items():
        gt_boxes, gt_labels = gt["boxes"][~gt["difficult"]], gt["labels"][~gt["difficult"]]
        det_boxes, det_labels, _ = by_image.get(image_id, _NONE)
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
    detections: Sequence[Detection],
    ground_truth: GroundTruth,
    classes: Sequence[str],
    *,
    score_threshold: float | Sequence[float] = 0.0,
    iou_threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """Every miss and false alarm of the detections reaching ``score_threshold``, under the VOC rules, with a
    likely cause: rows of :data:`ERROR_FIELDS`, a false alarm with its ``detection_index`` in ``detections``, a
    miss with its ``object_index`` in its picture's ground truth.

    A false alarm's cause: ``duplicate`` (its object was already found), ``localisation`` (it overlaps an
    object of its class, IoU 0.1 to the threshold), ``confusion`` (it covers an object of another class) or
    ``background``. A miss's: ``localisation`` (a detection of its class overlaps it, IoU >= 0.1),
    ``confusion`` (detected as another class) or ``missed``.
    """
    counted = reaching_threshold(detections, classes, score_threshold)
    match = match_detections([detections[i] for i in counted], ground_truth, classes, iou_threshold)
    false_alarm = set(np.asarray(counted, dtype=np.int64)[match["fp"]].tolist())
    offsets = np.cumsum([0] + [len(g["labels"]) for g in ground_truth.values()])
    found = set(match["gt"][match["tp"]].tolist())
    by_image = _by_image(detections, counted, classes)
    rows: list[dict[str, Any]] = []
    for k, (image_id, gt) in enumerate(ground_truth.items()):
        det_boxes, det_labels, det_index = by_image.get(image_id, _NONE)
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
            name = classes[gt["labels"][j] - 1]
            rows.append(_row(image_id, "miss", name, gt["boxes"][j], None, best_same, cause, object_index=j))
        for col, i in enumerate(det_index.tolist()):
            if i not in false_alarm:
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
            rows.append(
                _row(image_id, "false_alarm", d["category"], d["bbox"], d["score"], best_same, cause, detection_index=i)
            )
    return rows


def box_fit(
    detections: Sequence[Detection],
    ground_truth: GroundTruth,
    classes: Sequence[str],
    *,
    score_threshold: float | Sequence[float] = 0.0,
) -> list[dict[str, Any]]:
    """How the boxes fit the objects: for each labelled object (difficult ones left out), the detection of its
    class reaching ``score_threshold`` that overlaps it most. Rows of :data:`FIT_FIELDS`, in the ground truth's
    order: its ``size`` (:func:`engine.metrics.box_size`), ``best_iou``, and that box's width and height over
    the object's; an object no box overlaps by :data:`PLACED_IOU` has empty ratios."""
    by_image = _by_image(detections, reaching_threshold(detections, classes, score_threshold), classes)
    rows: list[dict[str, Any]] = []
    for image_id, gt in ground_truth.items():
        kept = np.flatnonzero(~gt["difficult"])
        boxes, labels = gt["boxes"][kept].astype(np.float64).reshape(-1, 4), gt["labels"][kept]
        det_boxes, det_labels, _ = by_image.get(image_id, _NONE)
        iou = np.where(labels[:, None] == det_labels[None, :], _pairwise_iou(boxes, det_boxes), 0.0)
        best_iou = iou.max(axis=1, initial=0.0)
        best = det_boxes[iou.argmax(axis=1)] if det_boxes.size else np.zeros_like(boxes)
        ratios = (best[:, 2:] - best[:, :2] + 1.0) / (boxes[:, 2:] - boxes[:, :2] + 1.0)
        sizes = box_size(boxes)
        for j, index in enumerate(kept.tolist()):
            placed = best_iou[j] >= PLACED_IOU
            rows.append(
                {
                    "image_id": image_id,
                    "category": classes[labels[j] - 1],
                    "object_index": index,
                    "size": float(sizes[j]),
                    "best_iou": float(best_iou[j]),
                    "width_ratio": float(ratios[j, 0]) if placed else "",
                    "height_ratio": float(ratios[j, 1]) if placed else "",
                }
            )
    return rows


def summarise_fit(
    rows: Sequence[dict[str, Any]], classes: Sequence[str], bins: Sequence[tuple[float, float]]
) -> dict[str, dict[str, float]]:
    """:func:`box_fit`'s rows by size bin (keyed ``"lo-hi px"``, ranges (lo, hi]) and by class: ``objects``,
    ``placed`` (the share a box overlaps by :data:`PLACED_IOU`), and over those the median IoU, the share below
    IoU 0.5 (found, but not counted by AP at 0.5) and the median width and height ratios (NaN where none)."""
    groups = {f"{lo:.0f}-{hi:.0f} px": [r for r in rows if lo < r["size"] <= hi] for lo, hi in bins}
    groups.update({name: [r for r in rows if r["category"] == name] for name in classes})
    summary = {}
    for name, members in groups.items():
        placed = [r for r in members if r["width_ratio"] != ""]
        iou = np.array([r["best_iou"] for r in placed])
        summary[name] = {
            "objects": len(members),
            "placed": len(placed) / len(members) if members else math.nan,
            "median_iou": _median(iou),
            "below_0.5": float(np.mean(iou < 0.5)) if placed else math.nan,
            "width_ratio": _median([r["width_ratio"] for r in placed]),
            "height_ratio": _median([r["height_ratio"] for r in placed]),
        }
    return summary


def _median(values: Sequence[float] | np.ndarray) -> float:
    return float(np.median(values)) if len(values) else math.nan


def format_fit(summary: dict[str, dict[str, float]]) -> str:
    """:func:`summarise_fit` as a table, one row per size bin and class."""
    width = max([14, *map(len, summary)])
    lines = [
        f"{'objects':<{width}}  {'count':>5}  {'placed':>6}  {'median IoU':>10}  {'IoU<0.5':>7}  {'width':>5}  height"
    ]
    for name, s in summary.items():
        lines.append(
            f"{name:<{width}}  {s['objects']:>5d}  {s['placed']:>6.2f}  {s['median_iou']:>10.2f}  "
            f"{s['below_0.5']:>7.2f}  {s['width_ratio']:>5.2f}  {s['height_ratio']:>6.2f}"
        )
    return "\n".join(lines)


def _row(
    image_id: str,
    kind: str,
    category: str,
    box: Sequence[float],
    score: float | None,
    iou: float,
    cause: str,
    *,
    detection_index: int | None = None,
    object_index: int | None = None,
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
        "detection_index": detection_index,
        "object_index": object_index,
    }


def write_confusion_csv(matrix: np.ndarray, classes: Sequence[str], path: Path) -> None:
    """The confusion matrix as counts, then as shares of each row."""
    names = [*classes, "background"]
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted (counts)", *names])
        writer.writerows([name, *row] for name, row in zip(names, matrix.tolist()))
        writer.writerow([])
        writer.writerow(["true \\ predicted (share of the row)", *names])
        writer.writerows([name, *(f"{v:.3f}" for v in row)] for name, row in zip(names, normalised))


def write_thresholds_csv(result: dict[str, Any], path: Path) -> None:
    """Class, threshold, precision, recall and F1 at every distinct score of each class."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["category", "threshold", "precision", "recall", "f1"])
        for name in result["ap"]:
            c = curve(result, name)
            writer.writerows(
                [name, *(f"{c[key][i]:.6f}" for key in ("threshold", "precision", "recall", "f1"))]
                for i in range(len(c["threshold"]))
            )


def write_rows_csv(rows: Sequence[dict[str, Any]], fields: Sequence[str], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)


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
    *,
    ground_truth: GroundTruth,
    classes: Sequence[str],
    out_dir: Path,
    images_dir: Path,
    score_threshold: float | str = "auto",
    iou_threshold: float = 0.5,
    worst: int = 12,
    size_bins: Sequence[tuple[float, float]] = ((0.0, math.inf),),
) -> dict[str, Any]:
    """Write everything of ``eval_voc.py --analysis`` into ``out_dir`` and print the operating points and the
    box fit (by ``size_bins``, as :func:`engine.metrics.size_bins` makes them); returns them, the errors and the
    threshold used. ``result``: :func:`engine.metrics.evaluate_detections`' of ``detections``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    points = operating_points(result)
    (out_dir / "thresholds.json").write_text(json.dumps(points, indent=2))
    write_thresholds_csv(result, out_dir / "thresholds.csv")
    plot_threshold_curves(result, out_dir / "pr_f1.png")
    if score_threshold == "auto":
        threshold = deploy_thresholds(points, tuple(classes), FALLBACK_THRESHOLD)
    else:
        threshold = float(score_threshold)
    matrix = confusion_matrix(detections, ground_truth, classes, score_threshold=threshold, iou_threshold=iou_threshold)
    write_confusion_csv(matrix, classes, out_dir / "confusion_matrix.csv")
    plot_confusion(matrix, classes, out_dir / "confusion_matrix.png")
    errors = error_list(detections, ground_truth, classes, score_threshold=threshold, iou_threshold=iou_threshold)
    write_rows_csv(errors, ERROR_FIELDS, out_dir / "errors.csv")
    pictures = draw_errors(
        errors,
        detections,
        ground_truth=ground_truth,
        classes=classes,
        shown=reaching_threshold(detections, classes, threshold),
        images_dir=images_dir,
        out_dir=out_dir / "errors",
        worst=worst,
    )
    fit = box_fit(detections, ground_truth, classes, score_threshold=threshold)
    rounded = [{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()} for row in fit]
    write_rows_csv(rounded, FIT_FIELDS, out_dir / "box_fit.csv")
    fit_summary = summarise_fit(fit, classes, size_bins)
    described = "each class's best-F1 threshold" if score_threshold == "auto" else f"score threshold {threshold:g}"
    print(
        f"\noperating points (IoU {iou_threshold:g}; precision targets {', '.join(map(str, PRECISION_TARGETS))} in "
        f"thresholds.json):\n{format_points(points)}"
    )
    print(
        f"\nat {described}: {sum(r['kind'] == 'miss' for r in errors)} misses and "
        f"{sum(r['kind'] == 'false_alarm' for r in errors)} false alarms (errors.csv); {len(pictures)} pictures in "
        f"{out_dir / 'errors'}; confusion_matrix.png, pr_f1.png, thresholds.csv in {out_dir}"
    )
    print(
        f"\nhow boxes fit their objects at {described} (box_fit.csv): the share of objects a box of their class "
        f"overlaps by {PLACED_IOU:g} or more, and for those the median IoU, the share below 0.5 and the median "
        f"width and height over the label's:\n{format_fit(fit_summary)}"
    )
    return {"points": points, "errors": errors, "threshold": threshold, "box_fit": fit_summary}
