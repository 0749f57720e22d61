"""Bad input and faults: crafted or broken checkpoints, full disks, broken files. One line naming the file, or a
skip with a word; never a traceback, never code run from a file, never a silent wrong result."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import train_voc
from cli import Terminated, interruption, raise_terminated, sigterm_as_interrupt
from dataset import parse_annotation
from dataset.synthetic import generate
from engine.checkpoint import CheckpointError, load_checkpoint, load_detector, save_checkpoint
from engine.config import BASE
from model import FCOSConfig, FCOSDetector

REPO = Path(__file__).resolve().parents[1]
FOD = ("nail", "clip_B", "clip_Y", "L_stick")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("guards")
    generate(root / "data", {"train": 4, "val": 2}, seed=1, size=(96, 160))
    model = FCOSDetector(FCOSConfig(backbone="resnet18", fpn_channels=32, head_convs=1, resize_size=(96, 160)))
    checkpoint = {"model": model.state_dict(), "config": model.config.to_dict(), "classes": list(FOD), "epoch": 0}
    save_checkpoint(checkpoint, root / "good.pth")
    return root


def script(*argv, cwd=REPO):
    """Run a command line; (exit status, stderr)."""
    done = subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True)
    return done.returncode, done.stderr.strip()


class CreatesAFile:
    """A pickle payload that creates a file when unpickled, as a crafted checkpoint would."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def crafted_checkpoints(folder: Path, data: Path) -> dict[str, Path]:
    folder.mkdir(exist_ok=True)
    good = torch.load(data / "good.pth", weights_only=True)
    files = {}
    files["crafted"] = folder / "crafted.pth"
    torch.save({**good, "extra": CreatesAFile(str(folder / "pwned"))}, files["crafted"])
    files["text"] = folder / "text.pth"
    files["text"].write_text("this is a text file\n")
    files["truncated"] = folder / "truncated.pth"
    files["truncated"].write_bytes((data / "good.pth").read_bytes()[:5000])
    files["plain"] = folder / "plain.pth"
    torch.save({"weights": torch.zeros(3)}, files["plain"])
    files["other"] = folder / "other.pth"
    config = dict(good["config"], fpn_channels=64)  # the weights are for 32 channels
    torch.save({**good, "config": config}, files["other"])
    return files


def test_a_crafted_checkpoint_runs_no_code_anywhere(data, tmp_path):
    files = crafted_checkpoints(tmp_path / "ckpt", data)
    with pytest.raises(CheckpointError, match="crafted.pth: refused"):
        load_checkpoint(files["crafted"])
    commands = [
        ["eval_voc.py", "--checkpoint", str(files["crafted"]), "--data-root", str(data / "data")],
        ["detect.py", "--checkpoint", str(files["crafted"]), "--output-dir", str(tmp_path / "out")],
        ["export_onnx.py", "--checkpoint", str(files["crafted"]), "--output", str(tmp_path / "m.onnx")],
        [
            "train_voc.py",
            "--data-root",
            str(data / "data"),
            "--resume",
            str(files["crafted"]),
            "--output-dir",
            str(tmp_path / "t"),
            "--backbone",
            "resnet18",
            "--resize",
            "96x160",
            "--workers",
            "0",
        ],
    ]
    for argv in commands:
        status, err = script(*argv)
        assert status == 2 and "crafted.pth: refused" in err and "Traceback" not in err, (argv[0], err)
    assert not (tmp_path / "ckpt" / "pwned").exists()


@pytest.mark.parametrize(
    "kind, message",
    [
        ("text", "text.pth: not a readable checkpoint (truncated, or not written by torch.save)"),
        ("truncated", "truncated.pth: not a readable checkpoint"),
        ("plain", "plain.pth: not an FCOS checkpoint"),
        (
            "other",
            "other.pth: the weights do not fit the checkpoint's model settings (fpn_channels: 32 in the weights, "
            "64 in the config)",
        ),
    ],
)
def test_broken_checkpoints_give_one_line_naming_the_file(data, tmp_path, kind, message):
    path = crafted_checkpoints(tmp_path, data)[kind]
    with pytest.raises(CheckpointError) as err:
        load_detector(path)
    assert message in str(err.value)
    status, printed = script("detect.py", "--checkpoint", str(path), "--output-dir", str(tmp_path / "out"))
    assert status == 2 and printed == f"detect.py: error: {err.value}"
    status, printed = script("eval_voc.py", "--checkpoint", str(path), "--data-root", str(data / "data"))
    assert status == 2 and printed.startswith("eval_voc.py: error: ") and len(printed.splitlines()) == 1


