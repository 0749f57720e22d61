"""VOC AP: hand-computed cases, agreement with a loop-by-loop py-faster-rcnn voc_eval, COCO AP, report."""

import math
import random

import numpy as np
import pytest

from dataset import load_ground_truth
from engine.metrics import (
    box_size,
    coco_metrics,
    evaluate_by_size,
    evaluate_detections,
    format_results,
    match_detections,
    size_bins,
    validate_detections,
    voc_ap,
)
from engine.plots import plot_pr_curves


def gt_entry(boxes, labels, difficult=None):
    boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    difficult = np.zeros(len(boxes), bool) if difficult is None else np.array(difficult, bool)
    return {"boxes": boxes, "labels": np.array(labels, dtype=np.int64), "difficult": difficult}


def det(image_id, category, score, bbox):
    return {"image_id": image_id, "category": category, "score": score, "bbox": list(bbox)}


# One class, three objects: g1 and g2 in image A, g3 in image B. In score order the detections are
# d1 = g1 exactly (TP), d2 on nothing (FP), d3 = g3 exactly (TP), d4 = g1 again (a duplicate: FP).
#   tp cumsum 1 1 2 2, fp cumsum 0 1 1 2
#   precision 1, 1/2, 2/3, 1/2;  recall 1/3, 1/3, 2/3, 2/3
# All-point: the precision envelope is 1 up to recall 1/3, 2/3 up to recall 2/3, 0 beyond:
#   AP = 1/3 * 1 + 1/3 * 2/3 + 1/3 * 0 = 5/9
# 11-point: t = 0, .1, .2, .3 -> best precision at recall >= t is 1; t = .4, .5, .6 -> 2/3;
#   t = .7 ... 1 -> no point, 0:  AP = (4 * 1 + 3 * 2/3) / 11 = 6/11
HAND_GT = {
    "A": gt_entry([[0, 0, 9, 9], [20, 20, 29, 29]], [1, 1]),
    "B": gt_entry([[0, 0, 9, 9]], [1]),
}
HAND_DETS = [
    det("A", "a", 0.9, [0, 0, 9, 9]),
    det("A", "a", 0.8, [50, 50, 59, 59]),
    det("B", "a", 0.7, [0, 0, 9, 9]),
    det("A", "a", 0.6, [0, 0, 9, 9]),
]


