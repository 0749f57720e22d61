"""Videos through detect.py: frames read one by one, detections equal to the same frames as pictures, one track id
and one event per object (none for a one-frame object), the region of interest, the JSONL schema, the ONNX path,
and bad inputs through the command line. A synthetic video is written here (FFV1 in AVI: lossless), with coloured
squares at known places, detected by thresholding their colour so that the tracks and events are known."""

import csv
import json
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

import detect
import engine.video
from engine.checkpoint import save_checkpoint
from engine.events import EventLog, utc
from engine.frame_detector import Detections, FrameDetector
from engine.roi import RegionOfInterest, parse_polygon
from engine.tracking import ObjectTracker
from engine.video import VideoReader, video_source
from engine.video_detection import detect_video
from model import FCOSConfig, FCOSDetector

REPO = Path(__file__).resolve().parents[1]
SIZE, FPS, FRAMES = (288, 160), 10.0, 16  # (W, H)
BACKGROUND = (90, 90, 90)
# class id -> BGR colour; each square's top-left corner per frame (None: absent), side 16
COLOURS = {1: (0, 0, 255), 2: (0, 255, 0), 3: (255, 0, 0), 4: (0, 255, 255)}
SIDE = 16


def corner(label: int, frame: int) -> tuple[int, int] | None:
    if label == 1:  # lying still
        return 30, 30
    if label == 2:  # moving right, 4 px a frame
        return 90 + 4 * frame, 100
    if label == 3:  # seen in one frame only
        return (200, 40) if frame == 5 else None
    return 250, 130  # lying still, outside the region of interest below


ROI = "0,0 240,0 240,160 0,160"  # the left part: square 4's bottom centre (258, 146) lies outside


def frame_pixels(index: int) -> np.ndarray:
    frame = np.full((SIZE[1], SIZE[0], 3), BACKGROUND, dtype=np.uint8)
    for label, colour in COLOURS.items():
        where = corner(label, index)
        if where is not None:
            x, y = where
            frame[y : y + SIDE, x : x + SIDE] = colour
    return frame


def write_video(path: Path, frames: int = FRAMES, size: tuple[int, int] = SIZE) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), FPS, size)
    assert writer.isOpened()
    for index in range(frames):
        writer.write(cv2.resize(frame_pixels(index), size, interpolation=cv2.INTER_NEAREST))
    writer.release()
    return path