def test_a_missing_checkpoint_and_a_weights_only_one_are_clear(data, tmp_path):
    status, printed = script("detect.py", "--checkpoint", str(tmp_path / "none.pth"))
    assert status == 2 and printed == f"detect.py: error: {tmp_path / 'none.pth'}: checkpoint not found"
    with pytest.raises(CheckpointError, match="holds weights only"):
        train_voc.main(
            replace(
                BASE,
                data_root=str(data / "data"),
                resume=str(data / "good.pth"),
                output_dir=str(tmp_path),
                backbone="resnet18",
                workers=0,
                resize=(96, 160),
            )
        )


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    save_checkpoint({"model": {"w": torch.ones(2)}, "config": {}}, path)

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0; file write failed")

    def free_space(folder):  # the partial file fills the disk; removing it frees room again
        free = 0 if (folder / "last.pth.tmp").exists() else 10**8
        return shutil._ntuple_diskusage(10**9, 10**9 - free, free)

    monkeypatch.setattr(torch, "save", disk_full)
    monkeypatch.setattr(shutil, "disk_usage", free_space)
    with pytest.raises(
        CheckpointError,  # it once showed torch's inline_container.cc text
        match=r"last.pth: cannot write the checkpoint \(no space left on the disk\); the previous last.pth is left",
    ):
        save_checkpoint({"model": {"w": torch.zeros(2)}, "config": {}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]


def test_a_checkpoint_is_never_written_with_a_non_finite_value(tmp_path):
    """A NaN learning rate once overwrote a good last.pth with weights of which 88 of 283 tensors were NaN."""
    path = tmp_path / "last.pth"
    save_checkpoint({"model": {"w": torch.ones(2)}, "config": {}}, path)
    momentum = {"state": {0: {"momentum_buffer": torch.tensor([1.0, math.inf])}}}
    for bad, name in (
        ({"model": {"w": torch.tensor([0.0, math.nan])}}, "model.w"),
        ({"model": {"w": torch.ones(2)}, "optimizer": momentum}, "optimizer.state.0.momentum_buffer"),
    ):
        refused = rf"last.pth: not written: 1 tensors hold NaN or infinite values \({name}\)"
        with pytest.raises(CheckpointError, match=refused):
            save_checkpoint({**bad, "config": {}}, path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))


def test_an_unwritable_output_is_found_before_the_work(data, tmp_path):
    (tmp_path / "file").write_text("x")
    for argv in (
        ["detect.py", "--checkpoint", str(data / "good.pth"), "--output-dir", str(tmp_path / "file")],
        [
            "eval_voc.py",
            "--checkpoint",
            str(data / "good.pth"),
            "--data-root",
            str(data / "data"),
            "--analysis",
            str(tmp_path / "file"),
        ],
        ["train_voc.py", "--data-root", str(data / "data"), "--output-dir", str(tmp_path / "file")],
    ):
        status, printed = script(*argv)
        assert status == 2 and "file" in printed and "is a file" in printed and len(printed.splitlines()) == 1, printed


def test_detections_that_are_a_folder_or_binary_are_named(data, tmp_path):
    (tmp_path / "binary.json").write_bytes(bytes(range(256)) * 4)
    for path, message in (
        (tmp_path, "is a folder, not a detections JSON file"),
        (tmp_path / "binary.json", "not a JSON text file (binary content)"),
    ):
        status, printed = script("eval_voc.py", "--detections", str(path), "--data-root", str(data / "data"))
        assert status == 2 and printed == f"eval_voc.py: error: {path}: {message}"