@pytest.mark.parametrize("metric, expected", [("voc12", 5 / 9), ("voc07", 6 / 11)])
def test_hand_computed_ap(metric, expected):
    result = evaluate_detections(HAND_DETS[::-1], HAND_GT, ["a"], metric=metric)  # input order is irrelevant
    assert result["ap"]["a"] == pytest.approx(expected, abs=1e-12)
    assert result["map"] == pytest.approx(expected, abs=1e-12)
    assert result["num_gt"] == {"a": 3}
    np.testing.assert_allclose(result["precision"]["a"], [1, 1 / 2, 2 / 3, 1 / 2])
    np.testing.assert_allclose(result["recall"]["a"], [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_array_equal(result["scores"]["a"], [0.9, 0.8, 0.7, 0.6])


def test_duplicate_detection_is_false_positive():
    gt = {"A": gt_entry([[10, 10, 40, 40]], [1])}
    dets = [det("A", "a", 0.9, [10, 10, 40, 40]), det("A", "a", 0.8, [11, 10, 40, 41])]
    result = evaluate_detections(dets, gt, ["a"])
    np.testing.assert_allclose(result["precision"]["a"], [1.0, 0.5])
    np.testing.assert_allclose(result["recall"]["a"], [1.0, 1.0])


def test_taken_best_match_is_false_positive_even_if_another_gt_is_free():
    # g2 overlaps g1 (IoU 80/120); the second detection's best match is the taken g1, so it is a FP
    # even though its IoU with the free g2 is 2/3 (the devkit never falls back to the second best).
    gt = {"A": gt_entry([[0, 0, 9, 9], [2, 0, 11, 9]], [1, 1])}
    dets = [det("A", "a", 0.9, [0, 0, 9, 9]), det("A", "a", 0.8, [0, 0, 9, 9])]
    result = evaluate_detections(dets, gt, ["a"])
    np.testing.assert_allclose(result["precision"]["a"], [1.0, 0.5])
    np.testing.assert_allclose(result["recall"]["a"], [0.5, 0.5])


def test_detection_on_difficult_object_changes_nothing():
    gt = {k: dict(v) for k, v in HAND_GT.items()}
    gt["B"] = gt_entry([[0, 0, 9, 9], [60, 60, 79, 69]], [1, 1], difficult=[False, True])
    on_difficult = [det("B", "a", 0.95, [61, 60, 79, 70]), det("B", "a", 0.65, [60, 60, 79, 69])]
    for metric in ("voc12", "voc07"):
        base = evaluate_detections(HAND_DETS, HAND_GT, ["a"], metric=metric)
        result = evaluate_detections(HAND_DETS + on_difficult, gt, ["a"], metric=metric)
        assert result["ap"] == base["ap"] and result["num_gt"] == base["num_gt"] == {"a": 3}
        np.testing.assert_array_equal(result["precision"]["a"], base["precision"]["a"])
        np.testing.assert_array_equal(result["recall"]["a"], base["recall"]["a"])


def test_iou_counts_inclusive_pixels():
    # GT [0,0,9,9] is 10x10 pixels; [0,0,9,4.5] covers 10 x 5.5: IoU 0.55 > 0.5 (without the +1: 40.5/81 = 0.5)
    gt = {"A": gt_entry([[0, 0, 9, 9]], [1])}
    assert evaluate_detections([det("A", "a", 1.0, [0, 0, 9, 4.5])], gt, ["a"])["ap"]["a"] == 1.0
    # [0,0,9,4] covers 10 x 5: IoU exactly 0.5, not above the threshold
    assert evaluate_detections([det("A", "a", 1.0, [0, 0, 9, 4])], gt, ["a"])["ap"]["a"] == 0.0


def test_class_without_ground_truth_is_nan_and_left_out_of_the_mean():
    dets = HAND_DETS + [det("A", "b", 0.99, [0, 0, 9, 9])]
    result = evaluate_detections(dets, HAND_GT, ["a", "b", "c"])
    assert math.isnan(result["ap"]["b"]) and math.isnan(result["ap"]["c"])  # "c": no detections either
    assert result["num_gt"] == {"a": 3, "b": 0, "c": 0}
    assert result["map"] == pytest.approx(5 / 9)
    np.testing.assert_array_equal(result["precision"]["b"], [0.0])
    assert np.isnan(result["recall"]["b"]).all() and len(result["recall"]["c"]) == 0
    empty = {"A": gt_entry([], []), "B": gt_entry([], [])}
    assert math.isnan(evaluate_detections(dets, empty, ["a", "b"])["map"])


def test_no_detections_gives_zero_ap():
    result = evaluate_detections([], HAND_GT, ["a"])
    assert result["ap"] == {"a": 0.0} and result["map"] == 0.0


@pytest.mark.parametrize("score", [evaluate_detections, match_detections])
def test_unknown_image_or_category_raises(score):
    with pytest.raises(ValueError, match="image 'Z', which is not in the ground truth"):
        score([det("Z", "a", 0.5, [0, 0, 1, 1])], HAND_GT, ["a"])
    with pytest.raises(ValueError, match="category 'q', which is not one of"):
        score([det("A", "q", 0.5, [0, 0, 1, 1])], HAND_GT, ["a"])


def test_unknown_metric_raises():
    with pytest.raises(ValueError, match="metric"):
        evaluate_detections([], HAND_GT, ["a"], metric="coco")


def test_voc_ap_direct():
    assert voc_ap(np.array([]), np.array([])) == 0.0
    assert voc_ap(np.array([]), np.array([]), use_07_metric=True) == 0.0
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == 1.0
    # precision 1 until recall .5, then .5 until recall 1: all-point .75, 11-point (6 * 1 + 5 * .5) / 11
    assert voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 0.5])) == pytest.approx(0.75)
    assert voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 0.5]), True) == pytest.approx(8.5 / 11)


