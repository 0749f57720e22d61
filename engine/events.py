"""Events: one per tracked object confirmed in K of the last N processed frames, with a crop of its best frame.

A track becomes an event the first time it has been seen in ``k`` of the last ``n`` processed frames (counting
the frames where its detection carried its track id). A detection seen in fewer than ``k`` frames never becomes
one. An event then follows its track to its last frame, and its crop is the frame where it scored best. For a
stream or camera, ``first_at``, ``confirmed_at`` and ``last_at`` give the clock's time (UTC, ISO 8601) beside the
seconds from the start; for a file they are empty.
"""

from __future__ import annotations

import csv
import io
import json
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .atomic import atomic_write, write_text_atomically
from .frame_detector import Detections
from .tracking import NO_TRACK

CROP_MARGIN = 0.25  # of the box's sides on each side, and at least CROP_MIN_MARGIN pixels: the object with its road
CROP_MIN_MARGIN = 8
COLUMNS = (
    "track_id", "category", "first_frame", "first_time", "last_frame", "last_time",
    "confirmed_frame", "confirmed_time", "best_score", "best_frame", "crop", "first_at", "confirmed_at", "last_at",
)  # fmt: skip


def parse_confirm(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N) with 1 <= K <= N (argparse type)."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--confirm is written K/N, e.g. 3/5; got {text!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"--confirm K/N needs 1 <= K <= N; got {text!r}")
    return k, n


@dataclass
class Event:
    """One object: its track, class (of its best detection), first / last frame it was seen and its time (s), the
    frame it was confirmed at, its best score and frame, and its crop (a path relative to the output folder)."""

    track_id: int
    category: str
    first_frame: int
    first_time: float
    last_frame: int
    last_time: float
    confirmed_frame: int | None = None
    confirmed_time: float | None = None
    best_score: float = 0.0
    best_frame: int = 0
    crop: str | None = None
    first_at: str | None = None
    confirmed_at: str | None = None
    last_at: str | None = None
    # processed-frame ordinals of the latest sightings, and the best crop until it is written (not in the outputs)
    seen: deque = field(default_factory=deque, repr=False)
    best_pixels: np.ndarray | None = field(default=None, repr=False)

    def row(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key in COLUMNS}


def utc(clock: float | None) -> str | None:
    """Unix time -> ISO 8601 in UTC to the millisecond (``2026-12-06T09:10:00.123+00:00``); None stays None."""
    return None if clock is None else datetime.fromtimestamp(clock, timezone.utc).isoformat(timespec="milliseconds")


def crop(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The part of ``frame`` [H, W, 3] around ``box`` (x1, y1, x2, y2), with a margin, as a copy."""
    x1, y1, x2, y2 = box.tolist()
    mx, my = max(CROP_MIN_MARGIN, CROP_MARGIN * (x2 - x1)), max(CROP_MIN_MARGIN, CROP_MARGIN * (y2 - y1))
    height, width = frame.shape[:2]
    left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
    right, bottom = min(width, int(np.ceil(x2 + mx))), min(height, int(np.ceil(y2 + my)))
    return frame[top:bottom, left:right].copy()


class EventLog:
    """Confirms tracks into events (``k`` of the last ``n`` processed frames) and writes ``crops/`` in
    ``output_dir``. Memory stays flat: a track not seen for ``n`` processed frames and not confirmed is forgotten
    (it can no longer reach ``k`` of ``n`` with its old sightings)."""

    def __init__(self, output_dir: Path, k: int, n: int) -> None:
        self.output_dir, self.k, self.n = output_dir, k, n
        self.crops = output_dir / "crops"
        self.crops.mkdir(parents=True, exist_ok=True)
        self.events: dict[int, Event] = {}  # confirmed, by track id, in the order of confirmation
        self.pending: dict[int, Event] = {}

    def update(
        self,
        ordinal: int,
        frame_index: int,
        time: float,
        detections: Detections,
        track_ids: np.ndarray,
        frame: np.ndarray,
        clock: float | None = None,
    ) -> list[Event]:
        """Record processed frame number ``ordinal`` (source frame ``frame_index`` at ``time`` s, read at the Unix
        time ``clock`` for a stream or camera, BGR pixels ``frame``) with its ``detections`` and their
        ``track_ids`` [K]; returns the events confirmed by it."""
        confirmed, at = [], utc(clock)
        for box, score, name, track_id in zip(
            detections.boxes, detections.scores.tolist(), detections.names, track_ids
        ):
            track_id = int(track_id)
            if track_id == NO_TRACK:
                continue
            event = self.events.get(track_id) or self.pending.get(track_id)
            if event is None:
                event = self.pending[track_id] = Event(track_id, name, frame_index, time, frame_index, time)
                event.first_at = at
            if event.seen and event.seen[-1] == ordinal:  # a track holds one detection a frame
                continue
            event.last_frame, event.last_time, event.last_at = frame_index, time, at
            event.seen.append(ordinal)
            while event.seen[0] <= ordinal - self.n:
                event.seen.popleft()
            if score > event.best_score:
                event.best_score, event.best_frame, event.category = score, frame_index, name
                event.best_pixels = crop(frame, box)
                if event.confirmed_frame is not None:
                    self._write_crop(event)
            if event.confirmed_frame is None and len(event.seen) >= self.k:
                event.confirmed_frame, event.confirmed_time, event.confirmed_at = frame_index, time, at
                self.events[track_id] = self.pending.pop(track_id)
                self._write_crop(event)
                confirmed.append(event)
        for track_id in [t for t, e in self.pending.items() if e.seen[-1] <= ordinal - self.n]:
            del self.pending[track_id]
        return confirmed

    def _write_crop(self, event: Event) -> None:
        """The event's best crop, as ``crops/track_<id>.jpg``, written atomically: a better one replaces it."""
        path = self.crops / f"track_{event.track_id}.jpg"
        if event.best_pixels is not None and event.best_pixels.size:
            encoded, jpeg = cv2.imencode(".jpg", event.best_pixels)
            if encoded:
                with atomic_write(path) as tmp:
                    tmp.write_bytes(jpeg.tobytes())
                event.crop = path.relative_to(self.output_dir).as_posix()
        event.best_pixels = None

    def write(self) -> None:
        """``events.json`` and ``events.csv`` in the output folder, each written atomically."""
        rows = [event.row() for event in self.events.values()]
        text = io.StringIO()
        table = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
        table.writeheader()
        table.writerows(rows)
        write_text_atomically(json.dumps(rows, indent=1) + "\n", self.output_dir / "events.json")
        write_text_atomically(text.getvalue(), self.output_dir / "events.csv")