def test_an_unreadable_picture_is_one_line_in_eval_and_train(data, tmp_path):
    broken = tmp_path / "data"
    generate(broken, {"train": 4, "val": 2}, seed=1, size=(96, 160))
    jpeg = broken / "JPEGImages" / "val_00001.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:20] + b"\0" * 200)  # a JPEG header, then nothing decodable
    status, printed = script("eval_voc.py", "--checkpoint", str(data / "good.pth"), "--data-root", str(broken))
    assert status == 2 and "val_00001.jpg" in printed and len(printed.splitlines()) == 1, printed
    status, printed = script(
        "train_voc.py",
        "--data-root",
        str(broken),
        "--train-split",
        "val",
        "--val-split",
        "",
        "--output-dir",
        str(tmp_path / "out"),
        "--backbone",
        "resnet18",
        "--resize",
        "96x160",
        "--batch-size",
        "1",
        "--cache",
    )
    assert status == 2 and "val_00001.jpg" in printed and len(printed.splitlines()) == 1, printed


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda xml: xml.replace("<xmax>", "<xmax>x"), "is missing or not a number"),
        (lambda xml: xml[: len(xml) // 2], "malformed XML"),
        (lambda xml: xml.replace("<name>", "<name>bolt_", 1), "class 'bolt_"),
    ],
)
def test_annotation_errors_are_one_line_from_train(tmp_path, edit, message):
    root = tmp_path / "data"
    generate(root, {"train": 2, "val": 1}, seed=4, size=(96, 160))
    xml = root / "Annotations" / "train_00001.xml"
    xml.write_text(edit(xml.read_text()))
    status, printed = script("train_voc.py", "--data-root", str(root), "--output-dir", str(tmp_path / "out"))
    assert status == 2 and printed.startswith(f"train_voc.py: error: {xml}") and message in printed, printed


def test_boxes_outside_the_picture_are_clipped_with_a_warning_or_refused(tmp_path):
    from dataset import write_annotation

    write_annotation(tmp_path / "past.xml", "p.jpg", 640, 480, [[600, 10, 700, 50]], ["nail"])
    with pytest.warns(UserWarning, match="past.xml: object 0 .* clipped to \\[600.0, 10.0, 640.0, 50.0\\]"):
        assert parse_annotation(tmp_path / "past.xml", FOD)["boxes"].tolist() == [[600, 10, 640, 50]]
    write_annotation(tmp_path / "out.xml", "p.jpg", 640, 480, [[700, 10, 760, 50]], ["nail"])
    with pytest.raises(ValueError, match="out.xml: object 0 .* lies outside the 640x480 picture"):
        parse_annotation(tmp_path / "out.xml", FOD)


def test_a_one_pixel_high_picture_is_detected_on(data, tmp_path):
    cv2.imwrite(str(tmp_path / "line.png"), np.full((1, 4000, 3), 128, np.uint8))
    status, printed = script(
        "detect.py",
        "--checkpoint",
        str(data / "good.pth"),
        "--input",
        str(tmp_path / "line.png"),
        "--output-dir",
        str(tmp_path / "out"),
        "--workers",
        "0",
    )
    assert status == 0 and (tmp_path / "out" / "line.png").is_file(), printed


def project_sources(root: Path) -> list[Path]:
    """The project's own Python files: its packages and scripts as pyproject.toml lists them, and the
    benchmarks; never what else sits in the checkout (a virtual environment, copied data, ...)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
    setup = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    files = [root / f"{module}.py" for module in setup["py-modules"]]
    for package in [*setup["packages"], "benchmarks"]:
        files += sorted((root / package).rglob("*.py"))
    return files


def test_the_source_scan_reads_the_projects_files_only(tmp_path):
    """It once walked a .venv inside the checkout and failed on a library's pickle.load."""
    (tmp_path / "pyproject.toml").write_text('[tool.setuptools]\npackages = ["pkg"]\npy-modules = ["script"]\n')
    for path in ("pkg/a.py", "script.py", "benchmarks/b.py", ".venv/lib/site-packages/c.py", "data/d.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x = 1\n")
    found = sorted(str(p.relative_to(tmp_path)) for p in project_sources(tmp_path))
    assert found == ["benchmarks/b.py", "pkg/a.py", "script.py"]
    assert REPO / "engine" / "checkpoint.py" in project_sources(REPO) and REPO / "train_voc.py" in project_sources(REPO)


