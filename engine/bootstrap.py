"""How sure a VOC AP is: intervals from a bootstrap over clusters of pictures (scenes, recordings), not over boxes.

The frames of one scene show the same objects on the same asphalt, so they are found or missed together: the
unit that varies from one data set to the next is the cluster (:func:`dataset.splits.clusters`), not the box.
A resample draws as many clusters as there are, with replacement; a picture drawn k times counts k times (each
copy a picture of its own, its objects and detections k times over). The 90% interval is the 5th to 95th
percentile of a figure over the resamples.

Matching is per picture, so a detection is a true or false positive in every copy as in the data set itself:
the matches are made once (:func:`engine.metrics.match_detections`' rules) and a resample only weights them.
A run of k identical copies moves recall and precision as one step of weight k, so the weighted AP equals the
AP of the copies exactly, under both interpolations. Detections of equal score keep the data set's order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from dataset import GroundTruth

from .metrics import METRICS, Detection, _by_class_and_score, _match

LEVEL = 0.9
RESAMPLES = 1000
_VOC07_RECALLS = np.arange(0.0, 1.1, 0.1)  # the devkit's, as engine.metrics.voc_ap takes them
_CELLS = 4_000_000  # resamples x detections weighed at once: memory in tens of MB


@dataclass(frozen=True)
class Matches:
    """Detections matched once, those ignored on difficult objects left out: per detection, sorted by class then
    descending score, ``image`` [D] (index in the ground truth's order), ``label`` [D] (0-based class) and
    ``tp`` [D] (else a false positive); ``objects`` [N, C] the non-difficult objects of each picture and class."""

    image: np.ndarray
    label: np.ndarray
    tp: np.ndarray
    objects: np.ndarray


def match_once(
    detections: Iterable[Detection], ground_truth: GroundTruth, classes: Sequence[str], iou_threshold: float = 0.5
) -> Matches:
    """The VOC matches of ``detections`` on ``ground_truth``, as :func:`engine.metrics.evaluate_detections`
    makes them."""
    _, image, label, boxes, _ = _by_class_and_score(detections, ground_truth, classes)
    tp, fp, _, _ = _match(
        image, label, boxes, ground_truth=ground_truth, num_classes=len(classes), iou_threshold=iou_threshold
    )
    counted = tp | fp
    objects = np.zeros((len(ground_truth), len(classes)), dtype=np.int64)
    for i, g in enumerate(ground_truth.values()):
        np.add.at(objects[i], g["labels"][~g["difficult"]].astype(np.int64) - 1, 1)
    return Matches(image[counted], label[counted], tp[counted], objects)


def cluster_draws(cluster: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """How often each picture is drawn in each resample, int64 [R, N], for the pictures' clusters ``cluster``
    [N] (any labels): each resample draws as many clusters as there are, uniformly with replacement."""
    names, index = np.unique(np.asarray(cluster), return_inverse=True)
    k = len(names)
    drawn = np.random.default_rng(seed).multinomial(k, np.full(k, 1.0 / k), size=resamples)
    return drawn[:, index.reshape(-1)]


def resampled_ap(matches: Matches, draws: np.ndarray, metric: str = "voc12") -> np.ndarray:
    """Each class's AP in each resample, float64 [R, C], for the pictures drawn ``draws`` [R, N] times: nan
    where a resample holds no object of the class (as :func:`engine.metrics.evaluate_detections` has it)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    draws = np.asarray(draws, dtype=np.float64)
    num_gt = draws @ matches.objects  # [R, C]
    ap = np.full(num_gt.shape, np.nan)
    bounds = np.searchsorted(matches.label, np.arange(matches.objects.shape[1] + 1))
    for c in range(matches.objects.shape[1]):
        image, tp = matches.image[bounds[c] : bounds[c + 1]], matches.tp[bounds[c] : bounds[c + 1]]
        chunk = max(1, _CELLS // max(len(image), 1))
        for start in range(0, len(draws), chunk):
            rows = slice(start, start + chunk)
            ap[rows, c] = _weighted_ap(draws[rows][:, image], tp, num_gt[rows, c], metric)
    return ap


def _weighted_ap(weight: np.ndarray, tp: np.ndarray, num_gt: np.ndarray, metric: str) -> np.ndarray:
    """AP [R] of detections in score order, each counted ``weight`` [R, D] times (``tp`` [D] true or false
    positive), against ``num_gt`` [R] objects; nan where there are none."""
    hits = weight * tp
    tp_cum = np.cumsum(hits, axis=1)
    fp_cum = np.cumsum(weight * ~tp, axis=1)
    precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # best precision at any higher recall
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "voc07":
            recall = tp_cum / num_gt[:, None]
            first = (recall[:, :, None] < _VOC07_RECALLS).sum(axis=1)  # [R, 11]: first detection reaching each
            padded = np.concatenate([envelope, np.zeros((len(envelope), 1))], axis=1)
            ap = np.take_along_axis(padded, first, axis=1).mean(axis=1)
        else:  # each recall step taken at the envelope's precision, as voc_ap's all-point interpolation
            ap = (hits * envelope).sum(axis=1) / num_gt
    return np.where(num_gt > 0, ap, np.nan)


def mean_ap(ap: np.ndarray) -> np.ndarray:
    """``ap`` [R, C] -> the mean over the classes with objects [R] (nan when none has)."""
    defined = ~np.isnan(ap)
    total = np.where(defined, ap, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore"):
        return np.where(defined.any(axis=1), total / defined.sum(axis=1), np.nan)


def interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` of ``samples`` [R] (resamples where the figure is undefined left out)."""
    tail = (1.0 - level) / 2 * 100
    samples = np.asarray(samples, dtype=np.float64)
    if np.isnan(samples).all():
        return (float("nan"), float("nan"))
    low, high = np.nanpercentile(samples, [tail, 100 - tail])
    return (float(low), float(high))


def bootstrap(
    detections: Iterable[Detection],
    ground_truth: GroundTruth,
    classes: Sequence[str],
    cluster: np.ndarray,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
    iou_threshold: float = 0.5,
    metric: str = "voc12",
) -> dict:
    """The intervals of mAP and each class's AP: ``{"map": (lo, hi), "ap": {class: (lo, hi)}, "clusters": K,
    "resamples": R, "level": level}``, for the pictures of ``ground_truth`` in the clusters ``cluster`` [N]."""
    draws = cluster_draws(cluster, resamples, seed)
    ap = resampled_ap(match_once(detections, ground_truth, classes, iou_threshold), draws, metric)
    return {
        "map": interval(mean_ap(ap), level),
        "ap": {name: interval(ap[:, c], level) for c, name in enumerate(classes)},
        "clusters": len(np.unique(cluster)),
        "resamples": resamples,
        "level": level,
    }


def format_intervals(result: dict, intervals: dict) -> str:
    """A table of each class's AP and mAP beside their intervals (``result``: an evaluation's ``ap`` and ``map``)."""
    tail = (1 - intervals["level"]) / 2 * 100
    names = [*result["ap"], "mAP"]
    values = [*result["ap"].values(), result["map"]]
    bounds = [*intervals["ap"].values(), intervals["map"]]
    width = max(len(n) for n in names)
    lines = [
        f"{intervals['level']:.0%} interval: {intervals['resamples']} resamples of the {intervals['clusters']} "
        "clusters of near-duplicate pictures (whole clusters drawn with replacement)",
        f"{'class':<{width}}  {'AP':>6}  {f'{tail:g}%':>6}  {f'{100 - tail:g}%':>6}",
    ]
    lines += [f"{n:<{width}}  {v:>6.3f}  {lo:>6.3f}  {hi:>6.3f}" for n, v, (lo, hi) in zip(names, values, bounds)]
    return "\n".join(lines)