class ColourDetector(FrameDetector):
    """Finds the coloured squares: class k where the frame has colour ``COLOURS[k]``, score 0.9."""

    def __init__(self) -> None:
        self.config = FCOSConfig(num_classes=4)
        self.score_threshold = 0.5

    def __call__(self, frame_bgr: np.ndarray) -> Detections:
        boxes, labels = [], []
        for label, colour in COLOURS.items():
            mask = np.all(np.abs(frame_bgr.astype(int) - colour) < 40, axis=-1).astype(np.uint8)
            count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
            for x, y, w, h, _ in stats[1:count]:
                boxes.append([x, y, x + w, y + h])
                labels.append(label)
        return Detections(
            boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
            scores=np.full(len(labels), 0.9, dtype=np.float32),
            labels=np.array(labels, dtype=np.int64),
            classes=self.classes,
        )


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "road.avi")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = FCOSConfig(backbone="resnet18", fpn_channels=32, head_convs=1, gn_groups=8, resize_size=(64, 128))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    save_checkpoint(
        {"model": FCOSDetector(config).state_dict(), "config": config.to_dict(), "classes": list(config.classes)}
        | {"epoch": 1},
        path,
    )
    return path


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tracks_events_and_region(tmp_path, video):
    out = tmp_path / "out"
    region = RegionOfInterest(parse_polygon(ROI))
    report = detect_video(ColourDetector(), VideoReader(str(video)), out, confirm=(3, 5), region=region, progress=False)
    assert report.frames == FRAMES and report.failures == []

    records = read_lines(out / "detections.jsonl")
    assert [r["frame"] for r in records] == list(range(FRAMES))
    assert [r["time"] for r in records] == pytest.approx([i / FPS for i in range(FRAMES)])
    ids: dict[str, set] = {}
    for record in records:
        assert set(record) == {"frame", "time", "detections"}
        for det in record["detections"]:
            assert set(det) == {"image_id", "category", "score", "bbox", "track_id"}
            assert det["image_id"] == f"road_{record['frame']:06d}"
            ids.setdefault(det["category"], set()).add(det["track_id"])
    nail, clip_b, clip_y = ("nail", "clip_B", "clip_Y")
    assert "L_stick" not in ids  # outside the region
    # a track is named at its first sighting, one id per object for good; the one-frame object has one too
    assert len(ids[nail]) == len(ids[clip_b]) == len(ids[clip_y]) == 1
    assert None not in ids[nail] | ids[clip_b] | ids[clip_y]
    assert len(ids[nail] | ids[clip_b] | ids[clip_y]) == 3
    first = records[0]["detections"][0]
    assert first["category"] == nail and first["bbox"] == pytest.approx([31, 31, 46, 46])  # the XML's 1-based frame

    events = json.loads((out / "events.json").read_text())
    assert [e["category"] for e in events] == [nail, clip_b]
    with open(out / "events.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["track_id"]) for r in rows] == [e["track_id"] for e in events]
    for event in events:
        assert event["first_at"] is event["confirmed_at"] is event["last_at"] is None  # a file's: no clock time
        assert event["first_frame"] == 0 and event["last_frame"] == FRAMES - 1
        assert event["confirmed_frame"] == 2 and event["best_score"] == pytest.approx(0.9)
        assert event["last_time"] == pytest.approx((FRAMES - 1) / FPS)
        picture = cv2.imread(str(out / event["crop"]))
        assert picture is not None and picture.shape[0] > SIDE

    annotated = cv2.VideoCapture(str(out / "road.mp4"))
    assert annotated.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)
    frames = []
    while (read := annotated.read())[0]:
        frames.append(read[1])
    assert len(frames) == FRAMES and frames[0].shape == (SIZE[1], SIZE[0], 3)
    row = frames[0][80].astype(int)
    yellow = np.minimum(row[:, 1], row[:, 2]) - row[:, 0]  # the region is outlined in yellow (mp4v blurs it)
    assert yellow[238:243].max() > 80 and yellow[200] < 20 and yellow[230] < 20  # its right edge is at x 240


def test_without_the_video_the_events_and_detections_are_those_of_a_run_with_it(tmp_path, video):
    region = RegionOfInterest(parse_polygon(ROI))
    runs = {
        saved: detect_video(
            ColourDetector(),
            VideoReader(str(video)),
            tmp_path / str(saved),
            region=region,
            save_video=saved,
            progress=False,
        )
        for saved in (True, False)
    }
    assert sorted(p.name for p in (tmp_path / "False").iterdir()) == [
        "crops",
        "detections.jsonl",
        "events.csv",
        "events.json",
    ]
    assert (tmp_path / "True" / "road.mp4").is_file() and tmp_path / "True" / "road.mp4" in runs[True].outputs
    assert [p.name for p in runs[False].outputs] == ["detections.jsonl", "events.json", "events.csv"]
    for name in ("detections.jsonl", "events.csv"):
        assert (tmp_path / "False" / name).read_text() == (tmp_path / "True" / name).read_text()
    assert runs[False].events == runs[True].events and len(runs[False].events) == 2
    for event in runs[False].events:  # the crops are of the frames as read, with nothing drawn on them
        assert np.array_equal(
            cv2.imread(str(tmp_path / "False" / event["crop"])), cv2.imread(str(tmp_path / "True" / event["crop"]))
        )


