"""Detection on a video, a stream or a camera: frame by frame, tracked, confirmed into events, written as it goes.

In ``output_dir``: ``<name>.mp4`` (the processed frames annotated, at the source's frame rate / ``stride`` so it
lasts as long as the source, same size, though a stream's with frames skipped to keep up plays faster; not written
without ``save_video``, as a camera watched for days would fill the disk with it), ``detections.jsonl`` (a line a
processed frame, flushed as written: ``{"frame", "time", "detections": [{"image_id", "category", "score", "bbox",
"track_id"}]}``, ``time`` in seconds from the first frame, boxes in the frame's pixels in the VOC XML's 1-based
frame as in ``detections.json``, ``image_id`` ``<name>_<frame:06d>``, ``track_id`` null before a track is named),
``events.json`` / ``events.csv`` (:mod:`engine.events`, rewritten at each confirmation) and ``crops/``. For a
stream or camera, ``time`` is the clock's, each line adds ``at``, the clock's time (UTC, ISO 8601), and the file can
be rotated while the run writes it (logrotate's ``copytruncate``). Whatever
ends the run (the source's end, a stream lost for good, Ctrl-C, SIGTERM), what was processed is written and the
video file finalised. A stream's or camera's run keeps an earlier run's outputs found there
(:func:`keep_earlier_run`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from dataset.drawing import class_colour, label_box

from .annotate import check_writable
from .events import EventLog, utc
from .frame_detector import Detections, FrameDetector
from .roi import RegionOfInterest
from .tracking import NO_TRACK, ObjectTracker
from .video import VideoReader, VideoWriter, source_name


@dataclass
class VideoReport:
    frames: int = 0  # processed
    skipped: int = 0  # of a stream or camera, beyond the stride, to keep up with it (VideoReader.skipped)
    detections: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)  # the rows of events.json
    failures: list[str] = field(default_factory=list)  # a truncated file
    outputs: list[Path] = field(default_factory=list)
    fps: float = 0.0  # processed frames a second, end to end (decoding, network, tracking, writing)
    model_ms: float = 0.0  # per processed frame, the detector alone (preparation included)


def draw_tracked(
    frame: np.ndarray, detections: Detections, track_ids: np.ndarray, region: RegionOfInterest | None
) -> np.ndarray:
    """Outline ``region`` and draw each box in its class's colour, labelled ``class score #track`` (BGR, in place)."""
    size = max(frame.shape[:2])
    line, font_scale, thickness = max(1, round(size / 500)), max(0.35, size / 2000), max(1, round(size / 1000))
    if region is not None:
        region.draw(frame, line)
    for box, score, label, name, track_id in zip(
        detections.boxes, detections.scores.tolist(), detections.labels.tolist(), detections.names, track_ids.tolist()
    ):
        colour = class_colour(label)
        x1, y1, x2, y2 = (round(v) for v in box.tolist())
        cv2.rectangle(frame, (x1, y1), (x2 - 1, y2 - 1), colour, line)
        text = f"{name} {score:.2f}" + ("" if track_id == NO_TRACK else f" #{track_id}")
        label_box(frame, text, (x1, y1), colour, font_scale, thickness)
    return frame


def keep_earlier_run(output_dir: Path, name: str) -> Path | None:
    """Move an earlier run's outputs in ``output_dir`` (``detections.jsonl``, the events, ``crops/`` and
    ``<name>.mp4``) into a new folder there, ``before-<UTC time>``, and return it; None when there are none. A
    stream or camera cannot be run again: a run started anew (by a service manager, once the source was lost)
    would otherwise overwrite what the camera recorded."""
    if not any((output_dir / file).exists() for file in ("detections.jsonl", "events.json")):
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    kept = output_dir / f"before-{stamp}"
    for again in itertools.count(1):
        if not kept.exists():
            break
        kept = output_dir / f"before-{stamp}-{again}"
    kept.mkdir()
    for file in ("detections.jsonl", "events.json", "events.csv", "crops", f"{name}.mp4"):
        if (output_dir / file).exists():
            (output_dir / file).rename(kept / file)
    return kept


