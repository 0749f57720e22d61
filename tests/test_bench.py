"""benchmarks/bench.py: the cheap rows run through their functions and give positive timings."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_cheap_rows_give_positive_timings(tmp_path):
    bench = load_bench()
    rows = [
        bench.bench_assignment(repeats=1, size=(64, 96), num_boxes=3),
        bench.bench_postprocess(repeats=1, size=(64, 96), batch=2, num_classes=4),
        bench.bench_voc_scoring(repeats=1, num_detections=200, num_images=20),
    ]
    for row in rows:
        assert row.ours is not None and row.ours > 0 and math.isfinite(row.ours)
    skipped = bench.bench_data_loading(tmp_path / "absent", num_batches=1)
    assert skipped.ours is None and "skipped" in skipped.note
    table = bench.markdown_table(rows + [skipped])
    assert table.count("\n") == len(rows) + 2 and "skipped" in table


def test_the_amp_rows_time_each_trunk_in_both_precisions_and_say_what_auto_picks():
    bench = load_bench()
    (row,) = bench.bench_amp(repeats=1, recipe="demo", trunks=("efficientnet_lite0",))
    assert row.what == "demo step with efficientnet_lite0, bfloat16 against float32"
    assert row.ours > 0 and row.reference > 0 and row.note == "--amp auto picks off here"


def test_the_edge_rows_time_each_candidate_in_each_runtime_against_fod_cpu_and_yolo(monkeypatch):
    """YOLO11n's predictor stands in as a function of the frame: importing ultralytics would change this process
    (``bench.yolo_predictor`` puts back what it changes; ``benchmarks.peer_yolo``'s tests run it elsewhere)."""
    bench = load_bench()
    frames = []
    monkeypatch.setattr(bench, "yolo_predictor", lambda config_dir: frames.append)
    edge = bench.edge_candidates()[bench.DEPLOYED]
    tiny = {bench.DEPLOYED: bench.replace(edge, backbone="efficientnet_lite0", resize_size=(128, 224))}
    rows = bench.bench_edge(repeats=1, candidates=tiny)
    runtimes = ["onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])
    names = [f"{bench.DEPLOYED}, {runtime} int8" for runtime in runtimes]
    names += ["YOLO11n, 640, ultralytics PyTorch float32"]
    assert rows[0].what.startswith("deploy path, one 2560x1440 JPEG frame end to end")
    assert [row.what for row in rows[1:-1]] == names
    assert all(row.ours > 0 and row.reference > 0 and row.note.endswith("frames/s") for row in rows[:-1])
    assert rows[-1].what.endswith("vs YOLO11n's prediction at 640") and rows[-1].reference == rows[-2].ours
    assert len(frames) == 2 and frames[0].shape == (1440, 2560, 3)  # the warm-up and one timed call, BGR frames


def test_a_camera_recording_holds_its_seconds_of_noisy_frames_at_the_cameras_rate(tmp_path):
    pytest.importorskip("av")  # H.264 is written by PyAV (supervision requires it)
    import cv2
    import numpy as np

    bench = load_bench()
    frame = np.full((72, 128, 3), 120, dtype=np.uint8)
    frame[20:50, 30:90] = (40, 200, 90)
    for codec, suffix in (("h264", ".mp4"), ("mjpeg", ".avi")):
        path = bench.camera_recording(tmp_path / codec, frame, codec, seconds=0.4)
        assert path == tmp_path / f"{codec}{suffix}"
        capture = cv2.VideoCapture(str(path))
        assert capture.get(cv2.CAP_PROP_FPS) == bench.CAMERA_FPS
        frames = []
        while (read := capture.read())[0]:
            frames.append(read[1])
        assert len(frames) == 10  # 0.4 s at 25 frames/s
        assert all(f.shape == frame.shape for f in frames)
        # noise of +-2 on every frame, then the codec's loss: each frame still shows the scene
        assert all(np.abs(f.astype(int) - frame).mean() < 4 for f in frames)


def test_the_camera_rows_time_grabbing_each_codec_and_the_detectors_with_and_without_it():
    pytest.importorskip("av")  # H.264 is written by PyAV (supervision requires it)
    bench = load_bench()
    frames = []
    rows = bench.bench_camera(repeats=1, detectors={"fake": frames.append}, size=(72, 128), seconds=0.4)
    assert [row.what for row in rows] == [
        line
        for codec in ("H.264", "MJPEG")
        for line in (
            f"grab one 128x72 {codec} frame, CPU time of every thread",
            f"fake, one frame while a thread grabs 128x72 {codec} at 25 frames/s, vs alone",
        )
    ]
    assert all(row.ours > 0 for row in rows) and all(row.reference > 0 for row in rows[1::2])
    assert len(frames) == 8  # per codec, alone and grabbing, a warm-up and one timed call
    assert all(frame.shape == (72, 128, 3) for frame in frames)


def test_the_camera_thread_grabs_while_asked_and_not_once_paused(tmp_path):
    """Its grabs once spilled into the next timing, which was a detector's alone."""
    import time

    import numpy as np

    bench = load_bench()
    path = bench.camera_recording(tmp_path / "c", np.zeros((36, 64, 3), np.uint8), "mjpeg", seconds=0.2)
    camera = bench.CameraThread(path)
    try:
        camera.grabbing.set()
        deadline = time.monotonic() + 60
        while camera.frames < 8:  # past the 5 frames of the file: read again from the start
            assert time.monotonic() < deadline
            time.sleep(0.01)
        camera.pause()
        paused = camera.frames
        time.sleep(0.2)  # 5 frames' time at 25 frames/s
        assert camera.frames == paused and camera.idle.is_set()
    finally:
        camera.close()
    assert not camera.thread.is_alive()