@pytest.mark.parametrize(
    ("rate", "gap", "same_id"),
    [(25, 49, True), (25, 50, False), (6.25, 11, True), (6.25, 12, False), (1, 1, True), (1, 2, False)],
)
def test_a_track_outlives_lost_seconds_unseen_at_any_frame_rate(rate, gap, same_id):
    """A lying object missed for ``gap`` processed frames keeps its track while fewer than 2 s x the rate have
    passed since it was seen. Below 0.5 processed frames/s the library kept a track for 0 frames, so an object
    seen in every frame got a new id in each and never became an event."""
    box = Detections(
        boxes=np.array([[10, 10, 30, 30]], dtype=np.float32),
        scores=np.array([0.9], dtype=np.float32),
        labels=np.array([1]),
        classes=("nail",),
    )
    for slow in (0.2, 0.4):
        tracker = ObjectTracker(slow)
        assert [tracker(box).item() for _ in range(4)] == [0, 0, 0, 0]
    tracker = ObjectTracker(rate, remember_seconds=0)  # an ended track's place forgotten at once
    before = [tracker(box).item() for _ in range(3)]
    for _ in range(gap):
        tracker(box[np.zeros(1, dtype=bool)])
    assert before == [0, 0, 0] and (tracker(box).item() == 0) == same_id


def test_tracks_live_and_are_remembered_for_seconds_of_the_frames_own_times():
    """A camera giving 25 frames/s processed at 1 (frames skipped to keep up) kept a lost track for 50 processed
    frames, 50 s instead of 2, and remembered an ended one's place for 250 minutes instead of 10."""
    box = Detections(
        boxes=np.array([[10, 10, 30, 30]], dtype=np.float32),
        scores=np.array([0.9], dtype=np.float32),
        labels=np.array([1]),
        classes=("nail",),
    )
    nothing = box[np.zeros(1, dtype=bool)]

    def track(tracker: ObjectTracker, frames: list[Detections]) -> list[int]:
        return [tracker(found, float(second)).tolist() for second, found in enumerate(frames)]

    assert track(ObjectTracker(25.0, remember_seconds=0), [box] * 3 + [nothing] + [box])[-1] == [0]
    assert track(ObjectTracker(25.0, remember_seconds=0), [box] * 3 + [nothing] * 2 + [box])[-1] == [1]
    # lost after 2 s; where it lay, the old id for 10 s, then a new object's
    assert track(ObjectTracker(25.0, remember_seconds=10), [box] * 3 + [nothing] * 8 + [box])[-1] == [0]
    assert track(ObjectTracker(25.0, remember_seconds=10), [box] * 3 + [nothing] * 12 + [box])[-1] == [1]


def test_an_object_hidden_longer_than_a_track_lives_is_one_object_where_it_lay(tmp_path):
    """A clip hidden for 4 s (a lorry parked on it) came back as a new track, and raised a second event."""

    def at(*corners: tuple[int, int]) -> Detections:
        return Detections(
            boxes=np.array([[x, y, x + 20, y + 20] for x, y in corners], dtype=np.float32).reshape(-1, 4),
            scores=np.full(len(corners), 0.9, dtype=np.float32),
            labels=np.ones(len(corners), dtype=np.int64),
            classes=("nail",),
        )

    tracker, log = ObjectTracker(10.0, remember_seconds=10.0), EventLog(tmp_path, 3, 5)
    frames = [at((10, 10))] * 5 + [at()] * 40 + [at((12, 11), (100, 100))] * 5 + [at()] * 130 + [at((10, 10))]
    ids = []
    for ordinal, found in enumerate(frames):
        ids.append(tracker(found).tolist())
        log.update(
            ordinal,
            ordinal,
            ordinal / 10,
            detections=found,
            track_ids=np.array(ids[-1]),
            frame=np.zeros((200, 200, 3), np.uint8),
        )
    # where it lay (IoU 0.74) the old id; elsewhere a new one (the library's id 1 went to the track renamed 0)
    assert ids[:5] == [[0]] * 5 and ids[45:50] == [[0, 2]] * 5
    assert ids[-1] == [3]  # ended 13 s before, more than remember_seconds: forgotten, a new object
    events = [(event.track_id, event.first_frame, event.last_frame) for event in log.events.values()]
    assert events == [(0, 0, 49), (2, 45, 49)]


def test_vid_stride(tmp_path, video):
    report = detect_video(ColourDetector(), VideoReader(str(video), stride=3), tmp_path, progress=False)
    assert [r["frame"] for r in read_lines(tmp_path / "detections.jsonl")] == list(range(0, FRAMES, 3))
    assert report.frames == 6
    annotated = cv2.VideoCapture(str(tmp_path / "road.mp4"))
    assert annotated.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS / 3, rel=1e-3)  # as long as the source
    # 3/5 of the processed frames: the still objects are events, the one-frame one is not
    categories = [e["category"] for e in report.events]
    assert {"nail", "L_stick"} <= set(categories) and "clip_Y" not in categories


