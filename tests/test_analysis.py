"""Operating points, confusion matrix and error lists against answers worked out by hand."""

import csv
import json
import math

import cv2
import numpy as np
import pytest
from PIL import ExifTags, Image

import detect
import eval_voc
from dataset import write_annotation, write_split
from dataset.synthetic import generate
from engine import analysis_pictures
from engine.analysis import box_fit, confusion_matrix, error_list, format_fit, reaching_threshold, summarise_fit
from engine.metrics import evaluate_detections
from engine.thresholds import FALLBACK_THRESHOLD, curve, deploy_thresholds, operating_points

CLASSES = ("nail", "clip_B", "clip_Y", "L_stick")


def gt(*objects):
    boxes = np.array([b for _, b in objects], dtype=np.float32).reshape(-1, 4)
    labels = np.array([CLASSES.index(n) + 1 for n, _ in objects], dtype=np.int64)
    return {"boxes": boxes, "labels": labels, "difficult": np.zeros(len(objects), bool)}


def det(image, name, score, box):
    return {"image_id": image, "category": name, "score": score, "bbox": box}


# Four nails in four pictures; nail detections 0.9 TP, 0.8 FP, 0.7 TP, 0.6 TP (0.6 and 0.5 tie-free), one missed.
GROUND_TRUTH = {f"p{i}": gt(("nail", [10 + i, 10, 50 + i, 50])) for i in range(4)}
GROUND_TRUTH["p4"] = gt(("nail", [200, 200, 240, 240]))
NAILS = [
    det("p0", "nail", 0.9, [10, 10, 50, 50]),
    det("p1", "nail", 0.8, [300, 300, 340, 340]),
    det("p1", "nail", 0.7, [11, 10, 51, 50]),
    det("p2", "nail", 0.6, [12, 10, 52, 50]),
    det("p3", "nail", 0.5, [400, 10, 440, 50]),
]


def test_curve_and_operating_points_by_hand():
    result = evaluate_detections(NAILS, GROUND_TRUTH, CLASSES)
    c = curve(result, "nail")
    np.testing.assert_allclose(c["threshold"], [0.9, 0.8, 0.7, 0.6, 0.5])
    np.testing.assert_allclose(c["precision"], [1, 1 / 2, 2 / 3, 3 / 4, 3 / 5])
    np.testing.assert_allclose(c["recall"], [1 / 5, 1 / 5, 2 / 5, 3 / 5, 3 / 5])
    f1 = [2 * p * r / (p + r) for p, r in zip(c["precision"], c["recall"])]
    np.testing.assert_allclose(c["f1"], f1)
    points = operating_points(result)["nail"]
    assert points["best_f1"] == pytest.approx({"threshold": 0.6, "precision": 0.75, "recall": 0.6, "f1": 2 / 3})
    assert points["precision_0.90"] == pytest.approx({"threshold": 0.9, "precision": 1.0, "recall": 0.2, "f1": 1 / 3})
    assert operating_points(result)["clip_B"]["best_f1"]["threshold"] is None  # no ground truth, no detections
    assert deploy_thresholds(operating_points(result), CLASSES, 0.3) == [0.6, 0.3, 0.3, 0.3]


def test_a_threshold_keeps_all_of_its_ties():
    tied = [
        det("p0", "nail", 0.9, [10, 10, 50, 50]),
        det("p1", "nail", 0.7, [300, 300, 340, 340]),
        det("p2", "nail", 0.7, [12, 10, 52, 50]),
    ]
    c = curve(evaluate_detections(tied, GROUND_TRUTH, CLASSES), "nail")
    np.testing.assert_allclose(c["threshold"], [0.9, 0.7])  # never a cut between two equal scores
    np.testing.assert_allclose(c["precision"], [1, 2 / 3])