# ---------------------------------------------------------------- independent reference, loop by loop
def reference_voc_ap(rec, prec, use_07_metric):
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            above = [p for r, p in zip(rec, prec) if r >= t]
            ap += (max(above) if above else 0.0) / 11.0
        return ap
    mrec = [0.0] + list(rec) + [1.0]
    mpre = [0.0] + list(prec) + [0.0]
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1) if mrec[i + 1] != mrec[i])


def reference_voc_eval(detections, ground_truth, class_id, class_name, iou_threshold, use_07_metric):
    """py-faster-rcnn's voc_eval for one class, with a stable sort (ties keep the input order)."""
    records, npos = {}, 0
    for image_id, g in ground_truth.items():
        keep = [j for j in range(len(g["labels"])) if g["labels"][j] == class_id]
        boxes = [[float(v) for v in g["boxes"][j]] for j in keep]
        difficult = [bool(g["difficult"][j]) for j in keep]
        npos += sum(not d for d in difficult)
        records[image_id] = {"boxes": boxes, "difficult": difficult, "det": [False] * len(keep)}
    dets = sorted((d for d in detections if d["category"] == class_name), key=lambda d: -d["score"])
    tp, fp = [0.0] * len(dets), [0.0] * len(dets)
    for k, d in enumerate(dets):
        r = records[d["image_id"]]
        bx1, by1, bx2, by2 = (float(v) for v in d["bbox"])
        ovmax, jmax = -math.inf, -1
        for j, (gx1, gy1, gx2, gy2) in enumerate(r["boxes"]):
            iw = max(min(bx2, gx2) - max(bx1, gx1) + 1.0, 0.0)
            ih = max(min(by2, gy2) - max(by1, gy1) + 1.0, 0.0)
            inters = iw * ih
            uni = (bx2 - bx1 + 1.0) * (by2 - by1 + 1.0) + (gx2 - gx1 + 1.0) * (gy2 - gy1 + 1.0) - inters
            if inters / uni > ovmax:
                ovmax, jmax = inters / uni, j
        if ovmax > iou_threshold:
            if not r["difficult"][jmax]:
                if not r["det"][jmax]:
                    tp[k] = 1.0
                    r["det"][jmax] = True
                else:
                    fp[k] = 1.0
        else:
            fp[k] = 1.0
    if npos == 0:
        return math.nan
    rec, prec, ctp, cfp = [], [], 0.0, 0.0
    for t, f in zip(tp, fp):
        ctp, cfp = ctp + t, cfp + f
        rec.append(ctp / npos)
        prec.append(ctp / max(ctp + cfp, np.finfo(np.float64).eps))
    return reference_voc_ap(rec, prec, use_07_metric)


def random_case(seed, classes, num_images=30, num_dets=300):
    rng = random.Random(seed)
    ground_truth = {}
    for i in range(num_images):
        boxes, labels, difficult = [], [], []
        for _ in range(rng.randint(0, 6)):
            x, y, w, h = rng.randint(0, 300), rng.randint(0, 300), rng.randint(2, 80), rng.randint(2, 80)
            boxes.append([x, y, x + w, y + h])
            labels.append(rng.randint(1, len(classes)))
            difficult.append(rng.random() < 0.2)
        ground_truth[f"img{i}"] = gt_entry(boxes, labels, difficult)
    ids = list(ground_truth)
    detections = []
    for _ in range(num_dets):
        image_id = rng.choice(ids)
        g = ground_truth[image_id]
        if len(g["labels"]) and rng.random() < 0.7:  # near an object, sometimes of the wrong class
            j = rng.randrange(len(g["labels"]))
            x1, y1, x2, y2 = (float(v) + rng.gauss(0, 6) for v in g["boxes"][j])
            category = classes[g["labels"][j] - 1] if rng.random() < 0.85 else rng.choice(classes)
        else:
            x1, y1 = rng.uniform(0, 300), rng.uniform(0, 300)
            x2, y2 = x1 + rng.uniform(2, 80), y1 + rng.uniform(2, 80)
            category = rng.choice(classes)
        if rng.random() < 0.3:  # whole pixels make exact IoU ties between ground truths likely
            x1, y1, x2, y2 = (float(round(v)) for v in (x1, y1, x2, y2))
        box = [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]
        detections.append(det(image_id, category, round(rng.random(), 2), box))  # 2 decimals: score ties
    return detections, ground_truth


