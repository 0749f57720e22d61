"""detect.py: boxes back in original pixels, pictures at their original size, a JSON that eval_voc.py scores,
unreadable files skipped with a non-zero exit, and the default checkpoint and inputs."""

import json
import os
import re
import runpy
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import cli
import detect
from dataset import VOCDataset, load_ground_truth, xml_to_pixels
from dataset.drawing import class_colour
from dataset.pictures import PictureDataset, find_pictures
from dataset.synthetic import generate
from engine.checkpoint import newest_checkpoint
from eval_voc import get_args_parser as eval_args_parser
from eval_voc import main as eval_main
from model import FCOSConfig, FCOSDetector

REPO = Path(__file__).resolve().parents[1]
RESIZE = (128, 224)
# name -> (width, height, PIL mode): landscape, portrait, small (upscaled), PNG with alpha, grayscale, upper-case BMP
PICTURES = {
    "landscape.jpg": (300, 200, "RGB"),
    "portrait.JPEG": (150, 260, "RGB"),
    "small.jpg": (40, 30, "RGB"),
    "alpha.png": (257, 181, "RGBA"),
    "gray.png": (123, 77, "L"),
    "upper.BMP": (90, 200, "RGB"),
}
# input-tensor boxes the model returns for every picture: one inside, one past every edge (clipped)
BOXES = torch.tensor([[4.0, 6.0, 40.0, 50.0], [-5.0, -5.0, 1e4, 1e4]])
LABELS = [2, 1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = FCOSConfig(backbone="resnet18", fpn_channels=32, head_convs=1, gn_groups=8, resize_size=RESIZE)
    path = tmp_path_factory.mktemp("ckpt") / "model_1.pth"
    torch.save(
        {
            "model": FCOSDetector(config).state_dict(),
            "config": config.to_dict(),
            "classes": list(config.classes),
            "epoch": 1,
        },
        path,
    )
    return path


def write_picture(path: Path, width: int, height: int, mode: str = "RGB", seed: int = 0) -> Path:
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.squeeze(-1) if mode == "L" else pixels, mode).save(path)
    return path


def exact_scale(width: int, height: int, resize_size=RESIZE) -> tuple[float, float]:
    """(new_w / W, new_h / H) of a picture resized keeping its aspect ratio, sides rounded to pixels."""
    s = min(resize_size[0] / min(width, height), resize_size[1] / max(width, height))
    return round(width * s) / width, round(height * s) / height


def run(argv):
    return detect.main(detect.get_args_parser().parse_args(argv))


def fix_outputs(monkeypatch, outputs):
    """Make the detector hand out ``outputs`` (one dict per picture) in the order the pictures arrive: a dense
    pass that only checks its input, and a selection that returns the next outputs."""
    queue = iter(outputs)

    def dense(self, images):
        assert images.ndim == 4 and images.shape[2] % 32 == 0 and images.shape[3] % 32 == 0
        return torch.zeros(len(images), 1, self.config.num_classes), torch.zeros(len(images), 1, 4)

    def select(self, scores, boxes, image_size, score_threshold=None, pass_sizes=None):
        return [next(queue) for _ in range(len(scores))]

    monkeypatch.setattr(FCOSDetector, "dense", dense)
    monkeypatch.setattr(FCOSDetector, "select", select)


def test_boxes_come_back_in_original_pixels(tmp_path, checkpoint, monkeypatch):
    for k, (name, (w, h, mode)) in enumerate(PICTURES.items()):
        write_picture(tmp_path / "in" / name, w, h, mode, seed=k)
    output = {"boxes": BOXES, "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor(LABELS)}
    fix_outputs(monkeypatch, [output] * len(PICTURES))
    result = run(
        [
            "--checkpoint",
            str(checkpoint),
            "--input",
            str(tmp_path / "in"),
            "--output-dir",
            str(tmp_path / "out"),
            "--device",
            "cpu",
            "--workers",
            "0",
            "--batch-size",
            "4",
        ]
    )
    assert result["failures"] == []
    saved = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert saved == result["detections"] and len(saved) == 2 * len(PICTURES)
    classes = FCOSConfig().classes
    for name, (w, h, _) in PICTURES.items():
        stem = Path(name).stem
        sx, sy = exact_scale(w, h)
        inside, clipped = (d for d in saved if d["image_id"] == stem)
        assert inside["category"] == classes[LABELS[0] - 1] and inside["score"] == pytest.approx(0.9)
        x1, y1, x2, y2 = BOXES[0].tolist()
        assert inside["bbox"] == pytest.approx([x1 / sx + 1, y1 / sy + 1, x2 / sx, y2 / sy], abs=1e-4)
        assert clipped["bbox"] == pytest.approx([1, 1, w, h]) and clipped["category"] == classes[LABELS[1] - 1]
        written = tmp_path / "out" / (stem + (".png" if name.endswith(".png") else ".jpg"))
        with Image.open(written) as im:
            assert im.size == (w, h) and im.mode == "RGB"
    # the inside box's left edge, drawn in its class's colour (PNG: exact pixels)
    drawn = cv2.imread(str(tmp_path / "out" / "alpha.png"))
    sx, sy = exact_scale(*PICTURES["alpha.png"][:2])
    assert tuple(drawn[round(45 / sy), round(4 / sx)]) == class_colour(LABELS[0])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [".lock", "detections.json", "landscape.jpg", "portrait.jpg", "small.jpg", "alpha.png", "gray.png", "upper.jpg"]
    )  # .lock: the run held its folder (engine.folder_lock)