def test_a_video_gives_the_detections_of_its_frames_as_pictures(tmp_path, checkpoint):
    video = write_video(tmp_path / "small.avi", frames=4, size=(128, 72))
    common = ["--checkpoint", str(checkpoint), "--score-threshold", "0.05", "--device", "cpu"]
    argv = [*common, "--input", str(video), "--output-dir", str(tmp_path / "v"), "--no-save-video"]
    result = detect.main(detect.get_args_parser().parse_args(argv))
    assert result["frames"] == 4 and result["failures"] == [] and not (tmp_path / "v" / "small.mp4").exists()

    capture, pictures = cv2.VideoCapture(str(video)), tmp_path / "frames"
    pictures.mkdir()
    index = 0
    while (read := capture.read())[0]:
        cv2.imwrite(str(pictures / f"small_{index:06d}.png"), read[1])
        index += 1
    argv = [*common, "--input", str(pictures), "--output-dir", str(tmp_path / "p"), "--workers", "0"]
    expected = detect.main(detect.get_args_parser().parse_args(argv))["detections"]
    assert expected  # a low threshold: the untrained network finds plenty

    found = [d for r in read_lines(tmp_path / "v" / "detections.jsonl") for d in r["detections"]]
    assert [(d["image_id"], d["category"]) for d in found] == [(d["image_id"], d["category"]) for d in expected]
    assert [d["score"] for d in found] == pytest.approx([d["score"] for d in expected], abs=1e-6)
    assert np.allclose([d["bbox"] for d in found], [d["bbox"] for d in expected], atol=1e-4)

    one = FrameDetector.load(checkpoint, score_threshold=0.05)(cv2.imread(str(pictures / "small_000000.png")))
    first = [d for d in expected if d["image_id"] == "small_000000"]
    assert one.names == [d["category"] for d in first]
    assert np.allclose(one.boxes + [1, 1, 0, 0], [d["bbox"] for d in first], atol=1e-4)  # frame pixels, 0-based


def test_onnx_float_and_int8_on_a_video(tmp_path, checkpoint):
    from engine.export import export_onnx, quantize_int8

    video = write_video(tmp_path / "small.avi", frames=3, size=(128, 72))
    network = FrameDetector.load(checkpoint, score_threshold=0.05)
    onnx_path = export_onnx(network.detector, tmp_path / "tiny.onnx", sample_size=(64, 128))
    calibration = [network.prepare(frame_pixels(0))[0]]
    int8_path = quantize_int8(onnx_path, tmp_path / "tiny_int8.onnx", calibration)

    def run(model: list[str], out: str) -> list[dict]:
        argv = [*model, "--input", str(video), "--output-dir", str(tmp_path / out), "--score-threshold", "0.05"]
        assert detect.main(detect.get_args_parser().parse_args(argv))["frames"] == 3
        return [d for r in read_lines(tmp_path / out / "detections.jsonl") for d in r["detections"]]

    torch_found = run(["--checkpoint", str(checkpoint)], "torch")
    onnx_found = run(["--onnx", str(onnx_path)], "onnx")
    assert [d["category"] for d in onnx_found] == [d["category"] for d in torch_found]
    assert np.allclose([d["bbox"] for d in onnx_found], [d["bbox"] for d in torch_found], atol=1e-2)
    assert run(["--onnx", str(int8_path)], "int8")  # runs; int8 scores may differ a little
    assert (tmp_path / "int8" / "small.mp4").stat().st_size > 0


