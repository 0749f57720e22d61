"""benchmarks/peer_yolo.py: VOC -> YOLO labels and YOLO boxes -> detections JSON (known answers, no ultralytics),
the network guard, the settings it takes; with ultralytics installed, a tiny run end to end and a refused download."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import eval_voc
from benchmarks import peer_yolo
from benchmarks.peer_yolo import (
    DownloadAttempted,
    check_args,
    convert_split,
    epochs_for,
    get_args_parser,
    label_text,
    network_off,
    train_settings,
    write_data_yaml,
    yolo_boxes,
    yolo_detections,
    yolo_overrides,
)
from dataset import FOD_CLASSES, load_ground_truth, write_annotation, write_split
from dataset.exports import read_yolo
from dataset.synthetic import generate

REPO = Path(__file__).resolve().parents[1]
# found, not imported: importing ultralytics here would write its settings into the user's folder and set
# OMP_NUM_THREADS for every later test; the runs below import it in their own processes, as the benchmark does
needs_ultralytics = pytest.mark.skipif(
    importlib.util.find_spec("ultralytics") is None,
    reason="ultralytics is not installed (pip install -r benchmarks/requirements-peer.txt)",
)


def outside_pytest(argv: list[str]) -> subprocess.CompletedProcess:
    """``python ARGV`` in the repository, in an environment without pytest's marker, which ultralytics reads to
    switch its analytics off by itself: the run must stay offline on its own settings."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    return subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True)


def test_a_voc_box_becomes_the_continuous_box_relative_to_the_picture():
    # xmin 11 .. xmax 30 covers the pixels 10 .. 29, x 10 .. 30 continuous; y 20 .. 60 likewise, in W 100, H 200
    boxes = yolo_boxes(np.array([[11, 21, 30, 60]], dtype=np.float32), width=100, height=200)
    np.testing.assert_allclose(boxes, [[0.2, 0.2, 0.2, 0.2]], rtol=0, atol=1e-12)
    assert label_text(np.array([1]), boxes) == "0 0.2 0.2 0.2 0.2\n"
    whole = yolo_boxes(np.array([[1, 1, 100, 200]]), width=100, height=200)  # the whole picture
    np.testing.assert_allclose(whole, [[0.5, 0.5, 1.0, 1.0]], rtol=0, atol=1e-12)
    assert label_text(np.zeros(0, dtype=np.int64), yolo_boxes(np.zeros((0, 4)), 100, 200)) == ""


@pytest.fixture
def voc(tmp_path) -> Path:
    """A VOC set of one 100 x 200 picture: a nail at xmin 11, ymin 21, xmax 30, ymax 60 and a difficult clip_Y."""
    root = tmp_path / "voc"
    (root / "JPEGImages").mkdir(parents=True)
    cv2.imwrite(str(root / "JPEGImages" / "a.jpg"), np.full((200, 100, 3), 90, np.uint8))
    boxes = [[11, 21, 30, 60], [40, 50, 70, 90]]
    write_annotation(
        root / "Annotations" / "a.xml", "a.jpg", 100, 200, boxes, ["nail", "clip_Y"], difficult=[False, True]
    )
    write_split(root, "train", ["a"])
    return root


def test_a_split_converts_to_symlinks_and_labels_replacing_an_earlier_conversion(voc, tmp_path):
    out = tmp_path / "yolo"
    (out / "labels" / "train").mkdir(parents=True)
    (out / "labels" / "train" / "stale.txt").write_text("3 0.5 0.5 0.1 0.1\n")
    (out / "labels" / "train.cache").write_text("stale")
    assert convert_split(voc, "train", FOD_CLASSES, out) == (1, 1)  # the difficult clip is left out
    assert sorted(p.name for p in (out / "labels" / "train").iterdir()) == ["a.txt"]
    assert not (out / "labels" / "train.cache").exists()
    assert (out / "labels" / "train" / "a.txt").read_text() == "0 0.2 0.2 0.2 0.2\n"
    picture = out / "images" / "train" / "a.jpg"
    assert picture.is_symlink() and picture.resolve() == (voc / "JPEGImages" / "a.jpg").resolve()
    data = write_data_yaml(out, FOD_CLASSES, "train", "train").read_text()
    assert f"train: {(out / 'images' / 'train').resolve()}\n" in data
    assert "names:\n  0: nail\n  1: clip_B\n  2: clip_Y\n  3: L_stick\n" in data