def test_no_pickle_loading_without_weights_only_anywhere():
    for source in project_sources(REPO):
        text = source.read_text()
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{source}: {line.strip()}"
        assert "pickle.load" not in text, source


def test_an_empty_split_or_one_without_objects_is_an_error_not_a_nan(data, tmp_path):
    root = tmp_path / "data"
    generate(root, {"val": 2}, seed=1, size=(96, 160))
    (root / "ImageSets" / "Main" / "empty.txt").write_text("\n")
    status, printed = script(
        "eval_voc.py", "--checkpoint", str(data / "good.pth"), "--data-root", str(root), "--split", "empty"
    )
    assert status == 2 and printed.endswith("empty.txt: split 'empty' lists no pictures"), printed
    for xml in (root / "Annotations").glob("*.xml"):  # no objects left in the split
        text = xml.read_text()
        xml.write_text(text[: text.index("<object>")] + "</annotation>\n")
    (tmp_path / "none.json").write_text("[]")
    status, printed = script("eval_voc.py", "--detections", str(tmp_path / "none.json"), "--data-root", str(root))
    assert status == 2 and printed.endswith(
        "has no objects of the classes nail, clip_B, clip_Y, L_stick; nothing to score"
    )


def test_the_data_tools_answer_in_one_line(tmp_path):
    status, printed = script("-m", "dataset.voc", "--data-root", str(tmp_path / "absent"))
    assert status == 2 and printed == f"python -m dataset.voc: error: {tmp_path / 'absent'}: data set folder not found"
    (tmp_path / "a.csv").write_text("a.jpg,1,2,x,4,nail\n")
    status, printed = script("-m", "dataset.convert", "--csv", str(tmp_path / "a.csv"), "--out", str(tmp_path / "o"))
    assert status == 2 and printed.startswith("python -m dataset.convert: error: ") and "row 1" in printed
    status, printed = script("-m", "dataset.synthetic", "--out", str(REPO / "README.md"), "--train", "1")
    assert status == 2 and "not a synthetic data set made by this project" in printed


def test_sub_pixel_boxes_are_not_written():
    from engine.inference import to_detections

    output = {
        "boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0], [50.0, 50.0, 50.4, 70.0], [-9.0, 5.0, 0.3, 9.0]]),
        "scores": torch.tensor([0.9, 0.8, 0.7]),
        "labels": torch.tensor([1, 2, 3]),
    }
    target = {"image_id": "x", "orig_size": (100, 200), "scale": torch.tensor([1.0, 1.0]), "offset": torch.zeros(2)}
    found = to_detections(output, target, FOD)
    assert [d["bbox"] for d in found] == [[11.0, 11.0, 30.0, 30.0]]  # the others cover no whole pixel across


def full_disk(src, dst):
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("failure", ["replace", "write", "interrupt"])
def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_other(tmp_path, monkeypatch, failure):
    from engine import atomic

    path = tmp_path / "results.json"
    atomic.write_text_atomically("old", path)
    if failure == "replace":
        monkeypatch.setattr(atomic.os, "replace", full_disk)
    with pytest.raises(OSError if failure != "interrupt" else KeyboardInterrupt), atomic.atomic_write(path) as tmp:
        tmp.write_text("half")
        if failure == "write":
            raise OSError(28, "No space left on device")
        if failure == "interrupt":
            raise KeyboardInterrupt
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_an_atomic_write_reaches_the_disk_before_it_replaces_the_old_file(tmp_path, monkeypatch):
    """Without it, a power cut after the replacement could leave an empty file where the old one was."""
    from engine import atomic

    calls = []
    real_replace = atomic.os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: calls.append(("fsync", atomic.os.fstat(fd).st_ino)))
    monkeypatch.setattr(atomic.os, "replace", lambda src, dst: calls.append(("replace", src)) or real_replace(src, dst))
    path = tmp_path / "events.json"
    atomic.write_text_atomically("new", path)
    assert calls == [("fsync", path.stat().st_ino), ("replace", tmp_path / "events.json.tmp")]
    assert path.read_text() == "new"