@pytest.mark.parametrize("metric", ["voc12", "voc07"])
@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_loop_reference(seed, metric):
    classes = ["a", "b", "c"]
    detections, ground_truth = random_case(seed, classes)
    iou_threshold = [0.5, 0.3, 0.7][seed % 3]
    result = evaluate_detections(detections, ground_truth, classes, iou_threshold=iou_threshold, metric=metric)
    for c, name in enumerate(classes, start=1):
        expected = reference_voc_eval(detections, ground_truth, c, name, iou_threshold, metric == "voc07")
        if math.isnan(expected):
            assert math.isnan(result["ap"][name])
        else:
            assert result["ap"][name] == pytest.approx(expected, abs=1e-9, rel=0)
    assert any(ap > 0 for ap in result["ap"].values())


# ---------------------------------------------------------------- files, validation, COCO, report, plots
def write_voc_set(root, images, split="val"):
    """``images``: image_id -> list of (class name, [x1, y1, x2, y2], difficult)."""
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for image_id, objects in images.items():
        parts = [
            f"<object><name>{name}</name><difficult>{int(diff)}</difficult><bndbox><xmin>{b[0]}</xmin>"
            f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
            for name, b, diff in objects
        ]
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>200</width><height>100</height>"
            f"<depth>3</depth></size>{''.join(parts)}</annotation>"
        )
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(images) + "\n")


def test_load_ground_truth(tmp_path):
    write_voc_set(tmp_path, {"x1": [("nail", [1, 2, 30, 40], False), ("clip_Y", [5, 5, 9, 9], True)], "x2": []})
    gt = load_ground_truth(tmp_path, "val", ["nail", "clip_B", "clip_Y"])
    assert list(gt) == ["x1", "x2"]
    np.testing.assert_array_equal(gt["x1"]["boxes"], [[1, 2, 30, 40], [5, 5, 9, 9]])  # XML frame, unshifted
    np.testing.assert_array_equal(gt["x1"]["labels"], [1, 3])
    np.testing.assert_array_equal(gt["x1"]["difficult"], [False, True])
    assert gt["x2"]["boxes"].shape == (0, 4)


@pytest.mark.parametrize(
    "detections, message",
    [
        ({"image_id": "A"}, "list"),
        ([["A", "a", 0.5, [0, 0, 1, 1]]], "detection 0"),
        ([{"image_id": "A", "category": "a", "bbox": [0, 0, 1, 1]}], "missing score"),
        ([det("A", "a", 0.5, [0, 0, 1])], "4 finite numbers"),
        ([det("A", "a", 0.5, [0, 0, 1, "2"])], "4 finite numbers"),
        ([det("A", "a", 0.5, [0, 0, 1, math.inf])], "4 finite numbers"),
        ([det("A", "a", 0.5, [5, 0, 1, 1])], "x2 < x1"),
        ([det("A", "a", math.nan, [0, 0, 1, 1])], "finite number"),
        ([det("A", "a", "high", [0, 0, 1, 1])], "finite number"),
        (
            [det("A", "a", 0.5, [0, 0, 1, 1]), det("Z", "a", 0.5, [0, 0, 1, 1])],
            "detection 1: image 'Z' is not in the split",
        ),
        ([det("A", "q", 0.5, [0, 0, 1, 1])], "category 'q' is not one of a, b"),
    ],
)
def test_validate_detections_errors(detections, message):
    with pytest.raises(ValueError, match="^dets.json: ") as err:
        validate_detections(detections, ["A", "B"], ["a", "b"], source="dets.json")
    assert message in str(err.value)