def test_converted_labels_read_back_as_the_voc_boxes(tmp_path):
    """The project's own YOLO reader (dataset.exports) gives back every box of a synthetic set, 0-based inclusive."""
    generate(tmp_path / "voc", {"train": 3}, seed=2, size=(90, 160))
    convert_split(tmp_path / "voc", "train", FOD_CLASSES, tmp_path / "yolo")
    records = read_yolo(tmp_path / "yolo" / "labels" / "train", tmp_path / "yolo" / "images" / "train", FOD_CLASSES)
    truth = load_ground_truth(tmp_path / "voc", "train", FOD_CLASSES)
    assert len(records) == 3 and sum(len(r.boxes) for r in records) == sum(len(t["boxes"]) for t in truth.values())
    for record in records:
        expected = truth[Path(record.image).stem]
        np.testing.assert_allclose(np.array(record.boxes), expected["boxes"] - 1, atol=1e-4)
        assert record.names == [FOD_CLASSES[k - 1] for k in expected["labels"]]


def test_a_broken_voc_file_is_named(voc, tmp_path):
    (voc / "Annotations" / "a.xml").write_text("<annotation><size>")
    with pytest.raises(ValueError, match="a.xml: malformed XML"):
        convert_split(voc, "train", FOD_CLASSES, tmp_path / "yolo")


def test_yolo_boxes_become_the_voc_frame_of_the_original_picture():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0], [-5.0, 190.0, 20.5, 230.0], [50.0, 50.0, 50.6, 80.0]])
    entries = yolo_detections(
        "a", boxes, torch.tensor([0.9, 0.5, 0.4]), torch.tensor([2.0, 0.0, 1.0]), FOD_CLASSES, (200, 100)
    )
    assert entries[0] == {"image_id": "a", "category": "clip_Y", "score": pytest.approx(0.9), "bbox": [11, 21, 30, 60]}
    assert entries[1]["category"] == "nail" and entries[1]["bbox"] == [1, 191, 20.5, 200]  # clipped to the picture
    assert len(entries) == 2  # 0.6 pixels across cannot be written in the 1-based frame


def test_labels_taken_back_to_boxes_score_a_perfect_map(tmp_path):
    """VOC -> YOLO label -> the pixel box YOLO reads from it -> detections JSON: the XML boxes again, mAP 1."""
    root = tmp_path / "voc"
    generate(root, {"val": 3}, seed=4, size=(90, 160))
    convert_split(root, "val", FOD_CLASSES, tmp_path / "yolo")
    detections = []
    for label in sorted((tmp_path / "yolo" / "labels" / "val").glob("*.txt")):
        rows = np.loadtxt(label, ndmin=2)
        size = torch.tensor([160.0, 90.0])
        centres, extents = torch.from_numpy(rows[:, 1:3]) * size, torch.from_numpy(rows[:, 3:5]) * size
        xyxy = torch.cat([centres - extents / 2, centres + extents / 2], dim=1)
        scores = torch.ones(len(rows))
        detections += yolo_detections(label.stem, xyxy, scores, torch.from_numpy(rows[:, 0]), FOD_CLASSES, (90, 160))
    truth = load_ground_truth(root, "val", FOD_CLASSES)
    for image_id, entry in truth.items():
        mine = np.array([d["bbox"] for d in detections if d["image_id"] == image_id])
        np.testing.assert_allclose(mine, entry["boxes"], atol=1e-4)
    (tmp_path / "dets.json").write_text(json.dumps(detections))
    argv = ["--detections", str(tmp_path / "dets.json"), "--data-root", str(root), "--split", "val"]
    assert eval_voc.main(eval_voc.get_args_parser().parse_args(argv))["map"] == pytest.approx(1.0)


def test_the_network_guard_refuses_internet_and_keeps_local_sockets(tmp_path):
    original = socket.getaddrinfo
    with pytest.raises(ConnectionError, match="code outside ultralytics tried to reach example.org, but .* offline"):
        with network_off():
            with pytest.raises(DownloadAttempted):
                socket.create_connection(("example.org", 443))
            with socket.socket(socket.AF_INET) as inet, pytest.raises(DownloadAttempted, match="127.0.0.1"):
                inet.connect(("127.0.0.1", 9))
            with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as client:
                server.bind(str(tmp_path / "s"))
                server.listen(1)
                client.connect(str(tmp_path / "s"))  # what data loader workers use
    assert socket.getaddrinfo is original


def test_an_attempt_swallowed_on_the_way_still_stops_the_run():
    with pytest.raises(ConnectionError, match="tried to reach pypi.org"):
        with network_off():
            try:
                socket.getaddrinfo("pypi.org", 443)
            except BaseException:  # what a thread or a bare except would do with it
                pass
    with network_off():
        pass  # nothing tried, nothing raised


def test_yolo_settings_are_read_as_yaml_and_checked():
    known = {"mosaic", "close_mosaic", "cache", "fliplr", "optimizer"}
    pairs = ["mosaic=0.5", "close_mosaic=0", "cache=false", "optimizer=SGD"]
    assert yolo_overrides(pairs, known) == {"mosaic": 0.5, "close_mosaic": 0, "cache": False, "optimizer": "SGD"}
    for pair, message in (
        ("mosaic", "KEY=VALUE"),
        ("pretrained=yolo11n.pt", "set by this benchmark"),
        ("amp=True", "set by this benchmark"),
        ("val=True", "set by this benchmark"),
        ("mosiac=0", "mosiac: not a YOLO train setting"),
    ):
        with pytest.raises(ValueError, match=message):
            yolo_overrides([pair], known)


