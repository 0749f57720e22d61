"""Videos, streams and cameras through OpenCV: telling them from pictures, reading frame by frame, writing.

A ``--input`` is a video when it is a webcam index (``0``), a URL (``rtsp://``, ``http://`` ...), a file with a
video suffix (:data:`VIDEO_SUFFIXES`), or a file with neither a video nor a picture suffix whose first frame
OpenCV decodes. A picture suffix is never taken for a video. Frames are decoded one at a time, so memory stays
flat however long the video. A stream or camera that stops giving frames is opened again, for a while, as a camera
watched for days drops now and then. A stream or camera is read in a thread of its own and each processed frame is
the newest it gave, so a run slower than the camera skips frames instead of falling ever further behind it.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np

from dataset.pictures import IMAGE_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".3gp")
DEFAULT_FPS = 25.0  # for a source that does not say its frame rate (some cameras and streams)
STREAM_TIMEOUT_MS = 10_000  # a stream silent this long is taken as ended (opening, or between frames)
RECONNECT_WAITS = (1.0, 2.0, 4.0, 8.0)  # seconds between tries to open a dropped stream again; then the last, repeated

# FFmpeg's own log lines (``moov atom not found`` ...) would follow our one-line error; a user can still set it
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def video_source(spec: str) -> str | int | None:
    """What ``spec`` names as a video: a webcam index (int), a URL or a file path (str); None for pictures (a
    picture file, a folder, a glob pattern, or a file OpenCV cannot decode as a video without a video suffix)."""
    if spec.isdigit():
        return int(spec)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", spec):
        return spec
    suffix = Path(spec).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return spec
    if suffix in IMAGE_SUFFIXES or not Path(spec).is_file():
        return None
    capture = _open(spec)
    try:
        return spec if capture.isOpened() and capture.read()[0] else None
    finally:
        capture.release()


def source_name(source: str | int) -> str:
    """A short name for outputs: a file's stem, the last part of a URL's path, ``camera<index>``."""
    if isinstance(source, int):
        return f"camera{source}"
    if "://" in source:
        return Path(urlparse(source).path).stem or "stream"
    return Path(source).stem


def _open(source: str | int) -> cv2.VideoCapture:
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS]
    before = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # "cannot open camera" is said once, by us
    try:
        if isinstance(source, int):
            return cv2.VideoCapture(source, cv2.CAP_ANY, params)
        return cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
    finally:
        cv2.utils.logging.setLogLevel(before)


@dataclass
class Frame:
    index: int  # in the source, from 0
    time: float  # seconds from the start: index / fps for a file, by the clock for a stream or camera
    pixels: np.ndarray  # uint8 [H, W, 3] BGR
    clock: float | None = None  # for a stream or camera, when it was read: the clock's Unix time


@dataclass
class _Handoff:
    """Between the thread that reads a live source and the loop that takes its frames."""

    wanted: int | None = None  # the first source index the loop takes; None while it is busy with the last one
    frame: Frame | None = None  # the frame taken for the loop, until it takes it
    ended: bool = False  # the source ended or was lost: no frame will come
    error: BaseException | None = None  # raised in the reading thread, raised again in the loop
    stop: bool = False  # the loop is done: the thread stops reading
    condition: threading.Condition = field(default_factory=threading.Condition)


class VideoReader:
    """A video file, stream or camera, opened and its first frame decoded, or an ``OSError`` naming it.

    ``fps``: the source's frame rate (:data:`DEFAULT_FPS`, with a warning, when it gives none); ``size``: (W, H);
    ``frame_count``: frames announced by a file's header, None for a stream or camera; ``frames_read``: frames
    decoded or skipped so far. Iterating yields every ``stride``-th frame from the first, and ends when the source
    does. A stream or camera (``live``) that stops giving frames is opened again, with waits of
    :data:`RECONNECT_WAITS` between tries, for up to ``reconnect_seconds``; frames after it come at their own size
    resized to the first's. ``reconnects`` counts the times it gave frames again; ``lost`` says it did not, the last
    time. A URL with a length (a recording served over HTTP) is a file here: it ends. A live frame's ``time`` is
    the clock's, from the first frame handed out: an index over the frame rate would not count the gaps.

    With ``newest`` (the default), a live source is read in a thread of its own, and each frame yielded is the
    first the source gives once the loop asks for it, and at least ``stride`` frames after the last one: the
    newest, whenever the loop took longer than the camera. ``skipped`` counts the frames passed over so, beyond
    the stride. Without it, a live source is read in order, every ``stride``-th frame, as a file is, and a loop
    slower than the camera falls behind it (OpenCV and the network buffer the frames it has not taken).
    """

    def __init__(
        self, source: str | int, stride: int = 1, *, reconnect_seconds: float = 0.0, newest: bool = True
    ) -> None:
        if stride < 1:
            raise ValueError(f"--vid-stride must be at least 1, got {stride}")
        if reconnect_seconds < 0:
            raise ValueError(f"--reconnect must be 0 or more seconds, got {reconnect_seconds:g}")
        self.source, self.stride, self.frames_read = source, stride, 0
        self.reconnect_seconds, self.reconnects, self.lost = reconnect_seconds, 0, False
        self.skipped, self._handoff, self._reading = 0, _Handoff(), None
        url = isinstance(source, str) and "://" in source
        if isinstance(source, str) and not url:
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"{source}: no such video file")
            if path.stat().st_size == 0:
                raise OSError(f"{source}: the file is empty")
        self.capture = _open(source)
        ok, first = self.capture.read() if self.capture.isOpened() else (False, None)
        if not ok:
            self.capture.release()
            what = "camera" if isinstance(source, int) else "stream" if "://" in str(source) else "video file"
            raise OSError(f"{source}: cannot be opened or decoded as a {what}")
        self._first: np.ndarray | None = first
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        if not math.isfinite(fps) or not 0 < fps <= 1000:
            warnings.warn(f"{source}: no frame rate given; {DEFAULT_FPS:g} frames/s assumed", stacklevel=2)
            fps = DEFAULT_FPS
        self.fps = fps
        self.size = (first.shape[1], first.shape[0])
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
        # a URL of a recording has a length and ends there: opened again, it would play from the start forever
        self.live = isinstance(source, int) or (url and count <= 0)
        self.frame_count = count if count > 0 and not self.live else None
        self.newest = newest and self.live
        self.opened = 0.0  # the clock (monotonic) when the first frame is handed out: a live frame's time from it

    @property
    def processed_count(self) -> int | None:
        """Frames the iteration will yield, when the length is known."""
        return None if self.frame_count is None else -(-self.frame_count // self.stride)

    def __iter__(self) -> Iterator[Frame]:
        if self.newest:
            return self._newest_frames()
        return self._frames_in_order()

    def _frames_in_order(self) -> Iterator[Frame]:
        index = 0
        while True:
            if self._first is not None:
                pixels, self._first = self._first, None
                self.frames_read += 1
                self.opened = time.monotonic()
            else:
                for _ in range(self.stride - 1):  # grab without converting: skipped frames cost less
                    if self._next(decode=False) is None:
                        return
                    index += 1
                pixels = self._next(decode=True)
                if pixels is None:
                    return
            if self.live:
                yield Frame(index, time.monotonic() - self.opened, pixels, clock=time.time())
            else:
                yield Frame(index, index / self.fps, pixels)
            index += 1

    def _newest_frames(self) -> Iterator[Frame]:
        """The first frame, then those :meth:`_keep_reading` takes for the loop, each once asked for."""
        pixels, self._first = self._first, None
        self.frames_read += 1
        self.opened = time.monotonic()
        first = Frame(0, 0.0, pixels, clock=time.time())
        self._reading = threading.Thread(target=self._keep_reading, name=f"read {self.source}", daemon=True)
        self._reading.start()  # the camera goes on while the loop works on the first frame
        yield first
        handoff, last = self._handoff, 0
        while True:
            with handoff.condition:
                handoff.wanted = last + self.stride
                # in steps, so that Ctrl-C is seen wherever a lock's wait would not give way to it
                while not handoff.condition.wait_for(lambda: handoff.frame is not None or handoff.ended, 0.5):
                    pass
                frame, handoff.frame = handoff.frame, None
            if frame is None:
                if handoff.error is not None:
                    raise handoff.error
                return
            self.skipped += frame.index - (last + self.stride)
            last = frame.index
            yield frame

    def _keep_reading(self) -> None:
        """Grab (and so decode) every frame of the live source, so that none waits in a buffer, and convert the one
        the loop asks for (:class:`_Handoff`), until the source ends or the loop stops; runs in its own thread, which
        owns the capture once the loop has stopped."""
        handoff, index = self._handoff, 0
        try:
            while not handoff.stop and self._next(decode=False) is not None:
                index += 1
                with handoff.condition:
                    taken = handoff.wanted is not None and index >= handoff.wanted
                if not taken:
                    continue
                ok, pixels = self.capture.retrieve()
                if not ok:
                    continue
                frame = Frame(index, time.monotonic() - self.opened, self._sized(pixels), clock=time.time())
                with handoff.condition:
                    handoff.frame, handoff.wanted = frame, None
                    handoff.condition.notify()
        except BaseException as err:  # noqa: BLE001 (the loop raises it)
            handoff.error = err
        finally:
            if handoff.stop:
                self.capture.release()
            with handoff.condition:
                handoff.ended = True
                handoff.condition.notify()

    def _sized(self, pixels: np.ndarray) -> np.ndarray:
        """``pixels`` at the first frame's size (a source opened again may give another)."""
        if (pixels.shape[1], pixels.shape[0]) != self.size:
            return cv2.resize(pixels, self.size, interpolation=cv2.INTER_AREA)
        return pixels

    def _next(self, *, decode: bool) -> np.ndarray | None:
        """The next frame (decoded, or only grabbed: an empty array), opening a live source again when it drops;
        None at the end."""
        until, waits = None, None
        while True:
            if decode:
                ok, pixels = self.capture.read()
            else:
                ok, pixels = self.capture.grab(), np.empty(0, dtype=np.uint8)
            if ok:
                self.frames_read += 1
                self.reconnects += waits is not None
                return self._sized(pixels) if decode else pixels
            if not self.live:
                return None
            if waits is None:
                until = time.monotonic() + self.reconnect_seconds
                waits = itertools.chain(RECONNECT_WAITS, itertools.repeat(RECONNECT_WAITS[-1]))
                if self.reconnect_seconds:
                    warnings.warn(
                        f"{self.source}: no frame after frame {self.frames_read}; opening it again for up to "
                        f"{self.reconnect_seconds:g} s",
                        stacklevel=3,
                    )
            if not self._open_again(until, waits):
                self.lost = True
                return None

    def _open_again(self, until: float, waits: Iterator[float]) -> bool:
        """Wait the next of ``waits`` (seconds) and open the live source again, until it opens (True) or the
        clock passes ``until``."""
        for wait in waits:
            left = until - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(wait, left))
            if self._handoff.stop:
                return False
            self.capture.release()
            self.capture = _open(self.source)
            if self.capture.isOpened():
                return True
        return False

    def truncated(self) -> bool:
        """True when a file ended before the frames its header announces (by more than one)."""
        return self.frame_count is not None and self.frames_read < self.frame_count - 1

    def close(self) -> None:
        """Stop reading and release the source. A reading thread blocked in OpenCV (a stream silent for up to
        :data:`STREAM_TIMEOUT_MS`) or waiting to open it again is not waited for beyond a second: it releases the
        capture itself when it ends, as releasing it under the thread would crash."""
        self._handoff.stop = True
        if self._reading is not None:
            self._reading.join(timeout=1.0)
            if self._reading.is_alive():
                return
        self.capture.release()


class VideoWriter:
    """An annotated video (.mp4, ``mp4v``) of frames of ``size`` (W, H) at ``fps``, or an ``OSError`` naming it.
    ``close`` finalises the file; call it whatever happens (``with``)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        self.path = path
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self.writer.isOpened():
            raise OSError(f"{path}: cannot write a video there")

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(frame)

    def close(self) -> None:
        self.writer.release()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
