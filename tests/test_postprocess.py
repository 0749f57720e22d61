"""Post-processing: known head outputs in, known detections out."""

import math

import torch

from model.postprocess import decode, select_detections


def postprocess(cls, reg, ctr, points, level_sizes, image_size, **options):
    return select_detections(*decode(cls, reg, ctr, points), level_sizes, image_size, **options)


def logit(p):
    return math.log(p / (1 - p))


def scene():
    """Four points on two levels (3 + 1), two classes.

    point 0 at (20, 20): class 1, cls 0.64, ctr 0.25 -> score 0.4, box (10, 10, 40, 40)
    point 1 at (22, 20): class 1, cls 0.49, ctr 0.16 -> score 0.28, box (12, 10, 42, 40): IoU 0.88 with point 0
    point 2 at (50, 50): class 2, cls 0.81, ctr 0.64 -> score 0.72, box (-10, 30, 70, 60): clipped to (0, 30, 64, 48)
    point 3 at (21, 21): class 2 on the other level, cls 0.36, ctr 0.81 -> score 0.54, box (11, 11, 41, 41):
        overlaps point 0 but is another class, so NMS keeps both; its class 1 (cls 0.01) scores sqrt(0.0081) = 0.09
    """
    points = torch.tensor([[20.0, 20.0], [22.0, 20.0], [50.0, 50.0], [21.0, 21.0]])
    cls = torch.full((1, 4, 2), logit(0.0001))
    cls[0, 0, 0], cls[0, 1, 0], cls[0, 2, 1], cls[0, 3, 1], cls[0, 3, 0] = (
        logit(0.64),
        logit(0.49),
        logit(0.81),
        logit(0.36),
        logit(0.01),
    )
    ctr = torch.tensor([[logit(0.25), logit(0.16), logit(0.64), logit(0.81)]])
    reg = torch.tensor(
        [[[10.0, 10.0, 20.0, 20.0], [10.0, 10.0, 20.0, 20.0], [60.0, 20.0, 20.0, 10.0], [10.0, 10.0, 20.0, 20.0]]]
    )
    return cls, reg, ctr, points


def test_known_detections():
    cls, reg, ctr, points = scene()
    (dets,) = postprocess(cls, reg, ctr, points, [3, 1], (48, 64), score_threshold=0.1, nms_iou=0.6)
    torch.testing.assert_close(dets["scores"], torch.tensor([0.72, 0.54, 0.4]))
    assert dets["labels"].tolist() == [2, 2, 1]
    torch.testing.assert_close(
        dets["boxes"], torch.tensor([[0.0, 30.0, 64.0, 48.0], [11.0, 11.0, 41.0, 41.0], [10.0, 10.0, 40.0, 40.0]])
    )


def test_nms_is_per_class_and_threshold_applies_to_sqrt_score():
    cls, reg, ctr, points = scene()
    (dets,) = postprocess(cls, reg, ctr, points, [3, 1], (48, 64), score_threshold=0.1, nms_iou=0.95)
    # with a loose NMS the duplicate of point 0 survives; class 1 at point 3 (score 0.09) never does
    torch.testing.assert_close(dets["scores"], torch.tensor([0.72, 0.54, 0.4, 0.28]))
    (dets,) = postprocess(cls, reg, ctr, points, [3, 1], (48, 64), score_threshold=0.085, nms_iou=0.95)
    assert dets["labels"].tolist() == [2, 2, 1, 1, 1] and abs(dets["scores"][-1].item() - 0.09) < 1e-6


def test_cap_and_top_k():
    cls, reg, ctr, points = scene()
    (dets,) = postprocess(cls, reg, ctr, points, [3, 1], (48, 64), score_threshold=0.1, max_detections=2)
    torch.testing.assert_close(dets["scores"], torch.tensor([0.72, 0.54]))
    # top-1 per level: level 0 keeps only point 2, level 1 only point 3
    (dets,) = postprocess(cls, reg, ctr, points, [3, 1], (48, 64), score_threshold=0.1, pre_nms_top_k=1)
    torch.testing.assert_close(dets["scores"], torch.tensor([0.72, 0.54]))


def test_nothing_above_threshold():
    cls, reg, ctr, points = scene()
    (dets,) = postprocess(cls, reg, ctr, points, [3, 1], (48, 64), score_threshold=0.9)
    assert dets["boxes"].shape == (0, 4) and dets["scores"].shape == (0,) and dets["labels"].shape == (0,)
