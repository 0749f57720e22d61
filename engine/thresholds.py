"""Operating points: per class, the score threshold to deploy with and what it gives (precision, recall, F1).

A threshold ``t`` keeps the detections scoring ``>= t``. The curves come from
:func:`engine.metrics.evaluate_detections` (its per-class precision, recall and scores in descending
score order); a threshold is only ever a score that occurs, taken after the last of its ties.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

PRECISION_TARGETS = (0.90, 0.95)

# The score threshold to deploy with where none was measured: detect.py's default, and the threshold of a class
# without a best-F1 point (no ground truth or no detection in the split evaluated), so that such a class is
# deployed as a model without measured thresholds is. Not the config's score_threshold (0.05): that is the
# evaluation's floor, low so that AP sees the whole precision-recall curve, and deployed it fills a picture
# with false alarms.
FALLBACK_THRESHOLD = 0.3


def curve(result: dict[str, Any], name: str) -> dict[str, np.ndarray]:
    """Class ``name``'s ``threshold``, ``precision``, ``recall`` and ``f1`` at every distinct score (descending)."""
    scores = np.asarray(result["scores"][name], dtype=np.float64)
    precision = np.asarray(result["precision"][name], dtype=np.float64)
    recall = np.asarray(result["recall"][name], dtype=np.float64)
    last_of_ties = np.flatnonzero(np.append(scores[1:] != scores[:-1], True)) if len(scores) else np.zeros(0, int)
    p, r = precision[last_of_ties], recall[last_of_ties]
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
    return {"threshold": scores[last_of_ties], "precision": p, "recall": r, "f1": f1}


def _point(c: dict[str, np.ndarray], i: int | None) -> dict[str, float | None]:
    if i is None:
        return {"threshold": None, "precision": None, "recall": 0.0, "f1": 0.0}
    return {k: float(c[k][i]) for k in ("threshold", "precision", "recall", "f1")}


def operating_points(result: dict[str, Any]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per class: ``best_f1`` (the threshold of the highest F1), and ``precision_0.90`` / ``precision_0.95`` (the
    lowest threshold whose precision reaches it, i.e. the most recall at that precision; threshold None when
    no threshold does). Each gives ``threshold``, ``precision``, ``recall``, ``f1``. Classes without ground
    truth or detections get None thresholds."""
    points = {}
    for name in result["ap"]:
        c = curve(result, name)
        defined = len(c["f1"]) and not math.isnan(c["recall"][0])
        best = int(np.argmax(c["f1"])) if defined else None
        points[name] = {"best_f1": _point(c, best)}
        for target in PRECISION_TARGETS:
            reach = np.flatnonzero(c["precision"] >= target) if defined else []
            points[name][f"precision_{target:.2f}"] = _point(
                c, int(reach[np.argmax(c["recall"][reach])]) if len(reach) else None
            )
    return points


def deploy_thresholds(points: dict[str, Any], classes: tuple[str, ...], fallback: float) -> list[float]:
    """The best-F1 threshold of each class in ``classes`` order, ``fallback`` (:data:`FALLBACK_THRESHOLD` when
    deploying) where a class has none."""
    chosen = []
    for name in classes:
        threshold = points.get(name, {}).get("best_f1", {}).get("threshold")
        chosen.append(fallback if threshold is None else float(threshold))
    return chosen


def read_thresholds(path: str | Path) -> dict[str, Any]:
    """The operating points of a ``thresholds.json`` written by ``eval_voc.py --analysis``."""
    path = Path(path)
    try:
        points = json.loads(path.read_text(encoding="utf-8-sig"))  # Windows tools often write a byte-order mark
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a thresholds JSON file ({err})") from None
    if not isinstance(points, dict) or not all(isinstance(v, dict) and "best_f1" in v for v in points.values()):
        raise ValueError(f"{path}: expected {{class: {{'best_f1': {{'threshold': ...}}, ...}}}}")
    return points
