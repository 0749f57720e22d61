"""The bootstrap over clusters: weighted matches equal scoring the copies, zero width where clusters agree, known
percentiles."""

import numpy as np
import pytest

from engine.bootstrap import bootstrap, cluster_draws, interval, match_once, mean_ap, resampled_ap
from engine.metrics import evaluate_detections

CLASSES = ("nail", "clip_B", "clip_Y")


def random_case(pictures: int, seed: int = 0) -> tuple[dict, list[dict]]:
    """Ground truth and detections of ``pictures`` pictures: most objects found a little off, some missed, some
    difficult, and false alarms; every score distinct."""
    rng = np.random.default_rng(seed)
    ground_truth, detections = {}, []
    for p in range(pictures):
        m = int(rng.integers(0, 4))
        corner = rng.uniform(0, 100, (m, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(10, 30, (m, 2))], axis=1)
        labels = rng.integers(1, len(CLASSES) + 1, m)
        ground_truth[f"p{p}"] = {"boxes": boxes, "labels": labels, "difficult": rng.random(m) < 0.1}
        found = [(box + rng.normal(0, 3, 4), CLASSES[label - 1]) for box, label in zip(boxes, labels)]
        alarms = [(np.r_[c, c + 20], CLASSES[rng.integers(0, 3)]) for c in rng.uniform(0, 100, (2, 2))]
        for box, name in [f for f in found if rng.random() < 0.8] + alarms[: rng.integers(0, 3)]:
            detections.append({"image_id": f"p{p}", "category": name, "score": float(rng.random()), "bbox": list(box)})
    return ground_truth, detections


def copies(ground_truth: dict, detections: list[dict], drawn: np.ndarray) -> tuple[list[dict], dict]:
    """The resample written out, detections and ground truth: picture i ``drawn[i]`` times, each copy an image of
    its own."""
    ids = list(ground_truth)
    times = dict(zip(ids, drawn))
    copied = {f"{i}#{k}": ground_truth[i] for i in ids for k in range(times[i])}
    copied_detections = [
        {**d, "image_id": f"{d['image_id']}#{k}"} for d in detections for k in range(times[d["image_id"]])
    ]
    return copied_detections, copied


@pytest.mark.parametrize("metric", ["voc12", "voc07"])
def test_a_resample_scores_as_its_copies_do(metric):
    ground_truth, detections = random_case(30)
    matches = match_once(detections, ground_truth, CLASSES)
    draws = cluster_draws(np.arange(30) // 3, resamples=6, seed=0)
    ap = resampled_ap(matches, np.vstack([np.ones(30, dtype=np.int64), draws]), metric)
    expected = evaluate_detections(detections, ground_truth, CLASSES, metric=metric)
    assert ap[0] == pytest.approx(list(expected["ap"].values()), abs=1e-12)  # every picture once: the plain score
    for row, drawn in zip(ap[1:], draws):
        expected = evaluate_detections(*copies(ground_truth, detections, drawn), CLASSES, metric=metric)
        assert row == pytest.approx(list(expected["ap"].values()), abs=1e-12, nan_ok=True)
        assert mean_ap(row[None])[0] == pytest.approx(expected["map"], abs=1e-12)


def test_draws_take_whole_clusters_as_many_as_there_are():
    cluster = np.array([5, 5, 5, 2, 9, 9])
    draws = cluster_draws(cluster, resamples=200, seed=3)
    assert draws.shape == (200, 6) and np.array_equal(draws, cluster_draws(cluster, resamples=200, seed=3))
    assert (draws[:, 0] == draws[:, 2]).all() and (draws[:, 4] == draws[:, 5]).all()
    assert (draws[:, [0, 3, 4]].sum(axis=1) == 3).all()  # three clusters drawn in each resample


def test_clusters_alike_give_a_zero_width_interval():
    """Each cluster: two nails, found at 0.9 and 0.7 with a false alarm at 0.8 between: AP 1/2 + 1/2 * 2/3
    in any mixture of such clusters."""
    ground_truth, detections = {}, []
    for p in range(8):
        ground_truth[f"p{p}"] = {
            "boxes": np.array([[10.0, 10, 40, 40], [60, 60, 90, 90]]),
            "labels": np.array([1, 1]),
            "difficult": np.zeros(2, bool),
        }
        for score, box in ((0.9, [10, 10, 40, 40]), (0.8, [200, 200, 230, 230]), (0.7, [60, 60, 90, 90])):
            detections.append({"image_id": f"p{p}", "category": "nail", "score": score, "bbox": box})
    found = bootstrap(detections, ground_truth, CLASSES, np.arange(8) // 2, resamples=100)
    assert found["map"] == pytest.approx((5 / 6, 5 / 6)) and found["ap"]["nail"] == pytest.approx((5 / 6, 5 / 6))
    assert np.isnan(found["ap"]["clip_B"]).all() and (found["clusters"], found["resamples"]) == (4, 100)


def test_a_known_case_gives_its_percentiles():
    """Two clusters, a nail found in one and missed in the other: a resample holds both (AP 1/2, half the time),
    the found one twice (AP 1, a quarter) or the missed one twice (AP 0, a quarter)."""
    ground_truth = {
        image: {"boxes": np.array([[10.0, 10, 40, 40]]), "labels": np.array([1]), "difficult": np.zeros(1, bool)}
        for image in ("found", "missed")
    }
    detections = [{"image_id": "found", "category": "nail", "score": 0.9, "bbox": [10, 10, 40, 40]}]
    draws = cluster_draws(np.array([0, 1]), resamples=2000, seed=0)
    samples = mean_ap(resampled_ap(match_once(detections, ground_truth, CLASSES), draws))
    shares = [np.mean(samples == v) for v in (0.0, 0.5, 1.0)]
    assert shares == pytest.approx([0.25, 0.5, 0.25], abs=0.04)
    assert interval(samples) == (0.0, 1.0) and interval(samples, level=0.4) == (0.5, 0.5)
