"""Track ids for detections across frames, by ByteTrack (the ``trackers`` package, the successor of supervision's).

Why ByteTrack from ``trackers``: it is the maintained ByteTrack of the supervision project (supervision 0.27+
moved its tracker there), a short readable implementation (Kalman boxes, IoU, scipy's linear assignment) tested
on MOT benchmarks, that works on boxes alone: no appearance model to download or run on a CPU, unlike BoT-SORT
or the ReID trackers of boxmot (which also pulls in opencv-python beside the headless OpenCV this project uses,
as the later ``trackers`` releases do; hence the pin in requirements.txt). Objects lying on a road barely move
between frames, which is where IoU association is at its best.

The tracker is class-agnostic: a nail read as a clip in one frame keeps its track, so it stays one object.
Every track is named at its first sighting. ByteTrack itself names one at its second (a first sighting may be
a one-frame false alarm), which would leave the events' ``--confirm K/N`` counting from the second sighting:
an object seen in three frames would count two. The events' K of N is the filter against one-frame false
alarms here, so a one-frame detection gets an id and never an event. :class:`ObjectTracker` is the only place
that knows the library: replacing it changes nothing else.

An object lying on the road stays where it is: hidden for longer than a track lives (a lorry parked on it,
detections lost in the dusk), it is the same object when it is seen again where it lay. So a new track that starts
where an ended one was last seen takes the ended one's id, and its object raises no second event.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import supervision as sv
import torch
from torchvision.ops import box_iou
from trackers import ByteTrackTracker
from trackers.core.bytetrack.kalman_box_tracker import ByteTrackKalmanBoxTracker

from .frame_detector import Detections

NO_TRACK = -1
RATE_WINDOW = 25  # processed frames whose times give the rate at which tracks are kept


class ByteTrackNamedAtOnce(ByteTrackTracker):
    """ByteTrack whose new tracks get their id at their first sighting, not their second."""

    def _spawn_new_trackers(self, detections, detection_boxes, unmatched_detections, updated_detections) -> None:
        tracks, spawned = len(self.tracks), len(updated_detections)
        super()._spawn_new_trackers(detections, detection_boxes, unmatched_detections, updated_detections)
        for track, detection in zip(self.tracks[tracks:], updated_detections[spawned:], strict=True):
            track.tracker_id = ByteTrackKalmanBoxTracker.get_next_tracker_id()
            detection.tracker_id = np.array([track.tracker_id])


class ObjectTracker:
    """Track ids [K] (int64) for the detections of each processed frame, called in frame order: every detection
    starts or continues a track (:data:`NO_TRACK` marks one the library would leave unnamed).

    ``frame_rate``: processed frames per second (the video's rate / ``--vid-stride``); ``lost_seconds``: how long a
    track survives unseen (missed detections, something passing in front) before an object seen again there gets
    a new track. Both are in seconds, so the behaviour does not change with the stride. ``min_iou``: the overlap a
    detection needs with a track's predicted box to continue it. A new track whose first box overlaps the last box
    of a track that ended at most ``remember_seconds`` before by ``same_place_iou`` or more takes that track's id.

    For a live source, each call gives its frame's ``time`` (seconds): the windows are then counted in the frames'
    own times, at the rate of the last :data:`RATE_WINDOW` processed frames, as a run that skips frames to keep up
    with a camera (:class:`engine.video.VideoReader`) processes them at its own, irregular rate. Without it (a
    file), the frames come at ``frame_rate``, and the windows are whole numbers of processed frames.
    """

    def __init__(
        self,
        frame_rate: float,
        *,
        lost_seconds: float = 2.0,
        min_iou: float = 0.1,
        remember_seconds: float = 600.0,
        same_place_iou: float = 0.5,
    ) -> None:
        self.tracker = ByteTrackNamedAtOnce(
            frame_rate=frame_rate,
            # every detection that passed the score threshold may start or continue a track
            track_activation_threshold=0.0,
            high_conf_det_threshold=0.0,
            minimum_consecutive_frames=1,
            minimum_iou_threshold=min_iou,
        )
        self.tracker.reset()  # ids from 0 for each video
        self.frame_rate, self.lost_seconds = frame_rate, lost_seconds
        self.remember_seconds, self.same_place_iou = remember_seconds, same_place_iou
        self.frame = 0  # processed frames so far
        self.times: deque[float] = deque(maxlen=RATE_WINDOW)  # of the last processed frames, given in seconds
        self.now = 0.0  # the processed frame's ordinal, or its time when given
        self.renamed: dict[int, int] = {}  # the library's id -> the id given out, for tracks alive
        self.last_box: dict[int, np.ndarray] = {}  # id given out -> its last box [4], for tracks alive
        self.ended: dict[int, tuple[np.ndarray, float]] = {}  # id given out -> (last box [4], ``now`` it ended at)

    def __call__(self, detections: Detections, time: float | None = None) -> np.ndarray:
        boxes = sv.Detections(
            xyxy=detections.boxes.astype(np.float64).reshape(-1, 4),
            confidence=detections.scores,
            class_id=detections.labels,
            data={"index": np.arange(len(detections))},
        )
        rate = self.frame_rate
        if time is None:  # whole frames: a measured rate would round differently at each frame
            self.now, remember = self.frame, round(rate * self.remember_seconds)
        else:
            self.times.append(time)
            if self.times[-1] > self.times[0]:
                rate = (len(self.times) - 1) / (self.times[-1] - self.times[0])
            self.now, remember = time, self.remember_seconds
        # A track lives while fewer processed frames than this have passed since its last sighting. The library's
        # own count, int(frame_rate / 30 * lost_track_buffer), is 0 below 0.5 frames/s: every track would end at once
        self.tracker.maximum_frames_without_update = max(1, round(rate * self.lost_seconds))
        tracked = self.tracker.update(boxes)
        ids = np.full(len(detections), NO_TRACK, dtype=np.int64)
        if len(tracked):
            ids[tracked.data["index"]] = [
                self.given_id(int(i), box) for i, box in zip(tracked.tracker_id, tracked.xyxy)
            ]
        self.forget_ended(remember)
        self.frame += 1
        return ids

    def given_id(self, library_id: int, box: np.ndarray) -> int:
        """The id given out for the library's track ``library_id``, seen at ``box`` [4]: for a new track, that of
        an ended one last seen there (:meth:`ended_at`), if any."""
        if library_id == NO_TRACK:
            return NO_TRACK
        if library_id not in self.renamed:
            same = self.ended_at(box)
            self.renamed[library_id] = library_id if same is None else same
            self.ended.pop(same, None)
        given = self.renamed[library_id]
        self.last_box[given] = box
        return given

    def ended_at(self, box: np.ndarray) -> int | None:
        """The ended track whose last box overlaps ``box`` [4] most, by ``same_place_iou`` or more; None if none."""
        if not self.ended:
            return None
        ended = list(self.ended)
        last_boxes = torch.from_numpy(np.stack([self.ended[i][0] for i in ended]))
        overlaps = box_iou(torch.from_numpy(box[None]), last_boxes)[0]
        best = int(overlaps.argmax())
        return ended[best] if overlaps[best] >= self.same_place_iou else None

    def forget_ended(self, remember: float) -> None:
        """Move the tracks the library ended to :attr:`ended`, and forget those ended ``remember`` ago (in the
        unit of :attr:`now`: ``remember_seconds``, or as many processed frames)."""
        alive = {track.tracker_id for track in self.tracker.tracks}
        for library_id in [i for i in self.renamed if i not in alive]:
            given = self.renamed.pop(library_id)
            self.ended[given] = (self.last_box.pop(given), self.now)
        for given in [i for i, (_, ended) in self.ended.items() if ended <= self.now - remember]:
            del self.ended[given]