def test_validate_detections_accepts_contract():
    validate_detections(HAND_DETS + [det("B", "a", 1, [0, 0, 0, 0])], HAND_GT, ["a"])


def test_coco_metrics():
    gt = {
        "A": gt_entry([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]], [1, 2, 1], [False, False, True]),
        "B": gt_entry([[5, 5, 25, 25]], [2]),
    }
    perfect = [
        det("A", "a", 0.9, [0, 0, 10, 10]),
        det("A", "b", 0.8, [20, 20, 40, 40]),
        det("B", "b", 0.7, [5, 5, 25, 25]),
        det("A", "a", 0.95, [50, 50, 60, 60]),
    ]  # on the difficult object: ignored
    both = ("AP@[.5:.95]", "AP@.5")
    assert coco_metrics(perfect, gt, ["a", "b"]) == pytest.approx(
        {"AP@[.5:.95]": 1.0, "AP@.5": 1.0, "AP small": 1.0, "AP medium": math.nan, "AP large": math.nan}, nan_ok=True
    )  # every object is below 32x32 pixels: COCO's medium and large bins are empty
    assert {k: coco_metrics([], gt, ["a", "b"])[k] for k in both} == {"AP@[.5:.95]": 0.0, "AP@.5": 0.0}
    # Boxes count inclusive pixels, as in the VOC rule. Shifted by 2 pixels: "a" (11x11 pixels) reaches IoU
    # 81/161 = .503, a true positive at threshold .5 only; the detection on the difficult (crowd) object covers
    # 81/121 = .67 of itself: ignored at .5 .55 .6 .65, a false positive (scoring highest) above. Both "b"
    # (21x21 pixels) reach 361/521 = .69, true positives at .5 .55 .6 .65 of the ten thresholds:
    # AP@.5 = (1 + 1) / 2, AP@[.5:.95] = (.1 + .4) / 2
    shifted = [dict(d, bbox=[v + 2 for v in d["bbox"]]) for d in perfect]
    assert {k: coco_metrics(shifted, gt, ["a", "b"])[k] for k in both} == pytest.approx(
        {"AP@[.5:.95]": 0.25, "AP@.5": 1.0}
    )
    assert evaluate_detections(shifted, gt, ["a", "b"])["ap"] == {"a": 1.0, "b": 1.0}  # the VOC rule agrees at .5


# Size bins: a small object S (11x11 pixels) and a large one L (41x41) of one class in one picture.
SIZES_GT = {"A": gt_entry([[0, 0, 10, 10], [100, 100, 140, 140]], [1, 1])}
SIZES_DETS = [
    det("A", "a", 0.95, [200, 200, 240, 240]),  # large, on nothing: a false alarm among large objects only
    det("A", "a", 0.9, [0, 0, 10, 10]),  # finds S
    det("A", "a", 0.8, [100, 100, 140, 140]),  # finds L
    det("A", "a", 0.7, [300, 300, 305, 305]),  # small (6x6), on nothing: a false alarm among small objects only
]


def test_ap_by_size_counts_each_object_and_false_alarm_in_its_own_bin():
    """Hand-computed: among small objects, S is found at rank 1 (the large false alarm is ignored) and the
    small false alarm comes after it: AP 1. Among large ones the false alarm scores first: precision 1/2 at
    recall 1, AP 0.5. Without the size rule, both objects in one bin: precision 0, 1/2, 2/3 at ranks 1-3,
    recall 1/2 at rank 2 and 1 at rank 3; the envelope is 2/3 up to recall 1: AP 2/3."""
    by_size = evaluate_by_size(SIZES_DETS, SIZES_GT, ["a"], [(0.0, 20.0), (20.0, math.inf)])
    assert {name: r["ap"]["a"] for name, r in by_size.items()} == {"0-20": 1.0, "20-inf": 0.5}
    assert {name: r["num_gt"]["a"] for name, r in by_size.items()} == {"0-20": 1, "20-inf": 1}
    assert evaluate_detections(SIZES_DETS, SIZES_GT, ["a"])["ap"]["a"] == pytest.approx(2 / 3)
    assert box_size(np.array([[0, 0, 10, 10], [0, 0, 3, 15]])).tolist() == [11.0, 8.0]


