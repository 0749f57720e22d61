"""assign_targets and assign_atss against plain nested-loop references, and known answers."""

import math

import pytest
import torch

from model.config import FCOSConfig
from model.targets import assign_atss, assign_targets, make_points


def reference_assign(points, strides, ranges, boxes, labels, radius):
    """The FCOS rule written point by point, box by box."""
    n = len(points)
    out_labels = [0] * n
    out_reg = [[0.0] * 4 for _ in range(n)]
    out_ctr = [0.0] * n
    for i in range(n):
        x, y = points[i]
        s = strides[i]
        lo, hi = ranges[i]
        best_area, best_j = math.inf, -1
        for j in range(len(boxes)):
            x1, y1, x2, y2 = boxes[j]
            l, t, r, b = x - x1, y - y1, x2 - x, y2 - y
            if min(l, t, r, b) <= 0:
                continue
            if not (abs(x - (x1 + x2) / 2) < radius * s and abs(y - (y1 + y2) / 2) < radius * s):
                continue
            if not (lo < max(l, t, r, b) <= hi):
                continue
            area = (x2 - x1) * (y2 - y1)
            if area < best_area:
                best_area, best_j = area, j
        if best_j >= 0:
            x1, y1, x2, y2 = boxes[best_j]
            l, t, r, b = x - x1, y - y1, x2 - x, y2 - y
            out_labels[i] = labels[best_j]
            out_reg[i] = [l, t, r, b]
            out_ctr[i] = math.sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))
    return out_labels, out_reg, out_ctr


def random_scene(generator, height, width, num_boxes):
    """Overlapping boxes from tiny to huge, some partly outside the image."""
    sizes = torch.exp(torch.empty(num_boxes, 2).uniform_(math.log(4), math.log(900), generator=generator))
    centers = torch.rand(num_boxes, 2, generator=generator) * torch.tensor(
        [width * 1.2, height * 1.2]
    ) - 0.1 * torch.tensor([width, height])
    boxes = torch.cat([centers - sizes / 2, centers + sizes / 2], dim=1).round()
    labels = torch.randint(1, 5, (num_boxes,), generator=generator)
    return boxes, labels


@pytest.mark.parametrize("seed", range(6))
def test_assign_targets_matches_reference(seed):
    generator = torch.Generator().manual_seed(seed)
    height, width = 256, 384
    config = FCOSConfig()
    sizes = [(math.ceil(height / s), math.ceil(width / s)) for s in config.strides]
    points, strides, ranges = make_points(sizes, config.strides, config.size_ranges, torch.device("cpu"))
    boxes, labels = random_scene(generator, height, width, num_boxes=seed * 3)
    if seed == 1:  # two identical boxes: the lower index wins the tie
        boxes = torch.cat([boxes, boxes[:1]])
        labels = torch.cat([labels, labels[:1] % 4 + 1])
    got_labels, got_reg, got_ctr = assign_targets(points, strides, ranges, boxes, labels, radius=1.5)
    ref_labels, ref_reg, ref_ctr = reference_assign(
        points.tolist(), strides.tolist(), ranges.tolist(), boxes.tolist(), labels.tolist(), 1.5
    )
    assert got_labels.tolist() == ref_labels
    positive = got_labels > 0
    if seed > 0:
        assert positive.any()
    assert torch.equal(got_reg[positive], torch.tensor(ref_reg)[positive])
    torch.testing.assert_close(got_ctr[positive], torch.tensor(ref_ctr)[positive])


def test_no_boxes_is_all_background():
    config = FCOSConfig()
    points, strides, ranges = make_points(
        [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)], config.strides, config.size_ranges, torch.device("cpu")
    )
    labels, reg, ctr = assign_targets(points, strides, ranges, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert labels.shape == (points.shape[0],) and not labels.any()
    assert reg.shape == (points.shape[0], 4) and ctr.shape == (points.shape[0],)


def test_known_assignment():
    """A 40x40 box centred on a stride-8 point: positives are the 3x3 points around its centre on P3."""
    config = FCOSConfig()
    points, strides, ranges = make_points(
        [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)], config.strides, config.size_ranges, torch.device("cpu")
    )
    box = torch.tensor([[16.0, 16.0, 56.0, 56.0]])  # centre (36, 36): a P3 point; radius 12 px
    labels, reg, ctr = assign_targets(points, strides, ranges, box, torch.tensor([2]))
    positive = torch.nonzero(labels).squeeze(1)
    assert set(map(tuple, points[positive].tolist())) == {
        (x, y) for x in (28.0, 36.0, 44.0) for y in (28.0, 36.0, 44.0)
    }
    assert (labels[positive] == 2).all()
    centre = positive[(points[positive] == torch.tensor([36.0, 36.0])).all(dim=1)]
    assert reg[centre].tolist() == [[20.0, 20.0, 20.0, 20.0]] and ctr[centre].item() == 1.0


