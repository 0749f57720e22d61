"""PASCAL VOC detection metric (the devkit's rules, vectorised with numpy), COCO AP and the report.

Detections are a list of ``{"image_id": str, "category": str, "score": float, "bbox": [x1, y1, x2, y2]}``
in the VOC XML's own frame (1-based pixel indices). Ground truth is a dict
``image_id -> {"boxes" float [M,4] (XML frame), "labels" int [M] (1..C), "difficult" bool [M]}``.

The rules are those of the VOC devkit and py-faster-rcnn's ``voc_eval``: per class, detections from all
images are taken in descending score order (stable, so ties keep the input order); each is matched to
the ground truth of its image and class with the highest IoU; it is a true positive when that IoU is
above the threshold and the ground truth is not taken yet, a false positive otherwise. A detection
whose best match is a ``difficult`` ground truth is ignored (neither TP nor FP), and difficult ground
truths are not counted. Areas and intersections count inclusive pixels (width = x2 - x1 + 1).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dataset import GroundTruth

Detection = dict[str, Any]

METRICS = ("voc12", "voc07")


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = False) -> float:
    """Average precision from a PR curve ``recall [N]``, ``precision [N]`` (detections in score order).

    ``use_07_metric``: VOC2007's 11-point interpolation (mean over t in 0, 0.1, ..., 1 of the best
    precision at recall >= t); otherwise VOC2010+'s all-point interpolation (area under the
    precision envelope, evaluated where recall changes).
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if use_07_metric:
        thresholds = np.arange(0.0, 1.1, 0.1)  # the devkit's exact values, 0.30000000000000004 included
        reached = recall[None, :] >= thresholds[:, None]
        best = np.where(reached, precision[None, :], -np.inf).max(axis=1, initial=-np.inf)
        return float(np.sum(np.maximum(best, 0.0)) / 11.0)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope: best precision at any higher recall
    change = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[change + 1] - mrec[change]) * mpre[change + 1]))


def _by_class_and_score(
    detections: Iterable[Detection], ground_truth: GroundTruth, classes: Sequence[str]
) -> tuple[np.ndarray, ...]:
    """Detections as arrays sorted by class, then descending score (stable, so ties keep the input order):
    ``order [D]`` (input index of each row), ``image [D]`` (index in ``ground_truth``'s order), ``label [D]``
    (0-based class), ``boxes [D,4]`` and ``scores [D]``.

    Raises ``ValueError`` for a detection whose image is not in ``ground_truth`` or whose category is not in
    ``classes``.
    """
    classes = tuple(classes)
    class_index = {name: i for i, name in enumerate(classes)}
    image_index = {image_id: i for i, image_id in enumerate(ground_truth)}
    detections = list(detections)
    try:
        image = np.array([image_index[d["image_id"]] for d in detections], dtype=np.int64)
    except KeyError as err:
        raise ValueError(f"detection for image {err.args[0]!r}, which is not in the ground truth") from None
    try:
        label = np.array([class_index[d["category"]] for d in detections], dtype=np.int64)
    except KeyError as err:
        raise ValueError(f"detection of category {err.args[0]!r}, which is not one of {classes}") from None
    scores = np.array([d["score"] for d in detections], dtype=np.float64)
    boxes = np.array([d["bbox"] for d in detections], dtype=np.float64).reshape(-1, 4)
    order = np.lexsort((-scores, label))  # lexsort is stable
    return order, image[order], label[order], boxes[order], scores[order]