def test_confusion_matrix_by_hand():
    ground_truth = {
        "a": gt(("nail", [10, 10, 50, 50]), ("clip_B", [100, 10, 140, 50]), ("L_stick", [200, 200, 260, 260])),
        "b": gt(("clip_Y", [10, 10, 40, 40])),
    }
    detections = [
        det("a", "nail", 0.9, [10, 10, 50, 50]),  # nail found
        det("a", "nail", 0.8, [11, 10, 51, 50]),  # a duplicate: background -> nail
        det("a", "clip_Y", 0.9, [100, 10, 140, 50]),  # clip_B taken for clip_Y
        det("a", "L_stick", 0.7, [500, 500, 540, 540]),  # nothing there
        det("b", "clip_Y", 0.2, [10, 10, 40, 40]),
    ]  # below the threshold below: the clip_Y is missed
    matrix = confusion_matrix(detections, ground_truth, CLASSES, score_threshold=0.5)
    expected = np.zeros((5, 5), dtype=np.int64)
    expected[0, 0] = 1  # nail -> nail
    expected[1, 2] = 1  # clip_B -> clip_Y
    expected[3, 4] = 1  # L_stick missed
    expected[2, 4] = 1  # clip_Y missed (its detection is under the threshold)
    expected[4, 0] = 1  # duplicate nail
    expected[4, 3] = 1  # L_stick on background
    np.testing.assert_array_equal(matrix, expected)
    per_class = reaching_threshold(detections, CLASSES, [0.95, 0.5, 0.1, 0.5])  # nail's 0.95 drops both nails,
    assert per_class == [2, 3, 4]  # clip_Y's 0.1 keeps b's


def test_error_list_names_each_miss_and_false_alarm_with_its_cause():
    ground_truth = {
        "a": gt(
            ("nail", [10, 10, 50, 50]),
            ("clip_B", [100, 10, 140, 50]),
            ("L_stick", [200, 200, 260, 260]),
            ("clip_Y", [300, 300, 340, 340]),
        )
    }
    detections = [
        det("a", "nail", 0.9, [10, 10, 50, 50]),
        det("a", "nail", 0.8, [11, 10, 51, 50]),
        det("a", "clip_Y", 0.9, [100, 10, 140, 50]),
        det("a", "L_stick", 0.7, [230, 230, 290, 290]),
        det("a", "L_stick", 0.6, [500, 500, 540, 540]),
    ]
    rows = {(r["kind"], r["category"], r["cause"]) for r in error_list(detections, ground_truth, CLASSES)}
    assert rows == {
        ("false_alarm", "nail", "duplicate"),
        ("false_alarm", "clip_Y", "confusion"),
        ("false_alarm", "L_stick", "localisation"),
        ("false_alarm", "L_stick", "background"),
        ("miss", "clip_B", "confusion"),
        ("miss", "L_stick", "localisation"),
        ("miss", "clip_Y", "missed"),
    }


def test_box_fit_by_hand():
    """The best box of each object's class above the threshold, its IoU and its size over the label's
    (inclusive pixels: a 20-pixel box spans x1..x1+19), by size bin and class; difficult objects left out."""
    truth = {
        "a": gt(("nail", [10, 10, 29, 29]), ("clip_Y", [60, 60, 79, 79]), ("clip_B", [100, 100, 139, 139])),
        "b": gt(("nail", [10, 10, 49, 49])),
    }
    truth["a"]["difficult"][1] = True
    detections = [
        det("a", "nail", 0.9, [8, 10, 31, 29]),  # 24x20 on the 20x20 nail: IoU 400/480
        det("a", "nail", 0.2, [10, 10, 29, 29]),  # exact, below the threshold
        det("a", "clip_Y", 0.9, [100, 100, 139, 139]),  # the clip_B's box, of another class
        det("a", "clip_B", 0.9, [135, 135, 174, 174]),  # a corner of the clip_B: IoU 25/3175
    ]
    rows = box_fit(detections, truth, CLASSES, score_threshold=0.5)
    assert [(r["image_id"], r["category"], r["object_index"], r["size"]) for r in rows] == [
        ("a", "nail", 0, 20.0),
        ("a", "clip_B", 2, 40.0),
        ("b", "nail", 0, 40.0),
    ]
    assert [r["best_iou"] for r in rows] == pytest.approx([400 / 480, 25 / 3175, 0.0])
    assert [(r["width_ratio"], r["height_ratio"]) for r in rows] == [(pytest.approx(1.2), 1.0), ("", ""), ("", "")]
    summary = summarise_fit(rows, CLASSES, [(0.0, 30.0), (30.0, math.inf)])
    assert list(summary) == ["0-30 px", "30-inf px", *CLASSES]
    assert summary["0-30 px"] == pytest.approx(
        {
            "objects": 1,
            "placed": 1.0,
            "median_iou": 400 / 480,
            "below_0.5": 0.0,
            "width_ratio": 1.2,
            "height_ratio": 1.0,
        }
    )
    assert summary["30-inf px"]["objects"] == 2 and summary["30-inf px"]["placed"] == 0.0
    assert math.isnan(summary["30-inf px"]["median_iou"]) and math.isnan(summary["clip_Y"]["placed"])
    assert summary["nail"]["placed"] == 0.5 and summary["clip_B"]["objects"] == 1
    assert format_fit(summary).splitlines()[1].split() == ["0-30", "px", "1", "1.00", "0.83", "0.00", "1.20", "1.00"]