def detect_video(
    detector: FrameDetector,
    reader: VideoReader,
    output_dir: Path,
    *,
    confirm: tuple[int, int] = (3, 5),
    region: RegionOfInterest | None = None,
    save_video: bool = True,
    progress: bool = True,
) -> VideoReport:
    """Run ``detector`` on every frame ``reader`` yields (keeping those inside ``region``), track them, confirm
    events in ``confirm`` (K, N) and write the outputs described above, the annotated video if ``save_video``;
    closes ``reader``."""
    report, model_seconds, start = VideoReport(), 0.0, time.perf_counter()
    name = source_name(reader.source)
    video_path = output_dir / f"{name}.mp4"
    overwrites_input = isinstance(reader.source, str) and Path(reader.source).resolve() == video_path.resolve()
    if save_video and overwrites_input:
        raise ValueError(f"--output-dir {output_dir} would overwrite the input {reader.source}")
    if region is not None:
        region.check_fits(reader.size, reader.source)
    check_writable(output_dir)
    if reader.live and (kept := keep_earlier_run(output_dir, name)):
        print(f"the earlier run's outputs in {output_dir} are kept in {kept}")
    rate = reader.fps / reader.stride
    tracker, log = ObjectTracker(rate), EventLog(output_dir, *confirm)
    # a stream's bar shows on a terminal only (tqdm's None): a camera's run under a service manager would log it
    # ten times a second for days
    disable = True if not progress else None if reader.live else False
    bar = tqdm(total=reader.processed_count, desc="detect", unit="frame", disable=disable)
    try:
        with (
            VideoWriter(video_path, rate, reader.size) if save_video else contextlib.nullcontext() as writer,
            # a camera's in append mode (an earlier run's was moved away): logrotate's copytruncate can then rotate
            # it under the run, whose next line goes to the start instead of past a hole of zeros
            open(output_dir / "detections.jsonl", "a" if reader.live else "w") as lines,
        ):
            report.outputs += ([video_path] if save_video else []) + [output_dir / "detections.jsonl"]
            for ordinal, frame in enumerate(reader):
                tic = time.perf_counter()
                found = detector(frame.pixels)
                model_seconds += time.perf_counter() - tic
                if region is not None:
                    found = found[region.inside(found)]
                track_ids = tracker(found, frame.time if reader.live else None)
                for event in log.update(
                    ordinal,
                    frame.index,
                    frame.time,
                    detections=found,
                    track_ids=track_ids,
                    frame=frame.pixels,
                    clock=frame.clock,
                ):
                    tqdm.write(
                        f"event: track {event.track_id} {event.category} since {event.first_time:.1f} s "
                        f"(frame {event.first_frame}), confirmed at {event.confirmed_time:.1f} s"
                        + (f" ({event.confirmed_at})" if event.confirmed_at else "")
                    )
                    log.write()
                entries = found.to_json(f"{name}_{frame.index:06d}")
                for entry, track_id in zip(entries, track_ids.tolist()):
                    entry["track_id"] = None if track_id == NO_TRACK else track_id
                at = {} if frame.clock is None else {"at": utc(frame.clock)}
                lines.write(json.dumps({"frame": frame.index, "time": frame.time, **at, "detections": entries}) + "\n")
                lines.flush()
                if writer is not None:
                    writer.write(draw_tracked(frame.pixels, found, track_ids, region))
                report.frames += 1
                report.detections += len(found)
                bar.update()
    finally:
        bar.close()
        log.write()
        reader.close()
    report.events = [event.row() for event in log.events.values()]
    report.outputs += [output_dir / "events.json", output_dir / "events.csv"]
    if reader.truncated():
        report.failures.append(
            f"{reader.source}: ended after {reader.frames_read} of the {reader.frame_count} frames its header "
            "announces (truncated?); what was read is written"
        )
    if reader.lost:
        again = f", nor in the {reader.reconnect_seconds:g} s it was opened again" if reader.reconnect_seconds else ""
        report.failures.append(
            f"{reader.source}: no frame after frame {reader.frames_read}{again}; what was processed is written"
        )
    report.skipped = reader.skipped
    report.model_ms = 1000 * model_seconds / max(report.frames, 1)
    report.fps = report.frames / max(time.perf_counter() - start, 1e-9)
    return report