def test_the_length_and_the_model_are_checked():
    assert epochs_for(8250, 275) == 30 and epochs_for(276, 275) == 2 and epochs_for(1, 275) == 1
    with pytest.raises(ValueError, match="--pictures must be at least 1"):
        epochs_for(0, 275)
    with pytest.raises(ValueError, match="never a .pt"):
        check_args(get_args_parser().parse_args(["--model", "yolo11n.pt"]))
    with pytest.raises(ValueError, match="--batch must be at least 1"):
        check_args(get_args_parser().parse_args(["--batch", "0"]))
    with pytest.raises(ValueError, match="--minutes must be positive, got 0.0"):
        check_args(get_args_parser().parse_args(["--minutes", "0"]))
    for both in (["--epochs", "3", "--pictures", "100"], ["--pictures", "100", "--minutes", "30"]):
        with pytest.raises(SystemExit):
            get_args_parser().parse_args(both)


def test_a_run_is_as_long_as_its_epochs_its_pictures_or_its_minutes(capsys):
    def settings(*argv: str) -> dict:
        return train_settings(get_args_parser().parse_args([*argv, "--seed", "3"]), 275, {"mosaic": 0.5}, 64)

    common = {"batch": 16, "imgsz": 640, "seed": 3, "mosaic": 0.5}
    assert settings() == {"epochs": 100, **common}
    assert settings("--pictures", "8000") == {"epochs": 30, **common}
    assert "30 epochs of 275 pictures = 8250 pictures, 540 batches of 16" in capsys.readouterr().out
    assert settings("--minutes", "45") == {"epochs": 100, "time": 0.75, **common}
    assert "45 minutes of epochs of 275 pictures" in capsys.readouterr().out


def test_ultralytics_is_imported_by_the_benchmark_alone():
    """The project never imports it; the benchmark only when it runs (inside its functions)."""
    sources = [REPO / f"{name}.py" for name in ("train_voc", "eval_voc", "detect", "export_onnx")]
    for package in ("cli", "model", "dataset", "engine"):
        sources += sorted((REPO / package).rglob("*.py"))
    assert [s for s in sources if "ultralytics" in s.read_text()] == []
    assert peer_yolo.__name__ in sys.modules and "ultralytics" not in sys.modules


def test_the_optional_dependency_is_named_once_in_both_places():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert (REPO / "benchmarks" / "requirements-peer.txt").read_text().split() == extras["peer"]
    assert not any("ultralytics" in line for line in (REPO / "requirements.txt").read_text().splitlines())


@needs_ultralytics
def test_a_tiny_run_trains_detects_and_scores_offline(tmp_path):
    generate(tmp_path / "data", {"train": 8, "val": 4}, seed=0)
    out = tmp_path / "out"
    argv = ["--data-root", str(tmp_path / "data"), "--out", str(out), "--epochs", "2", "--batch", "4"]
    argv += ["--imgsz", "160", "--threads", "1", "--yolo", "nbs=4"]  # a step a batch
    done = outside_pytest(["-m", "benchmarks.peer_yolo", *argv])
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert (results["steps"], results["batches"], results["epochs"], results["pictures_seen"]) == (4, 4, 2, 16)
    assert set(results["ap"]) == set(FOD_CLASSES) and 0 <= results["map"] <= 1
    assert results["inference_ms_per_picture"] > 0 and results["picture_sizes"] == ["640x360"]
    assert results["settings"]["pretrained"] is False and results["cpu_capability"]
    assert "mAP=====>" in done.stdout and (out / "train" / "weights" / "last.pt").is_file()
    detections = json.loads((out / "detections_val.json").read_text())
    assert {d["image_id"] for d in detections} <= {f"val_{i:05d}" for i in range(4)}
    assert not list((out / "yolo_data" / "images").rglob("*.jpg"))[0].resolve().is_relative_to(out)


@needs_ultralytics
def test_a_download_attempt_stops_with_one_line(tmp_path):
    code = (
        "from pathlib import Path\nfrom benchmarks import peer_yolo as p\n"
        f"p.import_ultralytics(Path({str(tmp_path)!r}))\nfrom ultralytics import YOLO\n"
        "with p.ultralytics_offline(1):\n    YOLO('yolo11n.pt')\n"
    )
    done = outside_pytest(["-c", code])
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and last.startswith("ConnectionError: ultralytics/"), done.stderr[-2000:]
    assert "(attempt_download_asset) tried to reach https://github.com/" in last and "yolo11n.pt" in last