# scale 1.32 (upscaled), 0.66 (full decode, shrunk), 0.4 and 0.23 (decoded at 1/2 and 1/4, then resized)
@pytest.mark.parametrize("size", [(90, 170), (180, 340), (300, 560), (560, 990)])
def test_preprocessing_matches_the_evaluation_data_set(tmp_path, size):
    generate(tmp_path / "voc", {"val": 2}, seed=1, size=size)
    voc = VOCDataset(tmp_path / "voc", "val", train=False, resize_size=RESIZE)
    pictures = PictureDataset(sorted((tmp_path / "voc" / "JPEGImages").glob("*.jpg")), RESIZE)
    for (image, target), (expected, expected_target) in zip(pictures, voc):
        assert torch.equal(image, expected)
        assert torch.equal(target["scale"], expected_target["scale"])
        assert target["orig_size"] == expected_target["orig_size"] == size
        assert target["picture"].shape == (*size, 3)


def test_detections_json_scores_map_1_in_eval_voc(tmp_path, checkpoint, monkeypatch, capsys):
    root = tmp_path / "voc"
    ids = generate(root, {"val": 3}, seed=0, size=(150, 260))["val"]
    classes = FCOSConfig().classes
    ground_truth = load_ground_truth(root, "val", classes)
    scale = torch.tensor(exact_scale(260, 150)).repeat(2)
    perfect = [
        {
            "boxes": xml_to_pixels(torch.as_tensor(ground_truth[i]["boxes"])) * scale,
            "scores": torch.full((len(ground_truth[i]["labels"]),), 0.9),
            "labels": torch.as_tensor(ground_truth[i]["labels"]),
        }
        for i in ids
    ]
    fix_outputs(monkeypatch, perfect)
    out = tmp_path / "out"
    result = run(
        [
            "--checkpoint",
            str(checkpoint),
            "--input",
            str(root / "JPEGImages"),
            "--output-dir",
            str(out),
            "--device",
            "cpu",
            "--workers",
            "0",
            "--batch-size",
            "2",
        ]
    )
    for i in ids:
        boxes = [d["bbox"] for d in result["detections"] if d["image_id"] == i]
        np.testing.assert_allclose(boxes, ground_truth[i]["boxes"], atol=1e-3)
    scored = eval_main(
        eval_args_parser().parse_args(
            ["--detections", str(out / "detections.json"), "--data-root", str(root), "--split", "val"]
        )
    )
    assert scored["map"] == pytest.approx(1.0)
    assert "mAP=====>1.000" in capsys.readouterr().out


def test_unreadable_file_is_reported_and_skipped(tmp_path, checkpoint, monkeypatch, capsys):
    folder = tmp_path / "in"
    write_picture(folder / "a.jpg", 120, 80)
    write_picture(folder / "c.png", 64, 96, seed=1)
    (folder / "b.jpg").write_bytes(b"not a picture")
    (folder / "notes.txt").write_text("not an input")
    argv = ["--checkpoint", str(checkpoint), "--input", str(folder), "--device", "cpu", "--batch-size", "2"]
    result = run(argv + ["--output-dir", str(tmp_path / "out"), "--workers", "2"])
    assert len(result["failures"]) == 1 and "b.jpg" in result["failures"][0]
    assert "b.jpg" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".lock", "a.jpg", "c.png", "detections.json"]
    assert {d["image_id"] for d in result["detections"]} <= {"a", "c"}

    def exit_status(output_dir: Path) -> int:
        monkeypatch.setattr(sys, "argv", ["detect.py", *argv, "--output-dir", str(output_dir), "--workers", "0"])
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(REPO / "detect.py"), run_name="__main__")
        return exit_info.value.code

    assert exit_status(tmp_path / "out2") == 1
    (folder / "b.jpg").unlink()
    assert exit_status(tmp_path / "out3") == 0