def _match(
    det_image: np.ndarray,
    det_class: np.ndarray,
    det_boxes: np.ndarray,
    *,
    ground_truth: GroundTruth,
    num_classes: int,
    iou_threshold: float,
) -> tuple[np.ndarray, ...]:
    """TP/FP flags of detections already sorted by (class, descending score).

    ``det_image [D]`` image indices, ``det_class [D]`` 0-based class, ``det_boxes [D,4]``.
    Returns ``tp [D]`` and ``fp [D]`` bools (both False for a detection ignored on a difficult object),
    ``best_gt [D]`` (the index, in ``ground_truth``'s order of pictures and objects, of the same-class ground
    truth with the highest IoU, -1 when there is none) and ``best_iou [D]`` (-inf when there is none).
    Every detection is paired with every ground truth of its (image, class) group at once; the greedy
    "not yet taken" rule reduces to "first detection, in score order, whose best match is that ground truth"
    because the devkit never re-matches a detection to its second-best ground truth.
    """
    gt_boxes = [g["boxes"] for g in ground_truth.values()]
    gt_labels = [g["labels"] for g in ground_truth.values()]
    gt_difficult = [g["difficult"] for g in ground_truth.values()]
    counts = np.array([len(b) for b in gt_labels], dtype=np.int64)
    gt_image = np.repeat(np.arange(len(ground_truth), dtype=np.int64), counts)
    boxes = np.concatenate(gt_boxes).astype(np.float64).reshape(-1, 4) if len(gt_boxes) else np.zeros((0, 4))
    labels = np.concatenate(gt_labels).astype(np.int64) if len(gt_labels) else np.zeros(0, np.int64)
    difficult = np.concatenate(gt_difficult).astype(bool) if len(gt_difficult) else np.zeros(0, bool)
    # ground truth grouped by (image, class), XML order kept inside a group (np.argmax takes the first best)
    gt_key = gt_image * num_classes + (labels - 1)
    order = np.argsort(gt_key, kind="stable")
    gt_key, boxes, difficult = gt_key[order], boxes[order], difficult[order]

    det_key = det_image * num_classes + det_class
    start = np.searchsorted(gt_key, det_key, side="left")
    count = np.searchsorted(gt_key, det_key, side="right") - start
    # all (detection, ground truth) pairs of the same group, detection-major
    pair_det = np.repeat(np.arange(len(det_key)), count)
    pair_gt = np.repeat(start, count) + np.arange(len(pair_det)) - np.repeat(np.cumsum(count) - count, count)

    d, g = det_boxes[pair_det], boxes[pair_gt]
    iw = np.maximum(np.minimum(d[:, 2], g[:, 2]) - np.maximum(d[:, 0], g[:, 0]) + 1.0, 0.0)
    ih = np.maximum(np.minimum(d[:, 3], g[:, 3]) - np.maximum(d[:, 1], g[:, 1]) + 1.0, 0.0)
    inter = iw * ih
    union = (
        (d[:, 2] - d[:, 0] + 1.0) * (d[:, 3] - d[:, 1] + 1.0)
        + (g[:, 2] - g[:, 0] + 1.0) * (g[:, 3] - g[:, 1] + 1.0)
        - inter
    )
    iou = inter / union

    # best ground truth per detection (first one on ties), -inf where the group is empty
    best_iou = np.full(len(det_key), -np.inf)
    np.maximum.at(best_iou, pair_det, iou)
    is_best = np.flatnonzero(iou == best_iou[pair_det])
    first_det, first = np.unique(pair_det[is_best], return_index=True)
    best_gt = np.full(len(det_key), -1, dtype=np.int64)
    best_gt[first_det] = pair_gt[is_best[first]]

    hit = best_iou > iou_threshold
    ignored = np.zeros(len(det_key), dtype=bool)
    ignored[hit] = difficult[best_gt[hit]]
    claim = np.flatnonzero(hit & ~ignored)
    _, first_claim = np.unique(best_gt[claim], return_index=True)  # np.unique keeps the earliest index
    tp = np.zeros(len(det_key), dtype=bool)
    tp[claim[first_claim]] = True
    fp = ~tp & ~ignored
    best_gt = np.where(best_gt >= 0, order[best_gt] if len(order) else -1, -1)  # back to ground_truth's order
    return tp, fp, best_gt, best_iou


