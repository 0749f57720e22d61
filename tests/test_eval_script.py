"""eval_voc.py: scoring a detections file, clear errors, COCO and plots, checkpoint mode and predict()."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.ops import box_iou

from dataset import FOD_CLASSES, VOCDataset, load_ground_truth, write_split
from dataset.synthetic import generate
from engine.inference import eval_loader, predict
from eval_voc import get_args_parser, main

REPO = Path(__file__).resolve().parents[1]

# x1: nail, clip_B, L_stick; x2: nail and a difficult L_stick. No clip_Y anywhere.
OBJECTS = {
    "x1": [
        ("nail", [10, 10, 50, 50], False),
        ("clip_B", [60, 10, 90, 40], False),
        ("L_stick", [120, 60, 160, 95], False),
    ],
    "x2": [("nail", [5, 5, 30, 30], False), ("L_stick", [100, 50, 150, 90], True)],
}
# nail: two TPs -> AP 1. clip_B: a FP (IoU 0) then the TP -> precision 0, 1/2 at recall 0, 1 -> AP 1/2 (both
# interpolations). clip_Y: no ground truth -> nan, left out of the mean. L_stick: the only detection is on the
# difficult object, ignored; the other L_stick is missed -> AP 0. mAP = (1 + 1/2 + 0) / 3.
DETECTIONS = [
    {"image_id": "x1", "category": "nail", "score": 0.9, "bbox": [10, 10, 50, 50]},
    {"image_id": "x2", "category": "nail", "score": 0.8, "bbox": [6, 5, 30, 31]},
    {"image_id": "x1", "category": "clip_B", "score": 0.7, "bbox": [150, 5, 190, 30]},
    {"image_id": "x1", "category": "clip_B", "score": 0.6, "bbox": [60, 10, 90, 40]},
    {"image_id": "x2", "category": "L_stick", "score": 0.95, "bbox": [100, 50, 150, 90]},
]
EXPECTED = [
    "all classes AP=====>",
    "",
    "ap for nail is 1.0",
    "ap for clip_B is 0.5",
    "ap for clip_Y is nan",
    "ap for L_stick is 0.0",
    "mAP=====>0.500",
]


def write_voc_set(root, objects, size=(200, 100), images=False, split="val"):
    """VOC layout under ``root``; ``objects``: image_id -> [(name, [x1,y1,x2,y2], difficult)]."""
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    width, height = size
    rng = np.random.default_rng(0)
    for image_id, objs in objects.items():
        parts = [
            f"<object><name>{name}</name><difficult>{int(diff)}</difficult><bndbox><xmin>{b[0]}</xmin>"
            f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
            for name, b, diff in objs
        ]
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size>{''.join(parts)}</annotation>"
        )
        if images:
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "JPEGImages" / f"{image_id}.jpg")
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(objects) + "\n")
    return root


def run(argv):
    return main(get_args_parser().parse_args(argv))


@pytest.fixture
def voc(tmp_path):
    root = write_voc_set(tmp_path / "voc", OBJECTS)
    (tmp_path / "dets.json").write_text(json.dumps(DETECTIONS))
    return root, tmp_path / "dets.json"


@pytest.mark.parametrize("metric", ["voc12", "voc07"])
def test_detections_mode_prints_expected_lines(voc, capsys, metric):
    root, dets = voc
    result = run(["--detections", str(dets), "--data-root", str(root), "--split", "val", "--metric", metric])
    lines = capsys.readouterr().out.splitlines()
    assert lines[:7] == EXPECTED
    assert result["map"] == pytest.approx(0.5)
    assert result["num_gt"] == {"nail": 2, "clip_B": 1, "clip_Y": 0, "L_stick": 1}


def test_classes_from_list_and_file(voc, capsys, tmp_path):
    root, dets = voc
    names = tmp_path / "classes.txt"
    names.write_text("nail\nclip_B\nclip_Y\nL_stick\n")
    run(["--detections", str(dets), "--data-root", str(root), "--classes", str(names)])
    assert capsys.readouterr().out.splitlines()[:7] == EXPECTED
    run(["--detections", str(dets), "--data-root", str(root), "--classes", "nail,clip_B,clip_Y,L_stick"])
    assert capsys.readouterr().out.splitlines()[:7] == EXPECTED


def test_coco_and_plot(voc, capsys, tmp_path):
    root, dets = voc
    result = run(["--detections", str(dets), "--data-root", str(root), "--coco", "--plot", str(tmp_path / "pr")])
    out = capsys.readouterr().out
    assert "COCO AP@[.5:.95]=====>" in out and "COCO AP@.5=====>" in out
    assert 0 < result["coco"]["AP@[.5:.95]"] <= result["coco"]["AP@.5"] <= 1
    assert sorted(p.name for p in (tmp_path / "pr").iterdir()) == sorted(
        f"pr_{c}.png" for c in ("nail", "clip_B", "clip_Y", "L_stick")
    )


def test_ap_by_object_size_with_terciles_or_given_edges(voc, capsys):
    root, dets = voc
    result = run(["--detections", str(dets), "--data-root", str(root), "--coco"])
    out = capsys.readouterr().out
    assert "AP by object size" in out and "bins: the terciles of the split's objects" in out
    assert len(result["by_size"]) == 3 and sum(sum(r["num_gt"].values()) for r in result["by_size"].values()) == 4
    assert "COCO AP small" in out and set(result["coco"]) >= {"AP small", "AP medium", "AP large"}
    given = run(["--detections", str(dets), "--data-root", str(root), "--size-bins", "1000"])
    assert list(given["by_size"]) == ["0-1000", "1000-inf"] and given["by_size"]["0-1000"]["map"] == given["map"]
    for bad in ("20,10", "x", "-3"):
        with pytest.raises(SystemExit):
            run(["--detections", str(dets), "--data-root", str(root), "--size-bins", bad])


@pytest.mark.parametrize(
    "content, message",
    [
        ('[{"image_id": ', "not valid JSON"),
        (json.dumps({"x1": []}), "expected a JSON list"),
        (json.dumps([{"image_id": "x1", "category": "nail", "bbox": [1, 1, 5, 5]}]), "detection 0: missing score"),
        (json.dumps([{"image_id": "x1", "category": "nail", "score": 0.5, "bbox": [1, 1, 5]}]), "bbox must be 4"),
        (json.dumps(DETECTIONS + [dict(DETECTIONS[0], image_id="x9")]), "detection 5: image 'x9' is not in the split"),
        (json.dumps([dict(DETECTIONS[0], category="bolt")]), "category 'bolt' is not one of"),
        (json.dumps([dict(DETECTIONS[0], image_id=["x1"])]), "detection 0: image_id must be a string, got ['x1']"),
        (json.dumps([dict(DETECTIONS[0], category={"name": "nail"})]), "detection 0: category must be a string, got"),
    ],
)
def test_clear_errors(voc, content, message):
    root, dets = voc
    dets.write_text(content)
    with pytest.raises(ValueError) as err:
        run(["--detections", str(dets), "--data-root", str(root)])
    assert str(err.value).startswith(f"{dets}: ")
    assert message in str(err.value)


def test_a_detections_file_with_a_byte_order_mark_scores_as_without(voc, capsys):
    """Many Windows tools start UTF-8 text with a byte-order mark."""
    root, dets = voc
    dets.write_text(json.dumps(DETECTIONS), encoding="utf-8-sig")
    result = run(["--detections", str(dets), "--data-root", str(root), "--split", "val"])
    assert capsys.readouterr().out.splitlines()[:7] == EXPECTED and result["map"] == pytest.approx(0.5)


def test_missing_files_and_flag_misuse(voc, tmp_path):
    root, dets = voc
    for argv, error, message in [
        (["--detections", str(tmp_path / "nope.json"), "--data-root", str(root)], FileNotFoundError, "nope.json"),
        (["--detections", str(dets), "--data-root", str(root), "--split", "test"], FileNotFoundError, "test.txt"),
        (
            ["--detections", str(dets), "--data-root", str(root), "--save-detections", "x.json"],
            ValueError,
            "--save-detections",
        ),
        (["--checkpoint", str(tmp_path / "none.pth"), "--data-root", str(root)], FileNotFoundError, "none.pth"),
        (["--checkpoint", "c.pth", "--data-root", str(root), "--classes", "a,b"], ValueError, "--classes"),
        (
            ["--detections", str(dets), "--data-root", str(root), "--tta-scales", "1", "1.25"],
            ValueError,
            "--tta-scales",
        ),
        (["--detections", str(dets), "--data-root", str(root), "--nms-iou", "0.5"], ValueError, "--nms-iou"),
    ]:
        with pytest.raises(error) as err:
            run(argv)
        assert message in str(err.value)


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--tta-scales", v) for v in ("0", "-1", "5", "big")] + [("--nms-iou", v) for v in ("0", "1.5", "nan", "half")],
)
def test_a_scale_outside_0_to_4_or_an_nms_iou_outside_0_to_1_is_refused_naming_the_flag(voc, capsys, flag, value):
    root, dets = voc
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["--detections", str(dets), "--data-root", str(root), flag, value])
    assert flag in capsys.readouterr().err


def test_command_line_error_has_no_traceback(voc):
    root, dets = voc
    dets.write_text(json.dumps([dict(DETECTIONS[0], image_id="x9")]))
    proc = subprocess.run(
        [sys.executable, "eval_voc.py", "--detections", str(dets), "--data-root", str(root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,  # a busy 2-core machine can take minutes to import torch in a fresh process
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("eval_voc.py: error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert "image 'x9' is not in the split" in proc.stderr and "Traceback" not in proc.stderr


class FixedBoxModel(nn.Module):
    """Selects one box [10, 20, 50, 60] (input pixels), label 1, score 0.9, for every image."""

    def dense(self, images):
        return torch.zeros(len(images), 1, 1, device=images.device), torch.zeros(
            len(images), 1, 4, device=images.device
        )

    def select(self, scores, boxes, image_size, score_threshold=None, pass_sizes=None):
        box = torch.tensor([[10.0, 20.0, 50.0, 60.0]], device=scores.device)
        return [{"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.tensor([1])} for _ in scores]


def test_predict_maps_boxes_to_the_xml_frame(tmp_path):
    # 200x100 pictures at resize (50, 400): scale 0.5, so the box is [20, 40, 100, 120] in the original's
    # continuous pixels, clipped to y <= 100, then [xmin, ymin, xmax, ymax] = [x1 + 1, y1 + 1, x2, y2] in the XML frame.
    root = write_voc_set(tmp_path / "voc", {"a": [], "b": []}, images=True)
    loader = eval_loader(
        VOCDataset(root, "val", ["nail"], resize_size=(50, 400)), batch_size=2, workers=0, device="cpu"
    )
    detections = predict(FixedBoxModel(), loader, device="cpu", classes=["nail"], progress=False)
    expected = {"category": "nail", "score": pytest.approx(0.9), "bbox": [21.0, 41.0, 100.0, 100.0]}
    assert detections == [{"image_id": i, **expected} for i in ("a", "b")]


def test_checkpoint_mode(tmp_path, capsys):
    from model import FCOSConfig, FCOSDetector

    torch.manual_seed(0)
    config = FCOSConfig(backbone="resnet18", fpn_channels=32, head_convs=1, resize_size=(128, 224))
    model = FCOSDetector(config)
    with torch.no_grad():  # every point predicts a box reaching 4 strides each way: neighbours' boxes overlap
        model.head.bbox_pred.weight.mul_(0.01)
        model.head.bbox_pred.bias.fill_(4.0)
    checkpoint = tmp_path / "model.pth"
    torch.save(
        {"model": model.state_dict(), "config": config.to_dict(), "classes": list(config.classes), "epoch": 0},
        checkpoint,
    )
    root = write_voc_set(
        tmp_path / "voc",
        {"p1": [("nail", [20, 30, 80, 90], False)], "p2": [("clip_Y", [100, 10, 150, 60], False)]},
        size=(240, 140),
        images=True,
    )
    saved = tmp_path / "out" / "dets.json"
    argv = ["--checkpoint", str(checkpoint), "--data-root", str(root), "--split", "val", "--device", "cpu"]
    argv += ["--workers", "0", "--batch-size", "2", "--save-detections", str(saved)]
    result = run(argv)
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("all classes AP=====>")
    assert [line.split(" is ")[0] for line in lines[start + 2 : start + 6]] == [
        f"ap for {c}" for c in ("nail", "clip_B", "clip_Y", "L_stick")
    ]
    assert lines[start + 6].startswith("mAP=====>")
    detections = json.loads(saved.read_text())
    assert {d["image_id"] for d in detections} <= {"p1", "p2"}
    for d in detections:
        x1, y1, x2, y2 = d["bbox"]
        assert 1 <= x1 <= x2 <= 240 and 1 <= y1 <= y2 <= 140
    assert set(result["ap"]) == {"nail", "clip_B", "clip_Y", "L_stick"}

    def largest_overlap(found: list[dict]) -> float:
        """The largest IoU between two boxes of one class on one picture."""
        largest = 0.0
        for image, category in {(d["image_id"], d["category"]) for d in found}:
            boxes = torch.tensor([d["bbox"] for d in found if (d["image_id"], d["category"]) == (image, category)])
            overlap = box_iou(boxes, boxes).fill_diagonal_(0)
            largest = max(largest, overlap.max().item())
        return largest

    assert largest_overlap(detections) > 0.3  # the model's own NMS (0.6) keeps boxes that overlap more
    run([*argv, "--nms-iou", "0.3"])
    assert largest_overlap(json.loads(saved.read_text())) <= 0.3 + 1e-3


def test_ci_resamples_clusters_of_near_duplicate_pictures(tmp_path, capsys):
    """Three synthetic pictures found perfectly, three missed, and a copy of the first: six clusters."""
    root = tmp_path / "synthetic"
    ids = generate(root, {"val": 6})["val"]
    shutil.copy(root / "JPEGImages" / f"{ids[0]}.jpg", root / "JPEGImages" / "copy.jpg")
    shutil.copy(root / "Annotations" / f"{ids[0]}.xml", root / "Annotations" / "copy.xml")
    write_split(root, "val", [*ids, "copy"])
    ground_truth = load_ground_truth(root, "val", "fod")
    detections = [
        {"image_id": image, "category": FOD_CLASSES[label - 1], "score": 0.9, "bbox": box.tolist()}
        for image in [*ids[:3], "copy"]
        for box, label in zip(ground_truth[image]["boxes"], ground_truth[image]["labels"])
    ]
    (tmp_path / "dets.json").write_text(json.dumps(detections))
    argv = ["--detections", str(tmp_path / "dets.json"), "--data-root", str(root), "--ci"]
    result = run(argv)
    lines = capsys.readouterr().out.splitlines()
    start = lines.index(
        "90% interval: 1000 resamples of the 6 clusters of near-duplicate pictures (whole clusters drawn with "
        "replacement)"
    )
    assert lines[start + 1].split() == ["class", "AP", "5%", "95%"] and lines[start + 6].startswith("mAP ")
    low, high = result["ci"]["map"]
    assert 0 <= low < result["map"] < high <= 1 and result["ci"]["clusters"] == 6
    assert run(argv)["ci"] == result["ci"]  # seeded
    perfect = [
        {"image_id": image, "category": FOD_CLASSES[label - 1], "score": 0.9, "bbox": box.tolist()}
        for image, g in ground_truth.items()
        for box, label in zip(g["boxes"], g["labels"])
    ]
    (tmp_path / "dets.json").write_text(json.dumps(perfect))
    assert run(argv)["ci"]["map"] == (1.0, 1.0)


def test_ci_needs_the_pictures(voc):
    root, dets = voc
    with pytest.raises(FileNotFoundError, match=r"x1.jpg: image file not found"):
        run(["--detections", str(dets), "--data-root", str(root), "--ci"])
