"""Videos, streams and cameras through OpenCV: telling them from pictures, reading frame by frame, writing.

A ``--input`` is a video when it is a webcam index (``0``), a URL (``rtsp://``, ``http://`` ...), a file with a
video suffix (:data:`VIDEO_SUFFIXES`), or a file with neither a video nor a picture suffix whose first frame
OpenCV decodes. A picture suffix is never taken for a video. Frames are decoded one at a time, so memory stays
flat however long the video.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np

from dataset.pictures import IMAGE_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".3gp")
DEFAULT_FPS = 25.0  # for a source that does not say its frame rate (some cameras and streams)
STREAM_TIMEOUT_MS = 10_000  # a stream silent this long is taken as ended (opening, or between frames)

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
    time: float  # seconds from the start: index / fps
    pixels: np.ndarray  # uint8 [H, W, 3] BGR


class VideoReader:
    """A video file, stream or camera, opened and its first frame decoded, or an ``OSError`` naming it.

    ``fps``: the source's frame rate (:data:`DEFAULT_FPS`, with a warning, when it gives none); ``size``: (W, H);
    ``frame_count``: frames announced by a file's header, None for a stream or camera; ``frames_read``: frames
    decoded or skipped so far. Iterating yields every ``stride``-th frame from the first, and ends when the source
    does (a stream that drops ends it as well).
    """

    def __init__(self, source: str | int, stride: int = 1) -> None:
        if stride < 1:
            raise ValueError(f"--vid-stride must be at least 1, got {stride}")
        self.source, self.stride, self.frames_read = source, stride, 0
        if isinstance(source, str) and "://" not in source:
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
        self.frame_count = count if count > 0 and isinstance(source, str) and "://" not in source else None

    @property
    def processed_count(self) -> int | None:
        """Frames the iteration will yield, when the length is known."""
        return None if self.frame_count is None else -(-self.frame_count // self.stride)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while True:
            if self._first is not None:
                pixels, self._first = self._first, None
            else:
                for _ in range(self.stride - 1):  # grab without converting: skipped frames cost less
                    if not self.capture.grab():
                        return
                    self.frames_read += 1
                    index += 1
                ok, pixels = self.capture.read()
                if not ok:
                    return
            self.frames_read += 1
            yield Frame(index, index / self.fps, pixels)
            index += 1

    def truncated(self) -> bool:
        """True when a file ended before the frames its header announces (by more than one)."""
        return self.frame_count is not None and self.frames_read < self.frame_count - 1

    def close(self) -> None:
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
