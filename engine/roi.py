"""A region of interest: a polygon in the frame's pixels; detections whose box's bottom centre lies outside are dropped.

The bottom centre is where an object lying on the road touches it, so a polygon drawn along the road's edges
keeps what lies on the road even when a tall object's box reaches above the edge. The test is supervision's
``PolygonZone``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from .frame_detector import Detections

ROI_COLOUR = (0, 255, 255)  # BGR yellow: road marking


def parse_polygon(text: str) -> np.ndarray:
    """``--roi``: inline ``"x1,y1 x2,y2 x3,y3 ..."`` or a JSON file holding ``[[x, y], ...]`` -> float [P, 2], P >= 3.
    A ``ValueError`` naming the flag or the file for anything else."""
    path = Path(text)
    if path.suffix.lower() == ".json" or path.is_file():
        try:
            points = json.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"--roi {text}: not a readable JSON file ({err})") from None
        where = f"--roi {text}"
    else:
        try:
            points = [[float(v) for v in point.split(",")] for point in text.split()]
        except ValueError:
            points = None
        where = f"--roi {text!r}"
    try:
        polygon = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        polygon = np.zeros((0,))
    if polygon.ndim != 2 or polygon.shape[1] != 2 or len(polygon) < 3 or not np.isfinite(polygon).all():
        raise ValueError(f'{where}: a polygon is at least three points x,y, e.g. "0,400 1280,400 1280,720 0,720"')
    return polygon


class RegionOfInterest:
    """``polygon`` float [P, 2] in the frame's pixels: :meth:`inside` tells which detections to keep,
    :meth:`draw` outlines it."""

    def __init__(self, polygon: np.ndarray) -> None:
        self.polygon = np.round(polygon).astype(np.int64)
        self.zone = sv.PolygonZone(self.polygon, triggering_anchors=(sv.Position.BOTTOM_CENTER,))

    def check_fits(self, size: tuple[int, int], source: object) -> None:
        """A ``ValueError`` when no pixel of the frames of ``size`` (W, H) lies in the polygon: drawn for frames of
        another size (a snapshot at full resolution, a camera's substream), it would drop every detection."""
        width, height = size
        mask = np.zeros((height, width), dtype=np.uint8)
        cv2.fillPoly(mask, [self.polygon.reshape(-1, 1, 2).astype(np.int32)], 1)
        if not mask.any():
            raise ValueError(
                f"--roi: the polygon lies outside the {width}x{height} frames of {source}; it is in their pixels"
            )

    def inside(self, detections: Detections) -> np.ndarray:
        """bool [K]: the detections whose box's bottom centre lies in the polygon (its edge included)."""
        if not len(detections):
            return np.zeros(0, dtype=bool)
        return self.zone.trigger(sv.Detections(xyxy=detections.boxes.astype(np.float64)))

    def draw(self, frame: np.ndarray, thickness: int = 2) -> None:
        """Outline the polygon on the BGR ``frame`` in place."""
        cv2.polylines(
            frame, [self.polygon.reshape(-1, 1, 2).astype(np.int32)], True, ROI_COLOUR, thickness, cv2.LINE_AA
        )