def test_size_bins_default_to_terciles_of_the_objects():
    gt = {"A": gt_entry([[0, 0, s - 1, s - 1] for s in (10, 20, 30, 40, 50, 60)], [1] * 6)}
    (lo1, hi1), (lo2, hi2), (lo3, hi3) = size_bins(gt)
    assert (
        (lo1, hi3) == (0.0, math.inf) and hi1 == lo2 == pytest.approx(80 / 3) and hi2 == lo3 == pytest.approx(130 / 3)
    )
    assert size_bins(gt, [25.0]) == [(0.0, 25.0), (25.0, math.inf)]


def test_ap_by_size_agrees_with_pycocotools_area_ranges():
    """The same bins given to COCO as areaRng (areas lo^2 to hi^2) at IoU .5: the same objects counted, the same
    false alarms ignored. (COCO interpolates at 101 recall points, VOC at every point: the cases are built so that
    both give exact values.)"""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def coco_ap(lo, hi):
        boxes = [[x1, y1, x2 - x1 + 1, y2 - y1 + 1] for x1, y1, x2, y2 in SIZES_GT["A"]["boxes"].tolist()]
        gts = [
            {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
            for i, b in enumerate(boxes)
        ]
        dets = []
        for i, d in enumerate(SIZES_DETS):
            x1, y1, x2, y2 = d["bbox"]
            b = [x1, y1, x2 - x1 + 1, y2 - y1 + 1]
            dets.append(
                {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": b, "area": b[2] * b[3], "score": d["score"]}
            )
        heads = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}]}
        coco_gt, coco_dt = COCO(), COCO()
        coco_gt.dataset, coco_dt.dataset = {**heads, "annotations": gts}, {**heads, "annotations": dets}
        coco_gt.createIndex()
        coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.params.iouThrs = np.array([0.5])
        evaluator.params.areaRng = [[lo**2, hi**2]]
        evaluator.params.areaRngLbl = ["bin"]
        evaluator.evaluate()
        evaluator.accumulate()
        precision = evaluator.eval["precision"][0, :, 0, 0, -1]  # [recall thresholds]
        return float(np.mean(precision[precision > -1]))

    ours = evaluate_by_size(SIZES_DETS, SIZES_GT, ["a"], [(0.0, 20.0), (20.0, 1e5)])
    assert ours["0-20"]["ap"]["a"] == pytest.approx(coco_ap(0.0, 20.0)) == 1.0
    assert ours["20-100000"]["ap"]["a"] == pytest.approx(coco_ap(20.0, 1e5)) == 0.5


def test_format_results_lines():
    result = evaluate_detections(HAND_DETS, HAND_GT, ["a", "b"])
    lines = format_results(result).splitlines()
    assert lines[:5] == ["all classes AP=====>", "", f"ap for a is {5 / 9!r}", "ap for b is nan", "mAP=====>0.556"]
    assert lines[6].split() == ["class", "gt", "dets", "AP"]
    assert lines[7].split() == ["a", "3", "4", "0.556"]
    assert lines[8].split() == ["b", "0", "0", "nan"]


def test_plot_pr_curves(tmp_path):
    result = evaluate_detections(HAND_DETS + [det("A", "b", 0.5, [0, 0, 9, 9])], HAND_GT, ["a", "b"])
    paths = plot_pr_curves(result, tmp_path / "pr")
    assert [p.name for p in paths] == ["pr_a.png", "pr_b.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