def test_what_is_taken_for_a_video(tmp_path, video):
    (tmp_path / "notes.txt").write_text("not a video")
    cv2.imwrite(str(tmp_path / "still.png"), frame_pixels(0))
    renamed = tmp_path / "clip.bin"
    renamed.write_bytes(video.read_bytes())
    assert video_source(str(tmp_path / "notes.txt")) is None  # a file that is not a video is never taken for one
    assert video_source(str(tmp_path / "still.png")) is None
    assert video_source(str(tmp_path)) is None
    assert video_source(str(renamed)) == str(renamed)  # decodable, whatever its suffix
    assert video_source("0") == 0 and video_source("rtsp://camera/live") == "rtsp://camera/live"
    assert video_source(str(tmp_path / "missing.mp4")) == str(tmp_path / "missing.mp4")  # reported as missing


class FakeCapture:
    """A stream as OpenCV opens it: ``frames`` to read, then nothing; unopened when None."""

    def __init__(self, frames: list[np.ndarray] | None, count: int = 0) -> None:
        self.frames = list(frames or [])
        self.opened, self.count, self.grabbed = frames is not None, count, None

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        return (True, self.frames.pop(0)) if self.frames else (False, None)

    def grab(self) -> bool:
        ok, self.grabbed = self.read()
        return ok

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        return self.grabbed is not None, self.grabbed

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FPS: FPS, cv2.CAP_PROP_FRAME_COUNT: self.count}.get(prop, 0.0)

    def release(self) -> None:
        self.frames = []


