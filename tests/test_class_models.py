"""--class-model: parsing, the members of a combination, merging, and eval_voc.py and detect.py end to end."""

import argparse
import json
import math

import pytest
import torch
from test_eval_script import write_voc_set

import detect
from engine.class_models import Member, class_model_spec, combine, merge_detections
from eval_voc import get_args_parser, main
from model import FCOSConfig, FCOSDetector

CLASSES = ("nail", "clip_B", "clip_Y", "L_stick")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("clip_Y=a.pth", (("clip_Y",), "a.pth")),
        ("clip_Y, nail=dir/b=c.pth", (("clip_Y", "nail"), "dir/b=c.pth")),
    ],
)
def test_class_model_spec(text, expected):
    assert class_model_spec(text) == expected


@pytest.mark.parametrize("text", ["clip_Y", "=a.pth", "clip_Y=", " , =a.pth"])
def test_class_model_spec_refuses_malformed(text):
    with pytest.raises(argparse.ArgumentTypeError, match="CLASS"):
        class_model_spec(text)


def tiny_detector(seed=0, **overrides):
    torch.manual_seed(seed)
    return FCOSDetector(FCOSConfig(backbone="resnet18", fpn_channels=32, head_convs=1, **overrides))


def test_combine_gives_each_class_one_member_and_thresholds_keep_only_its_classes():
    primary, small, long = tiny_detector(0), tiny_detector(1), tiny_detector(2)
    class_models = [Member(small, ("clip_Y",), "s.pth"), Member(long, ("L_stick", "nail"), "l.pth")]
    members = combine(Member(primary, CLASSES, "p.pth"), class_models)
    assert [(m.source, m.classes) for m in members] == [
        ("s.pth", ("clip_Y",)),
        ("l.pth", ("L_stick", "nail")),
        ("p.pth", ("clip_B",)),
    ]
    inf = math.inf
    assert members[0].thresholds().tolist() == [inf, inf, pytest.approx(0.05), inf]
    assert members[1].thresholds([0.1, 0.2, 0.3, 0.4]).tolist() == pytest.approx([0.1, inf, inf, 0.4])
    assert members[2].thresholds(0.3).tolist() == pytest.approx([inf, 0.3, inf, inf])
    assert combine(Member(primary, CLASSES, "p.pth"), [])[0].classes == CLASSES


@pytest.mark.parametrize(
    "class_models, message",
    [
        ([("other", ("clip_Y",))], "differ from p.pth"),
        ([("same", ("clip_G",))], r"unknown classes \['clip_G'\]"),
        ([("same", ("clip_Y",)), ("same", ("clip_Y", "nail"))], r"\['clip_Y'\] already taken"),
    ],
)
def test_combine_refuses_what_cannot_be_combined(class_models, message):
    models = {"same": tiny_detector(1), "other": tiny_detector(1, classes=("a", "b", "c", "d"))}
    with pytest.raises(ValueError, match=message):
        combine(
            Member(tiny_detector(0), CLASSES, "p.pth"),
            [Member(models[name], classes, f"{name}.pth") for name, classes in class_models],
        )


def test_merge_detections_orders_each_picture_by_score_and_caps_it():
    def det(image, score, category="nail"):
        return {"image_id": image, "category": category, "score": score, "bbox": [0, 0, 1, 1]}

    first = [det("a", 0.9), det("a", 0.2), det("b", 0.5)]
    second = [det("a", 0.6, "clip_Y"), det("b", 0.7, "clip_Y"), det("b", 0.1, "clip_Y")]
    assert merge_detections([first, second], max_per_image=2) == [
        det("a", 0.9),
        det("a", 0.6, "clip_Y"),
        det("b", 0.7, "clip_Y"),
        det("b", 0.5),
    ]


def save(detector, path):
    config = detector.config
    torch.save({"model": detector.state_dict(), "config": config.to_dict(), "classes": list(config.classes)}, path)
    return str(path)


def key(detections, classes):
    """The detections of ``classes``, comparable as a sorted list."""
    chosen = [d for d in detections if d["category"] in classes]
    return sorted((d["image_id"], d["category"], d["score"], d["bbox"]) for d in chosen)


def evaluate(argv, saved):
    result = main(
        get_args_parser().parse_args([*argv, "--workers", "0", "--device", "cpu", "--save-detections", saved])
    )
    return result, json.loads(open(saved).read())