def test_eval_analysis_writes_everything_and_detect_uses_its_thresholds(tmp_path, capsys):
    root = tmp_path / "data"
    generate(root, {"val": 3}, seed=2, size=(120, 200))
    from dataset import load_ground_truth

    truth = load_ground_truth(root, "val", CLASSES)
    detections = [
        det(i, CLASSES[label - 1], 0.9 - 0.05 * k, box.tolist())
        for i, g in truth.items()
        for k, (box, label) in enumerate(zip(g["boxes"], g["labels"]))
    ]
    detections.append(det("val_00000", "nail", 0.95, [1, 1, 20, 20]))  # a confident false alarm
    (tmp_path / "dets.json").write_text(json.dumps(detections))
    out = tmp_path / "analysis"
    result = eval_voc.main(
        eval_voc.get_args_parser().parse_args(
            [
                "--detections",
                str(tmp_path / "dets.json"),
                "--data-root",
                str(root),
                "--split",
                "val",
                "--analysis",
                str(out),
                "--score-threshold",
                "0.5",
            ]
        )
    )
    for name in (
        "confusion_matrix.png",
        "confusion_matrix.csv",
        "pr_f1.png",
        "thresholds.csv",
        "thresholds.json",
        "errors.csv",
        "box_fit.csv",
    ):
        assert (out / name).is_file(), name
    fit = list(csv.DictReader(open(out / "box_fit.csv")))  # every object has its own box
    assert len(fit) == sum(len(g["labels"]) for g in truth.values())
    assert {(r["best_iou"], r["width_ratio"], r["height_ratio"]) for r in fit} == {("1.0", "1.0", "1.0")}
    errors = list(csv.DictReader(open(out / "errors.csv")))
    assert [(e["image_id"], e["kind"], e["category"], e["cause"]) for e in errors] == [
        ("val_00000", "false_alarm", "nail", "background")
    ]
    assert sorted(p.name for p in (out / "errors").iterdir()) == ["val_00000.jpg"]
    printed = capsys.readouterr().out
    assert "best-F1 threshold" in printed and "1 false alarms" in printed
    assert result["analysis"]["points"] == json.loads((out / "thresholds.json").read_text())

    args = detect.get_args_parser().parse_args(
        ["--score-threshold", "auto", "--thresholds", str(out / "thresholds.json")]
    )
    chosen = detect.choose_threshold(args, None, CLASSES)
    assert chosen == deploy_thresholds(result["analysis"]["points"], CLASSES, FALLBACK_THRESHOLD)
    with pytest.raises(ValueError, match="needs per-class thresholds"):
        detect.choose_threshold(detect.get_args_parser().parse_args(["--score-threshold", "auto"]), None, CLASSES)
    # without a choice: the stored per-class thresholds where the model has them, else the fallback
    default = detect.get_args_parser().parse_args([])
    assert detect.choose_threshold(default, result["analysis"]["points"], CLASSES) == chosen
    assert detect.choose_threshold(default, None, CLASSES) == FALLBACK_THRESHOLD
    # stored thresholds lacking a class: the fallback for it by default, refused when auto insists
    partial = {name: point for name, point in result["analysis"]["points"].items() if name != CLASSES[-1]}
    assert detect.choose_threshold(default, partial, CLASSES) == [*chosen[:-1], FALLBACK_THRESHOLD]
    with pytest.raises(ValueError, match=r"the thresholds lack the classes \['L_stick'\]"):
        detect.choose_threshold(detect.get_args_parser().parse_args(["--score-threshold", "auto"]), partial, CLASSES)
    assert (
        detect.choose_threshold(detect.get_args_parser().parse_args(["--score-threshold", "0.5"]), None, CLASSES) == 0.5
    )


