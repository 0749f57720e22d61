"""benchmarks/video_val.py: frames put scene by scene, and objects counted from boxes within each shot."""

import numpy as np

from benchmarks.video_val import link_objects, scene_order


def boxes(*rows: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """A frame's truth: (label, x, y) of 10x10 boxes."""
    return {
        "labels": np.array([label for label, _, _ in rows], dtype=np.int64),
        "boxes": np.array([[x, y, x + 10, y + 10] for _, x, y in rows], dtype=np.float32).reshape(-1, 4),
    }


def test_scene_order_keeps_each_cluster_together_in_the_order_of_its_first_frame():
    # frames alternating between scenes 7 and 3, then 9 with one frame of 3 among it
    assert scene_order([7, 3, 7, 3, 9, 3, 9]) == [0, 2, 1, 3, 5, 4, 6]


def test_objects_link_by_class_and_overlap_in_consecutive_frames():
    frames = [
        boxes((1, 0, 0), (2, 50, 50)),
        boxes((2, 51, 50), (1, 1, 1)),  # both still there, listed the other way round: linked
        boxes((1, 2, 1), (1, 50, 50)),  # the screw kept; a screw where the clip was: another class, a new object
        boxes(),  # a frame without objects
        boxes((1, 2, 1)),  # the same place after it: a new object, as a camera sees it anew
        boxes((1, 30, 30), (1, 3, 1)),  # one far from it: another object; the other kept (IoU 0.82)
    ]
    ids = link_objects(frames, min_iou=0.3)
    assert [o.tolist() for o in ids] == [[0, 1], [1, 0], [0, 2], [], [3], [4, 3]]