def test_each_class_comes_from_its_model_at_that_models_size(tmp_path, capsys):
    # Sizes small enough that no cap binds (points x classes under pre_nms_top_k, max_detections large), so
    # a class's detections in the combination are exactly those of its model alone, and so is its AP.
    open_cap = dict(max_detections=100_000, score_threshold=0.0)
    primary = save(tiny_detector(0, resize_size=(64, 96), **open_cap), tmp_path / "primary.pth")
    special = save(tiny_detector(1, resize_size=(96, 160), **open_cap), tmp_path / "special.pth")
    root = write_voc_set(
        tmp_path / "voc",
        {
            "p1": [("nail", [20, 30, 80, 90], False), ("clip_B", [150, 20, 200, 70], False)],
            "p2": [("clip_Y", [100, 10, 150, 60], False), ("L_stick", [10, 60, 120, 130], False)],
        },
        size=(240, 140),
        images=True,
    )
    base = ["--data-root", str(root), "--split", "val"]
    alone_primary, dets_primary = evaluate([*base, "--checkpoint", primary], str(tmp_path / "a.json"))
    alone_special, dets_special = evaluate([*base, "--checkpoint", special], str(tmp_path / "b.json"))
    combined, dets = evaluate(
        [*base, "--checkpoint", primary, "--class-model", f"clip_Y,nail={special}"], str(tmp_path / "c.json")
    )
    assert f"clip_Y, nail: {special} at 96x160" in capsys.readouterr().out

    assert key(dets, {"clip_Y", "nail"}) == key(dets_special, {"clip_Y", "nail"})
    assert key(dets, {"clip_B", "L_stick"}) == key(dets_primary, {"clip_B", "L_stick"})
    assert combined["ap"] == {
        "nail": alone_special["ap"]["nail"],
        "clip_B": alone_primary["ap"]["clip_B"],
        "clip_Y": alone_special["ap"]["clip_Y"],
        "L_stick": alone_primary["ap"]["L_stick"],
    }


def test_class_model_needs_a_model(tmp_path):
    root = write_voc_set(tmp_path / "voc", {"p1": [("nail", [20, 30, 80, 90], False)]})
    args = get_args_parser().parse_args(
        ["--detections", "d.json", "--data-root", str(root), "--class-model", "clip_Y=x.pth"]
    )
    with pytest.raises(ValueError, match="--class-model goes with --checkpoint or --onnx"):
        main(args)


def test_detect_takes_each_class_from_its_model_and_its_thresholds(tmp_path, capsys):
    open_cap = dict(max_detections=100_000, score_threshold=0.0)
    primary = save(tiny_detector(0, resize_size=(64, 96), **open_cap), tmp_path / "primary.pth")
    special = save(tiny_detector(1, resize_size=(96, 160), **open_cap), tmp_path / "special.pth")
    pictures = write_voc_set(tmp_path / "voc", {"p1": [], "p2": []}, size=(240, 140), images=True) / "JPEGImages"

    def detect_json(argv, out):
        detect.main(detect.get_args_parser().parse_args([*argv, "--input", str(pictures), "--output-dir", out]))
        return json.loads((tmp_path / out / "detections.json").read_text())

    threshold = ["--score-threshold", "0.06", "--workers", "0", "--device", "cpu"]
    alone_primary = detect_json(["--checkpoint", primary, *threshold], str(tmp_path / "a"))
    alone_special = detect_json(["--checkpoint", special, *threshold], str(tmp_path / "b"))
    combined = detect_json(
        ["--checkpoint", primary, "--class-model", f"clip_Y={special}", *threshold], str(tmp_path / "c")
    )
    assert {d["category"] for d in combined} == set(CLASSES)  # random weights: every class scores above 0.06

    assert key(combined, {"clip_Y"}) == key(alone_special, {"clip_Y"})
    assert key(combined, {"nail", "clip_B", "L_stick"}) == key(alone_primary, {"nail", "clip_B", "L_stick"})

    # auto: each class takes the thresholds stored with the checkpoint that detects it
    for path, value in ((primary, 0.5), (special, 0.07)):
        checkpoint = torch.load(path, weights_only=True)
        checkpoint["thresholds"] = {name: {"best_f1": {"threshold": value}} for name in CLASSES}
        torch.save(checkpoint, path)
    capsys.readouterr()
    args = detect.get_args_parser().parse_args(
        ["--checkpoint", primary, "--class-model", f"clip_Y={special}", "--score-threshold", "auto"]
        + ["--input", str(pictures), "--output-dir", str(tmp_path / "d"), "--workers", "0", "--device", "cpu"]
    )
    assert detect.main(args)["threshold"] == pytest.approx([0.5, 0.5, 0.07, 0.5])