def test_defaults_newest_checkpoint_and_test_images(tmp_path, checkpoint, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run([])
    (tmp_path / "checkpoint" / "demo").mkdir(parents=True)
    for name, age in [("checkpoint/old.pth", 300), ("checkpoint/demo/last.pth", 0), ("checkpoint/z.pth", 100)]:
        path = tmp_path / name
        path.write_bytes(checkpoint.read_bytes() if age == 0 else b"not a checkpoint")
        os.utime(path, (path.stat().st_atime, path.stat().st_mtime - age))
    assert newest_checkpoint() == Path("checkpoint/demo/last.pth")
    write_picture(tmp_path / "test_images" / "road.jpg", 160, 90)
    result = run(["--workers", "0"])
    assert result["checkpoint"] == Path("checkpoint/demo/last.pth") and result["failures"] == []
    assert (tmp_path / "outputs" / "detect" / "road.jpg").is_file()
    assert (tmp_path / "outputs" / "detect" / "detections.json").is_file()


def test_find_pictures(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.bmp", "d.jpeg", "e.txt", "sub/f.jpg"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in find_pictures(str(tmp_path))] == ["a.jpg", "b.PNG", "c.bmp", "d.jpeg"]
    assert [p.name for p in find_pictures(str(tmp_path / "*.jp*g"))] == ["a.jpg", "d.jpeg"]
    assert [p.name for p in find_pictures(str(tmp_path / "sub" / "f.jpg"))] == ["f.jpg"]
    for spec in [str(tmp_path / "nope"), str(tmp_path / "*.gif")]:
        with pytest.raises(FileNotFoundError, match="nope|no pictures"):
            find_pictures(spec)


@pytest.mark.parametrize(
    "names, output_dir, error, message",
    [
        (["a.jpg", "a.png"], "out", ValueError, "share the image id 'a'"),
        (["a.jpg"], ".", ValueError, "would overwrite the input"),
        ([], ".", FileNotFoundError, "no pictures"),
    ],
)
def test_clear_errors(tmp_path, checkpoint, monkeypatch, capsys, names, output_dir, error, message):
    for name in names:
        write_picture(tmp_path / name, 32, 32)
    argv = ["--checkpoint", str(checkpoint), "--input", str(tmp_path), "--output-dir", str(tmp_path / output_dir)]
    with pytest.raises(error, match=re.escape(message)):
        run(argv)
    monkeypatch.delenv("FCOS_DEBUG", raising=False)
    with pytest.raises(SystemExit) as err:  # what the script prints: one line, no traceback
        cli.run(detect.main, detect.get_args_parser().parse_args(argv), "detect.py")
    printed = capsys.readouterr().err.strip()
    assert err.value.code == 2 and printed.startswith("detect.py: error: ") and message in printed
    assert "\n" not in printed and "Traceback" not in printed


def test_the_demo_draws_at_the_thresholds_of_its_final_evaluation(tmp_path, checkpoint, monkeypatch):
    import train_voc

    state = torch.load(checkpoint, weights_only=True)
    state["model"]["head.cls_logits.bias"].zero_()  # every class scores about 0.5 everywhere
    state["thresholds"] = {name: {"best_f1": {"threshold": 1.1}} for name in state["classes"]}
    state["thresholds"]["clip_Y"]["best_f1"]["threshold"] = 0.0
    (tmp_path / "out").mkdir()
    torch.save(state, tmp_path / "out" / "last.pth")
    write_picture(tmp_path / "test_images" / "road.jpg", 160, 90)
    monkeypatch.chdir(tmp_path)
    train_voc.demo_epilogue(Path("out"), torch.device("cpu"))
    found = json.loads((tmp_path / "out" / "detections" / "detections.json").read_text())
    assert found and {d["category"] for d in found} == {"clip_Y"}


def test_nms_iou_sets_the_overlap_the_loaded_model_suppresses_at(checkpoint):
    args = detect.get_args_parser().parse_args(["--checkpoint", str(checkpoint), "--device", "cpu"])
    assert detect.load_frame_detector(args)[0].detector.config.nms_iou == FCOSConfig().nms_iou
    args = detect.get_args_parser().parse_args(["--checkpoint", str(checkpoint), "--device", "cpu", "--nms-iou", "0.3"])
    assert detect.load_frame_detector(args)[0].detector.config.nms_iou == 0.3