def test_a_class_without_a_best_f1_point_counts_at_the_fallback_threshold(tmp_path):
    """``--analysis`` with ``auto``: a class the split has no object of is shown at FALLBACK_THRESHOLD, the
    threshold detect.py deploys it at, so its confident false alarms are listed."""
    root = tmp_path / "data"
    generate(root, {"val": 2}, seed=2, size=(120, 200))
    classes = (*CLASSES, "bolt")  # no bolt in the pictures
    detections = [det("val_00000", "bolt", FALLBACK_THRESHOLD + 0.05, [1, 1, 20, 20])]
    (tmp_path / "dets.json").write_text(json.dumps(detections))
    argv = ["--detections", str(tmp_path / "dets.json"), "--data-root", str(root), "--split", "val"]
    argv += ["--classes", ",".join(classes), "--analysis", str(tmp_path / "analysis")]
    result = eval_voc.main(eval_voc.get_args_parser().parse_args(argv))
    assert result["analysis"]["threshold"] == [FALLBACK_THRESHOLD] * len(classes)
    assert [(e["kind"], e["category"]) for e in result["analysis"]["errors"] if e["kind"] == "false_alarm"] == [
        ("false_alarm", "bolt")
    ]
    points = result["analysis"]["points"]  # as a checkpoint would store them
    assert detect.choose_threshold(detect.get_args_parser().parse_args([]), points, classes)[-1] == FALLBACK_THRESHOLD


def test_error_pictures_mark_the_false_alarm_by_its_index_not_its_rounded_corner(tmp_path, monkeypatch):
    """A duplicate 0.02 pixels off the found detection: same corner at 0.1 pixel, yet only it is FP, and
    errors.csv names it by its place in the detections file."""
    root = tmp_path / "data"
    generate(root, {"val": 1}, seed=2, size=(120, 200))
    from dataset import load_ground_truth

    truth = load_ground_truth(root, "val", CLASSES)["val_00000"]
    box, name = truth["boxes"][0].tolist(), CLASSES[truth["labels"][0] - 1]
    detections = [
        det("val_00000", CLASSES[label - 1], 0.9, b.tolist()) for b, label in zip(truth["boxes"], truth["labels"])
    ]
    detections.append(det("val_00000", name, 0.8, [box[0] + 0.02, box[1] + 0.02, box[2], box[3]]))
    (tmp_path / "dets.json").write_text(json.dumps(detections))
    labels = []
    monkeypatch.setattr(analysis_pictures, "label_box", lambda picture, text, *rest, **kw: labels.append(text))
    argv = ["--detections", str(tmp_path / "dets.json"), "--data-root", str(root), "--split", "val"]
    eval_voc.main(
        eval_voc.get_args_parser().parse_args([*argv, "--analysis", str(tmp_path / "a"), "--score-threshold", "0.5"])
    )
    errors = list(csv.DictReader(open(tmp_path / "a" / "errors.csv")))
    assert [(e["kind"], e["cause"], e["detection_index"], e["object_index"]) for e in errors] == [
        ("false_alarm", "duplicate", str(len(detections) - 1), "")
    ]
    assert (
        labels.count(f"FP {name} 0.80") == 1
        and f"{name} 0.90" in labels
        and not any(t.startswith("MISS") for t in labels)
    )


@pytest.mark.parametrize("frame", ["stored", "upright"])
def test_error_pictures_are_drawn_in_the_frame_of_the_xml(tmp_path, frame):
    """A phone picture stored on its side (EXIF orientation 6): its error picture is the view its XML's boxes
    were drawn on, so the ground-truth box lies on the object."""
    upright = np.zeros((64, 96, 3), np.uint8)
    upright[20:50, 10:40] = 255  # the object: XML box 11, 21, 40, 50 on the upright view
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    (tmp_path / "JPEGImages").mkdir()
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(tmp_path / "JPEGImages/a.jpg", exif=exif)
    # orientation 6 shows the stored picture turned clockwise: upright (x, y) is stored (y, 97 - x)
    box, size = ([21, 57, 50, 86], (64, 96)) if frame == "stored" else ([11, 21, 40, 50], (96, 64))
    write_annotation(tmp_path / "Annotations/a.xml", "a.jpg", *size, [box], ["nail"])
    write_split(tmp_path, "val", ["a"])
    detections = [det("a", "nail", 0.9, box), det("a", "nail", 0.8, [5, 5, 20, 20])]  # found, and a false alarm
    (tmp_path / "dets.json").write_text(json.dumps(detections))
    argv = ["--detections", str(tmp_path / "dets.json"), "--data-root", str(tmp_path), "--split", "val"]
    eval_voc.main(
        eval_voc.get_args_parser().parse_args([*argv, "--analysis", str(tmp_path / "out"), "--score-threshold", "0.5"])
    )
    drawn = cv2.imread(str(tmp_path / "out/errors/a.jpg"))
    assert drawn.shape[1::-1] == size
    centre = drawn[(box[1] + box[3]) // 2, (box[0] + box[2]) // 2]
    assert centre.min() > 200  # the white object