def reference_atss(points, strides, boxes, labels, top_k, anchor_scale=8.0):
    """ATSS written box by box, level by level, point by point."""

    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    def anchor(i):
        half = strides[i] * anchor_scale / 2
        return (points[i][0] - half, points[i][1] - half, points[i][0] + half, points[i][1] + half)

    positive = [set() for _ in boxes]  # the points positive for each box
    for j, (x1, y1, x2, y2) in enumerate(boxes):
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        candidates = []
        for stride in sorted(set(strides)):
            level = [i for i in range(len(points)) if strides[i] == stride]
            level.sort(key=lambda i: ((points[i][0] - cx) ** 2 + (points[i][1] - cy) ** 2, i))
            candidates += level[:top_k]
        ious = [iou(anchor(i), boxes[j]) for i in candidates]
        mean = sum(ious) / len(ious)
        std = math.sqrt(sum((v - mean) ** 2 for v in ious) / (len(ious) - 1))
        for i, v in zip(candidates, ious):
            x, y = points[i]
            if v >= mean + std and min(x - x1, y - y1, x2 - x, y2 - y) > 0:
                positive[j].add(i)
    out_labels, out_reg = [0] * len(points), [None] * len(points)
    for i in range(len(points)):
        owners = [j for j in range(len(boxes)) if i in positive[j]]
        if owners:
            j = max(owners, key=lambda j: iou(anchor(i), boxes[j]))
            x, y = points[i]
            x1, y1, x2, y2 = boxes[j]
            out_labels[i], out_reg[i] = labels[j], [x - x1, y - y1, x2 - x, y2 - y]
    return out_labels, out_reg


@pytest.mark.parametrize("seed", range(4))
def test_assign_atss_matches_reference(seed):
    generator = torch.Generator().manual_seed(100 + seed)
    height, width = 128, 192
    config = FCOSConfig()
    sizes = [(math.ceil(height / s), math.ceil(width / s)) for s in config.strides]
    points, strides, _ = make_points(sizes, config.strides, config.size_ranges, torch.device("cpu"))
    boxes, labels = random_scene(generator, height, width, num_boxes=2 + 3 * seed)
    boxes = (boxes + torch.rand(boxes.shape, generator=generator)).double()  # no exact ties in IoU
    level_sizes = [h * w for h, w in sizes]
    got_labels, got_reg, _ = assign_atss(points.double(), strides, level_sizes, boxes, labels, top_k=9)
    ref_labels, ref_reg = reference_atss(points.tolist(), strides.tolist(), boxes.tolist(), labels.tolist(), 9)
    assert got_labels.tolist() == ref_labels
    positive = got_labels > 0
    assert positive.any()
    torch.testing.assert_close(got_reg[positive], torch.tensor([r for r in ref_reg if r is not None]).double())


def test_atss_known_assignment():
    """A 12x12 box amid four stride-8 points: they are its 4 candidates, equally far and equally overlapped
    (IoU 144 / 64^2), so the threshold is that IoU and all four are positive."""
    points, strides, _ = make_points([(4, 4)], (8,), ((-1.0, math.inf),), torch.device("cpu"))
    box, label = torch.tensor([[2.0, 2.0, 14.0, 14.0]]), torch.tensor([3])
    labels, reg, ctr = assign_atss(points, strides, [16], box, label, top_k=4)
    positive = torch.nonzero(labels).squeeze(1)
    assert set(map(tuple, points[positive].tolist())) == {(4.0, 4.0), (12.0, 4.0), (4.0, 12.0), (12.0, 12.0)}
    assert (labels[positive] == 3).all()
    first = positive[(points[positive] == torch.tensor([4.0, 4.0])).all(dim=1)]
    assert reg[first].tolist() == [[2.0, 2.0, 10.0, 10.0]]
    assert ctr[first].item() == pytest.approx(0.2)


def test_atss_without_boxes_is_all_background():
    points, strides, _ = make_points([(4, 4), (2, 2)], (8, 16), ((-1.0, 64.0), (64.0, math.inf)), torch.device("cpu"))
    labels, reg, ctr = assign_atss(points, strides, [16, 4], torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert not labels.any() and reg.shape == (20, 4) and ctr.shape == (20,)