def test_detections_events_and_figures_are_written_atomically(tmp_path, monkeypatch):
    from engine import annotate, atomic
    from engine.events import EventLog
    from engine.plots import new_figure, save_figure

    detections, figure = tmp_path / "detections.json", tmp_path / "curve.png"
    annotate.write_json_atomically([{"a": 1}], detections)
    save_figure(new_figure(2, 2), figure)
    log = EventLog(tmp_path, k=2, n=3)
    log.write()
    written = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert set(written) == {"detections.json", "curve.png", "events.json", "events.csv"}
    monkeypatch.setattr(atomic.os, "replace", full_disk)
    with pytest.raises(OSError):
        annotate.write_json_atomically([{"b": 2}], detections)
    with pytest.raises(OSError):
        save_figure(new_figure(3, 3), figure)
    with pytest.raises(OSError):
        log.write()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == written


def test_a_thresholds_file_with_a_byte_order_mark_reads_as_without(tmp_path):
    from engine.thresholds import read_thresholds

    points = {"nail": {"best_f1": {"threshold": 0.4, "precision": 0.9, "recall": 0.8, "f1": 0.85}}}
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps(points), encoding="utf-8-sig")
    assert read_thresholds(path) == points


# A command that sleeps in a try/finally, as a tool sits in its work with files open, run as the command line runs it.
SLEEPER = """
import sys, time
from pathlib import Path
from cli import run

def main(args):
    marker = Path(sys.argv[1])
    try:
        marker.write_text("started")
        time.sleep(120)
    finally:
        marker.write_text("cleaned up")

run(main, None, "sleeper")
"""


def test_sigterm_unwinds_as_ctrl_c_does_and_exits_143(tmp_path):
    """A SIGTERM (``docker stop``, a service manager) once ended every command at once, with no word: a video being
    written was left without its index, unplayable, and its events unwritten."""
    marker = tmp_path / "marker"
    argv = [sys.executable, "-c", SLEEPER, str(marker)]
    process = subprocess.Popen(argv, cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.is_file() and process.poll() is None:
        assert time.monotonic() < deadline, "the command did not start"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert (process.returncode, err.strip(), marker.read_text()) == (143, "sleeper: stopped by SIGTERM", "cleaned up")


LOADING = """
import sys, time
from pathlib import Path
import torch
from cli import run

class Slow(torch.utils.data.Dataset):
    def __len__(self):
        return 1_000_000

    def __getitem__(self, index):
        time.sleep(0.05)
        return torch.zeros(3)

def main(args):
    for index, batch in enumerate(torch.utils.data.DataLoader(Slow(), batch_size=2, num_workers=2)):
        if index == 3:
            Path(sys.argv[1]).write_text("loading")

run(main, None, "loader")
"""


def test_a_sigterm_to_a_command_and_its_workers_is_one_line(tmp_path):
    """Signalled with its DataLoader workers (a service manager stops them all), a command printed its line, then
    PyTorch's traceback for each worker the SIGTERM ended."""
    marker = tmp_path / "marker"
    argv = [sys.executable, "-c", LOADING, str(marker)]
    process = subprocess.Popen(argv, cwd=REPO, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not marker.is_file() and process.poll() is None:
        assert time.monotonic() < deadline, "the command did not start"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert (process.returncode, err.strip()) == (143, "loader: stopped by SIGTERM")


def test_a_sigterm_ignored_or_handled_already_is_left_as_it_is():
    before = signal.getsignal(signal.SIGTERM)
    try:
        for handler in (signal.SIG_IGN, signal.default_int_handler):
            signal.signal(signal.SIGTERM, handler)
            with sigterm_as_interrupt():
                assert signal.getsignal(signal.SIGTERM) == handler
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with pytest.raises(Terminated) as raised, sigterm_as_interrupt():
            assert signal.getsignal(signal.SIGTERM) == raise_terminated
            signal.raise_signal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, before)
    assert interruption(raised.value) == ("stopped by SIGTERM", 143)
    assert interruption(KeyboardInterrupt()) == ("interrupted", 130)