def evaluate_detections(
    detections: Iterable[Detection],
    ground_truth: GroundTruth,
    classes: Sequence[str],
    iou_threshold: float = 0.5,
    metric: str = "voc12",
    *,
    size_range: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """VOC AP per class and their mean; with ``size_range`` (lo, hi], of the objects of that size only.

    Returns ``{"ap": {cls: float}, "map": float, "num_gt": {cls: int}, "precision": {cls: [N]},
    "recall": {cls: [N]}, "scores": {cls: [N]}}`` where N is the number of the class's detections that are
    not ignored, in descending score order (precision and recall of keeping the first k, their scores),
    and ``num_gt`` counts the non-difficult ground truths.

    A class without (non-difficult) ground truth has an undefined recall: py-faster-rcnn divides 0 by 0
    there (AP nan when the class has detections, 0 when it has none, and then a nan mAP). Here such a
    class always gets AP ``nan`` and a ``nan`` recall curve, and is left out of the mean (like
    mmdetection's ``eval_map``); ``map`` is nan only when no class has ground truth.

    ``size_range`` bounds :func:`box_size` (pixels of the XML's frame): objects outside it count as difficult
    (neither found nor missed), and a detection outside it that finds no object is ignored rather than a false
    alarm: the rule of COCO's ``areaRng``.

    Raises ``ValueError`` for a detection whose image is not in ``ground_truth`` or whose category is
    not in ``classes``.
    """
    if size_range is not None:
        ground_truth = {
            image_id: {**g, "difficult": g["difficult"] | ~_within(box_size(g["boxes"]), size_range)}
            for image_id, g in ground_truth.items()
        }
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    classes = tuple(classes)
    _, det_image, det_class, det_boxes, det_score = _by_class_and_score(detections, ground_truth, classes)
    tp, fp, _, _ = _match(
        det_image,
        det_class,
        det_boxes,
        ground_truth=ground_truth,
        num_classes=len(classes),
        iou_threshold=iou_threshold,
    )
    if size_range is not None:
        fp &= _within(box_size(det_boxes), size_range)

    num_gt = np.zeros(len(classes), dtype=np.int64)
    for g in ground_truth.values():
        np.add.at(num_gt, g["labels"][~g["difficult"]].astype(np.int64) - 1, 1)
    bounds = np.searchsorted(det_class, np.arange(len(classes) + 1))
    result: dict[str, Any] = {"ap": {}, "map": math.nan, "num_gt": {}, "precision": {}, "recall": {}, "scores": {}}
    for c, name in enumerate(classes):
        keep = slice(bounds[c], bounds[c + 1])
        counted = tp[keep] | fp[keep]
        tp_cum = np.cumsum(tp[keep][counted], dtype=np.float64)
        fp_cum = np.cumsum(fp[keep][counted], dtype=np.float64)
        precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
        if num_gt[c] > 0:
            recall = tp_cum / num_gt[c]
            ap = voc_ap(recall, precision, use_07_metric=metric == "voc07")
        else:
            recall, ap = np.full(len(precision), np.nan), math.nan
        result["ap"][name] = ap
        result["num_gt"][name] = int(num_gt[c])
        result["precision"][name] = precision
        result["scores"][name] = det_score[keep][counted]
        result["recall"][name] = recall
    defined = [ap for ap in result["ap"].values() if not math.isnan(ap)]
    if defined:
        result["map"] = float(np.mean(defined))
    return result


def box_size(boxes: np.ndarray) -> np.ndarray:
    """``boxes [N,4]`` (inclusive pixel indices) -> ``[N]`` the square root of their areas in pixels, COCO's
    measure of an object's size."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.sqrt((boxes[:, 2] - boxes[:, 0] + 1.0) * (boxes[:, 3] - boxes[:, 1] + 1.0))


def _within(sizes: np.ndarray, size_range: tuple[float, float]) -> np.ndarray:
    lo, hi = size_range
    return (sizes > lo) & (sizes <= hi)


def size_bins(ground_truth: GroundTruth, edges: Sequence[float] | None = None) -> list[tuple[float, float]]:
    """Size ranges (lo, hi] from the ``edges`` between them; without edges, the terciles of the sizes of the
    split's (non-difficult) objects, so each bin holds a third of them."""
    if edges is None:
        sizes = np.concatenate([box_size(g["boxes"])[~g["difficult"]] for g in ground_truth.values()] or [[]])
        edges = np.quantile(sizes, [1 / 3, 2 / 3]).tolist() if len(sizes) else []
    bounds = [0.0, *(float(e) for e in edges), math.inf]
    return list(zip(bounds[:-1], bounds[1:]))


def evaluate_by_size(
    detections: Sequence[Detection],
    ground_truth: GroundTruth,
    classes: Sequence[str],
    bins: Sequence[tuple[float, float]],
    *,
    iou_threshold: float = 0.5,
    metric: str = "voc12",
) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_detections` for each size bin, keyed ``"lo-hi"`` (pixels)."""
    return {
        f"{lo:.0f}-{hi:.0f}": evaluate_detections(
            detections, ground_truth, classes, iou_threshold, metric, size_range=(lo, hi)
        )
        for lo, hi in bins
    }


def format_by_size(by_size: dict[str, dict[str, Any]]) -> str:
    """One row per size bin: its objects counted and each class's AP, then the mean."""
    classes = list(next(iter(by_size.values()))["ap"]) if by_size else []
    width = max([12] + [len(name) for name in by_size])
    lines = [f"{'size (px)':<{width}}  {'objects':>7}  " + "  ".join(f"{c:>7}" for c in classes) + f"  {'mAP':>6}"]
    for name, result in by_size.items():
        aps = "  ".join(f"{result['ap'][c]:>7.3f}" for c in classes)
        lines.append(f"{name:<{width}}  {sum(result['num_gt'].values()):>7d}  {aps}  {result['map']:>6.3f}")
    return "\n".join(lines)


def match_detections(
    detections: Sequence[Detection], ground_truth: GroundTruth, classes: Sequence[str], iou_threshold: float = 0.5
) -> dict[str, np.ndarray]:
    """How each detection fares under the VOC rules, in the input's order: ``tp``, ``fp`` [D] bools (both False
    when ignored on a difficult object), ``gt`` [D] (index of the best same-class ground truth in
    ``ground_truth``'s order of pictures and objects, -1 for none) and ``iou`` [D] (its IoU, 0 for none)."""
    order, det_image, det_class, det_boxes, _ = _by_class_and_score(detections, ground_truth, classes)
    tp, fp, gt, iou = _match(
        det_image,
        det_class,
        det_boxes,
        ground_truth=ground_truth,
        num_classes=len(classes),
        iou_threshold=iou_threshold,
    )
    result = {"tp": tp, "fp": fp, "gt": gt, "iou": np.maximum(iou, 0.0)}
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return {k: v[back] for k, v in result.items()}


def validate_detections(
    detections: Any, ground_truth_ids: Iterable[str], classes: Sequence[str], source: str = "FILE"
) -> None:
    """Check ``detections`` against the contract; raise ``ValueError`` naming ``source`` and the entry.

    Each entry must be a dict with ``image_id`` (a string, one of ``ground_truth_ids``), ``category`` (a string,
    one of ``classes``), a finite number ``score`` and ``bbox``: 4 finite numbers with x2 >= x1 and y2 >= y1.
    """
    if not isinstance(detections, list):
        raise ValueError(f"{source}: expected a JSON list of detections, got {type(detections).__name__}")
    ids = set(ground_truth_ids)
    classes = tuple(classes)
    names = set(classes)

    def is_number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    for i, det in enumerate(detections):
        where = f"{source}: detection {i}"
        if not isinstance(det, dict):
            raise ValueError(f"{where}: expected an object with image_id, category, score, bbox; got {det!r}")
        missing = [k for k in ("image_id", "category", "score", "bbox") if k not in det]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        if not is_number(det["score"]):
            raise ValueError(f"{where}: score must be a finite number, got {det['score']!r}")
        bbox = det["bbox"]
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(is_number(v) for v in bbox)):
            raise ValueError(f"{where}: bbox must be 4 finite numbers [x1, y1, x2, y2], got {bbox!r}")
        if bbox[2] < bbox[0] or bbox[3] < bbox[1]:
            raise ValueError(f"{where}: bbox {bbox!r} has x2 < x1 or y2 < y1")
        for key in ("image_id", "category"):
            if not isinstance(det[key], str):
                raise ValueError(f"{where}: {key} must be a string, got {det[key]!r}")
        if det["image_id"] not in ids:
            raise ValueError(f"{where}: image {det['image_id']!r} is not in the split")
        if det["category"] not in names:
            raise ValueError(f"{where}: category {det['category']!r} is not one of {', '.join(classes)}")


def coco_metrics(
    detections: Iterable[Detection], ground_truth: GroundTruth, classes: Sequence[str]
) -> dict[str, float]:
    """COCO ``AP@[.5:.95]``, ``AP@.5`` and AP small, medium and large (COCO's areas, below 32x32 pixels, up to
    96x96 and above; pycocotools, objects built in memory).

    Boxes become ``[x, y, w, h]`` of the pixels they cover (``x = xmin - 1``, ``w = xmax - xmin + 1``), so
    COCO's IoU equals the VOC rule's inclusive-pixel IoU. Difficult ground truths are
    marked ``iscrowd`` so that, as in the VOC rules, detecting them is neither rewarded nor penalised.
    Both values are nan when there is no ground truth at all.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    class_ids = {name: i + 1 for i, name in enumerate(classes)}
    image_ids = {image_id: i + 1 for i, image_id in enumerate(ground_truth)}
    images = [{"id": i} for i in image_ids.values()]
    categories = [{"id": i, "name": name} for name, i in class_ids.items()]

    def xywh(box: Sequence[float]) -> list[float]:
        x1, y1, x2, y2 = (float(v) for v in box)
        return [x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1]

    gt_annotations = []
    for image_id, g in ground_truth.items():
        for box, label, difficult in zip(g["boxes"], g["labels"], g["difficult"]):
            bbox = xywh(box)
            gt_annotations.append(
                {
                    "id": len(gt_annotations) + 1,
                    "image_id": image_ids[image_id],
                    "category_id": int(label),
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": int(bool(difficult)),
                }
            )
    dt_annotations = []
    for d in detections:
        bbox = xywh(d["bbox"])
        dt_annotations.append(
            {
                "id": len(dt_annotations) + 1,
                "image_id": image_ids[d["image_id"]],
                "category_id": class_ids[d["category"]],
                "bbox": bbox,
                "area": bbox[2] * bbox[3],
                "score": float(d["score"]),
                "iscrowd": 0,
            }
        )
    if not gt_annotations:
        return dict.fromkeys(("AP@[.5:.95]", "AP@.5", "AP small", "AP medium", "AP large"), math.nan)

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_gt, coco_dt = COCO(), COCO()
        coco_gt.dataset = {"images": images, "categories": categories, "annotations": gt_annotations}
        coco_dt.dataset = {"images": images, "categories": categories, "annotations": dt_annotations}
        coco_gt.createIndex()
        coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ap, ap50, _, small, medium, large = (float(v) if v >= 0 else math.nan for v in evaluator.stats[:6])
    return {"AP@[.5:.95]": ap, "AP@.5": ap50, "AP small": small, "AP medium": medium, "AP large": large}


def format_results(result: dict[str, Any]) -> str:
    """The original's report (``ap for CLASS is X`` with the float's full repr, ``mAP=====>0.xxx``),
    then a table of class, ground-truth count, detections counted and AP."""
    lines = ["all classes AP=====>", ""]
    lines += [f"ap for {name} is {float(ap)!r}" for name, ap in result["ap"].items()]
    lines += [f"mAP=====>{result['map']:.3f}", ""]
    width = max([5] + [len(name) for name in result["ap"]])
    lines.append(f"{'class':<{width}}  {'gt':>6}  {'dets':>6}  {'AP':>6}")
    for name, ap in result["ap"].items():
        lines.append(f"{name:<{width}}  {result['num_gt'][name]:>6d}  {len(result['precision'][name]):>6d}  {ap:>6.3f}")
    lines.append(
        f"{'mean':<{width}}  {sum(result['num_gt'].values()):>6d}  "
        f"{sum(len(p) for p in result['precision'].values()):>6d}  {result['map']:>6.3f}"
    )
    return "\n".join(lines)


def load_detections(path: str | Path, ground_truth_ids: Iterable[str], classes: Sequence[str]) -> list[Detection]:
    """Read and check a detections JSON file; ``ValueError`` (or ``OSError``) naming the file when it breaks
    the contract."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not a detections JSON file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: detections file not found")
    try:
        detections = json.loads(path.read_text(encoding="utf-8-sig"))  # Windows tools often write a BOM
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a JSON text file (binary content)") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    validate_detections(detections, ground_truth_ids, classes, source=str(path))
    return detections