@pytest.fixture
def dropping_stream(monkeypatch):
    """rtsp://camera/live gives 3 frames, drops, fails to open once, gives 2 more (the last at half size), then
    never opens again. The clock is a fake one that sleeping moves. Returns the sleeps and the captures to come."""
    captures = [FakeCapture([frame_pixels(i) for i in range(3)]), FakeCapture(None)]
    captures.append(FakeCapture([frame_pixels(3), cv2.resize(frame_pixels(4), (SIZE[0] // 2, SIZE[1] // 2))]))
    monkeypatch.setattr(engine.video, "_open", lambda source: captures.pop(0) if captures else FakeCapture(None))
    clock, sleeps = [1000.0], []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    fake = SimpleNamespace(monotonic=lambda: clock[0], time=lambda: clock[0] + 1_796_547_200, sleep=sleep)
    monkeypatch.setattr(engine.video, "time", fake)  # the Unix time 1000 s of the fake clock past 09:10:00 UTC
    return SimpleNamespace(sleeps=sleeps, captures=captures, clock=clock)


@pytest.mark.filterwarnings("ignore:rtsp")
def test_a_dropped_stream_is_opened_again_then_given_up_with_exit_1(tmp_path, dropping_stream, capsys):
    """A stream that dropped once ended the run with exit status 0, as if the road had nothing more to show."""
    reader = VideoReader("rtsp://camera/live", reconnect_seconds=30, newest=False)
    dropping_stream.clock[0] += 5  # loading the model: the first frame's time is 0 all the same
    frames = list(reader)
    assert [frame.index for frame in frames] == [0, 1, 2, 3, 4]
    assert [frame.time for frame in frames] == [0, 0, 0, 3, 3]  # by the clock: the 3 s of waiting count
    assert [utc(frame.clock) for frame in frames[2:4]] == [
        "2026-12-06T09:10:05.000+00:00",
        "2026-12-06T09:10:08.000+00:00",
    ]
    assert all(frame.pixels.shape == (SIZE[1], SIZE[0], 3) for frame in frames)  # the half-size frame resized
    assert dropping_stream.sleeps == [1, 2, 1, 2, 4, 8, 8, 7]  # the second drop: 30 s of tries, then given up
    assert (reader.reconnects, reader.lost) == (1, True)

    dropping_stream.sleeps.clear()
    dropping_stream.captures.append(FakeCapture([frame_pixels(i) for i in range(3)]))
    report = detect_video(
        ColourDetector(), VideoReader("rtsp://camera/live", reconnect_seconds=0, newest=False), tmp_path
    )
    assert report.frames == 3 and dropping_stream.sleeps == []
    assert "frame/s" not in capsys.readouterr().err  # no progress bar where no terminal shows it
    assert report.failures == ["rtsp://camera/live: no frame after frame 3; what was processed is written"]
    records = read_lines(tmp_path / "detections.jsonl")
    assert [(r["time"], r["at"]) for r in records] == [(0, "2026-12-06T09:10:38.000+00:00")] * 3  # 30 s of tries
    assert len(report.events) == 3  # three squares in all three frames, each confirmed at the third
    for event in report.events:
        when = (event["first_at"], event["confirmed_at"], event["last_at"])
        assert when == ("2026-12-06T09:10:38.000+00:00",) * 3 and event["confirmed_frame"] == 2


@pytest.mark.filterwarnings("ignore:rtsp")
def test_a_camera_run_started_again_keeps_the_earlier_runs_outputs(tmp_path, dropping_stream, video, monkeypatch):
    """Started again into its folder (by a service manager, once the stream was lost), a camera's run overwrote
    the detections, events and crops the earlier run had recorded."""
    earlier = {"detections.jsonl": "{}\n", "events.json": "[1]\n", "events.csv": "a\n", "live.mp4": "video"}
    for file, text in earlier.items():
        (tmp_path / file).write_text(text)
    (tmp_path / "crops").mkdir()
    (tmp_path / "crops" / "track_0.jpg").write_text("crop")
    (tmp_path / "mine.txt").write_text("not an output")
    report = detect_video(
        ColourDetector(), VideoReader("rtsp://camera/live", reconnect_seconds=0, newest=False), tmp_path
    )
    (kept,) = tmp_path.glob("before-*")
    assert {file: (kept / file).read_text() for file in earlier} == earlier
    assert (kept / "crops" / "track_0.jpg").read_text() == "crop" and (tmp_path / "mine.txt").exists()
    assert report.frames == 3 and len(read_lines(tmp_path / "detections.jsonl")) == 3
    monkeypatch.undo()  # OpenCV opens the file
    detect_video(ColourDetector(), VideoReader(str(video)), tmp_path)  # a file can be run again: no folder
    assert len(list(tmp_path.glob("before-*"))) == 1


@pytest.mark.filterwarnings("ignore:rtsp")
def test_every_frame_reads_a_stream_in_order(tmp_path, checkpoint, dropping_stream, capsys):
    argv = ["--checkpoint", str(checkpoint), "--input", "rtsp://camera/live", "--output-dir", str(tmp_path)]
    status, printed = run_script([*argv, "--reconnect", "0", "--every-frame", "--no-save-video"], capsys)
    assert status == 1 and "rtsp://camera/live: no frame after frame 3" in printed
    assert [record["frame"] for record in read_lines(tmp_path / "detections.jsonl")] == [0, 1, 2]


def test_a_recording_served_over_http_ends_where_it_ends(dropping_stream):
    """A URL was taken for a stream: at the end of a recording served over HTTP it was opened again, and the run
    played it from the start for ever."""
    dropping_stream.captures[:] = [FakeCapture([frame_pixels(i) for i in range(3)], count=3)]
    reader = VideoReader("http://server/road.mp4", reconnect_seconds=30)
    frames = list(reader)
    assert [frame.time for frame in frames] == [0, 1 / FPS, 2 / FPS] and frames[0].clock is None
    assert (reader.live, reader.lost, reader.frame_count, dropping_stream.sleeps) == (False, False, 3, [])


def test_a_file_is_never_opened_again(tmp_path, video, monkeypatch):
    opened = []
    real_open = engine.video._open
    monkeypatch.setattr(engine.video, "_open", lambda source: opened.append(source) or real_open(source))
    reader = VideoReader(str(video), reconnect_seconds=30)
    assert len(list(reader)) == FRAMES and (opened, reader.lost) == ([str(video)], False)


class Camera(FakeCapture):
    """A camera giving ``count`` frames, each filled with its index, then dropping. Once its ``reader`` is set, it
    gives a frame when the test lets it run ``ahead`` (the reader's loop busy), or else when the loop waits for
    one: it never runs on by itself, as a real camera would, so what the loop takes does not depend on the CPU.
    ``waiting``: it waits for either. ``fails_at``: the grab of that frame raises OpenCV's error."""

    def __init__(self, count: int, fails_at: int | None = None) -> None:
        super().__init__([np.full((4, 4, 3), i, np.uint8) for i in range(count)])
        self.fails_at, self.reader, self.given, self.ahead, self.waiting = fails_at, None, 0, 0, False

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.given == self.fails_at:
            raise cv2.error("grab failed")
        deadline = time.monotonic() + 60
        while self.reader is not None and not self.ahead and self.reader._handoff.wanted is None:
            self.waiting = True
            assert time.monotonic() < deadline, "the loop never asked for a frame"
            time.sleep(0.001)
        self.waiting, self.ahead = False, max(self.ahead - 1, 0)
        self.given += 1
        return super().read()


@pytest.mark.parametrize("stride", [1, 2])
def test_a_run_slower_than_its_camera_takes_the_newest_frame(monkeypatch, stride):
    """A stream was read frame by frame, in order, so a run slower than its camera fell ever further behind it:
    at 1 processed frame a second on a camera giving 25, an object was raised as an event 25 times as late."""
    camera = Camera(40)
    monkeypatch.setattr(engine.video, "_open", lambda source: camera)
    reader = camera.reader = VideoReader("rtsp://camera/live", stride=stride)
    taken = []
    for frame in reader:
        assert frame.pixels[0, 0, 0] == frame.index  # converted where it was grabbed
        taken.append(frame.index)
        camera.ahead = 3  # the camera gives 3 frames while the loop is busy with this one
        deadline = time.monotonic() + 60
        while camera.ahead or not camera.waiting:
            assert time.monotonic() < deadline
            time.sleep(0.001)
    assert taken == list(range(0, 40, 4))  # each the first frame after the loop asked: the newest
    assert (reader.skipped, reader.lost, reader.frames_read) == ((4 - stride) * 9, True, 40)


def test_a_run_that_keeps_up_with_its_camera_takes_every_stride_th_frame(tmp_path, monkeypatch):
    camera = Camera(20)
    monkeypatch.setattr(engine.video, "_open", lambda source: camera)
    reader = camera.reader = VideoReader("rtsp://camera/live", stride=3)
    report = detect_video(ColourDetector(), reader, tmp_path, progress=False)
    assert [r["frame"] for r in read_lines(tmp_path / "detections.jsonl")] == [0, 3, 6, 9, 12, 15, 18]
    assert (report.frames, report.skipped, reader.skipped) == (7, 0, 0)


def test_a_cameras_detections_can_be_rotated_while_the_run_writes_them(tmp_path, monkeypatch):
    """A camera watched for days fills detections.jsonl line by line. Rotated by logrotate's copytruncate (copied,
    then cut to nothing under the run), a file opened for writing went on at its old offset: the next line came
    after a hole of zero bytes as long as all that was rotated."""
    camera = Camera(12)
    monkeypatch.setattr(engine.video, "_open", lambda source: camera)
    lines, rotated = tmp_path / "detections.jsonl", tmp_path / "detections.jsonl.1"

    class Rotating(ColourDetector):
        def __call__(self, frame_bgr: np.ndarray) -> Detections:
            if frame_bgr[0, 0, 0] == 6:  # before frame 6's line: copy, then truncate in place
                rotated.write_bytes(lines.read_bytes())
                with open(lines, "r+") as file:
                    file.truncate(0)
            return super().__call__(frame_bgr)

    reader = camera.reader = VideoReader("rtsp://camera/live")
    detect_video(Rotating(), reader, tmp_path, progress=False)
    assert b"\0" not in lines.read_bytes()
    assert [r["frame"] for r in read_lines(rotated)] == list(range(6))
    assert [r["frame"] for r in read_lines(lines)] == list(range(6, 12))


def test_an_error_reading_a_camera_is_raised_in_the_run_after_the_frame_it_took(monkeypatch):
    camera = Camera(20, fails_at=2)  # frame 1 is taken for the loop, then the grab of frame 2 fails
    monkeypatch.setattr(engine.video, "_open", lambda source: camera)
    reader, taken = VideoReader("rtsp://camera/live"), []
    camera.reader = reader
    with pytest.raises(cv2.error, match="grab failed"):
        for frame in reader:
            taken.append(frame.index)
    assert taken == [0, 1]
    reader.close()


def run_script(argv: list[str], capsys) -> tuple[int, str]:
    """detect.py as the command line runs it: its exit status and what it printed on stderr."""
    old = sys.argv
    sys.argv = ["detect.py", *argv]
    try:
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(REPO / "detect.py"), run_name="__main__")
    finally:
        sys.argv = old
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "empty", "text", "truncated mp4", "stream"])
def test_a_bad_video_is_one_line_and_exit_1(tmp_path, checkpoint, capsys, case):
    path = {
        "missing": tmp_path / "gone.mp4",
        "empty": tmp_path / "empty.mp4",
        "text": tmp_path / "notes.avi",
        "truncated mp4": tmp_path / "cut.mp4",
        "stream": "rtsp://127.0.0.1:9/live",
    }[case]
    if case == "empty":
        path.touch()
    elif case == "text":
        path.write_text("not a video\n" * 20)
    elif case == "truncated mp4":  # mp4v writes its index (the moov atom) last: without it nothing decodes
        writer = cv2.VideoWriter(str(tmp_path / "full.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
        for index in range(FRAMES):
            writer.write(frame_pixels(index))
        writer.release()
        data = (tmp_path / "full.mp4").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    status, printed = run_script(["--checkpoint", str(checkpoint), "--input", str(path), "--output-dir", "out"], capsys)
    lines = printed.strip().splitlines()
    assert status == 1 and len(lines) == 1 and str(path) in lines[0], printed
    assert lines[0].startswith("detect.py: error: ") and "Traceback" not in printed


def test_a_video_that_ends_early_keeps_what_was_read(tmp_path, checkpoint, capsys, video):
    """A file cut short (as a stream that drops): the frames read are written, the video finalised, exit 1."""
    data = video.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "out"
    status, printed = run_script(
        ["--checkpoint", str(checkpoint), "--input", str(cut), "--output-dir", str(out)], capsys
    )
    assert status == 1 and "cut.avi" in printed and "Traceback" not in printed
    records = read_lines(out / "detections.jsonl")
    assert 0 < len(records) < FRAMES
    annotated = cv2.VideoCapture(str(out / "cut.mp4"))
    count = 0
    while annotated.read()[0]:
        count += 1
    assert count == len(records)
    assert json.loads((out / "events.json").read_text()) is not None


def test_a_camera_run_stopped_by_sigterm_keeps_a_playable_video_and_its_events(tmp_path, checkpoint):
    """``docker stop`` or a service manager ends a camera's run by SIGTERM, which once ended it at once: the video
    was left without its index (not a frame could be read back) and events.json was never written."""
    long_video = write_video(tmp_path / "long.avi", frames=3000)
    out = tmp_path / "out"
    argv = [sys.executable, "detect.py", "--checkpoint", str(checkpoint), "--input", str(long_video)]
    process = subprocess.Popen([*argv, "--output-dir", str(out)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    lines, deadline = out / "detections.jsonl", time.monotonic() + 300
    while not (lines.is_file() and lines.read_text().count("\n") >= 3) and process.poll() is None:
        assert time.monotonic() < deadline, "no frame processed"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143 and err.strip().splitlines()[-1] == "detect.py: stopped by SIGTERM", err
    records = read_lines(lines)
    annotated = cv2.VideoCapture(str(out / "long.mp4"))
    count = 0
    while annotated.read()[0]:
        count += 1
    assert 3 <= count == len(records) < 3000
    assert json.loads((out / "events.json").read_text()) is not None


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--confirm", "4/3", "K <= N"),
        ("--vid-stride", "0", ">= 1"),
        ("--roi", "1,2 3,4", "three points"),
        ("--roi", "300,0 400,0 400,100", "--roi: the polygon lies outside the 288x160 frames of"),  # drawn on others
        ("--reconnect", "-1", "seconds >= 0"),
        ("--reconnect", "nan", "seconds >= 0"),
    ],
)
def test_bad_video_flags_are_usage_errors(tmp_path, checkpoint, capsys, video, flag, value, message):
    status, printed = run_script(
        ["--checkpoint", str(checkpoint), "--input", str(video), "--output-dir", str(tmp_path), flag, value], capsys
    )
    assert status == 2 and message in printed and "Traceback" not in printed
