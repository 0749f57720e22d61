"""Target assignment: FCOS's rule (center sampling, per-level size ranges, smallest area wins) or ATSS's
(adaptive IoU threshold over the points nearest each box), both giving targets of the same form."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou


def feature_sizes(image_size: tuple[int, int], strides: tuple[int, ...]) -> list[tuple[int, int]]:
    """(H_l, W_l) of each pyramid level for an input of ``image_size`` (H, W).

    Every stride-2 layer of the trunk and of P6/P7 (3x3 or 1x1 kernels, "same" padding) maps a side n to
    ceil(n / 2), so level ``s`` has sides halved that way log2(s) times: H / s exactly for the padded
    inputs the data loader makes (multiples of 32), and still right for any other size.
    """
    sizes, (h, w), reached = [], image_size, 1
    for stride in strides:
        while reached < stride:
            h, w, reached = (h + 1) // 2, (w + 1) // 2, reached * 2  # ceil; (n+1)//2 also exports to ONNX
        sizes.append((h, w))
    return sizes


def make_points(
    feature_sizes: list[tuple[int, int]],
    strides: tuple[int, ...],
    ranges: tuple[tuple[float, float], ...],
    device: torch.device,
) -> tuple[Tensor, Tensor, Tensor]:
    """Locations of every feature cell in input pixels, in the head's flattening order.

    Returns ``points [N,2]`` (x, y) at ``(j * s + s // 2, i * s + s // 2)``, ``strides [N]`` and
    ``ranges [N,2]`` (the level's size range), N = sum of H_l * W_l.
    """
    points, point_strides, point_ranges = [], [], []
    for (h, w), stride, size_range in zip(feature_sizes, strides, ranges):
        ys = torch.arange(h, device=device, dtype=torch.float32) * stride + stride // 2
        xs = torch.arange(w, device=device, dtype=torch.float32) * stride + stride // 2
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([grid_x.flatten(), grid_y.flatten()], dim=1))
        point_strides.append(torch.full((h * w,), float(stride), device=device))
        point_ranges.append(torch.tensor(size_range, device=device).expand(h * w, 2))
    return torch.cat(points), torch.cat(point_strides), torch.cat(point_ranges)


def assign_targets(
    points: Tensor, strides: Tensor, ranges: Tensor, gt_boxes: Tensor, gt_labels: Tensor, radius: float = 1.5
) -> tuple[Tensor, Tensor, Tensor]:
    """Assign each point at most one ground-truth box.

    A point is positive for a box when it lies strictly inside the box, within ``radius * stride``
    of the box centre on both axes, and ``lo < max(l, t, r, b) <= hi`` for its level. Among
    several such boxes the one with the smallest area wins (ties: the lower index).

    Args:
        points: ``[N,2]`` (x, y); strides: ``[N]``; ranges: ``[N,2]`` (lo, hi];
        gt_boxes: ``[M,4]`` (x1, y1, x2, y2); gt_labels: ``[M]`` in 1..C.
    Returns:
        ``labels [N]`` (0 = background), ``reg_targets [N,4]`` (l, t, r, b) and
        ``centerness [N]`` = sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b)); values at background
        points are meaningless.
    """
    num_points = points.shape[0]
    if gt_boxes.numel() == 0:
        return _background(points)
    x, y = points[:, 0, None], points[:, 1, None]  # [N,1]
    x1, y1, x2, y2 = gt_boxes.unbind(dim=1)  # each [M]
    ltrb = _distances(points, gt_boxes)
    inside_box = ltrb.min(dim=2).values > 0
    radius_px = (strides * radius)[:, None]
    inside_center = ((x - (x1 + x2) / 2).abs() < radius_px) & ((y - (y1 + y2) / 2).abs() < radius_px)
    max_side = ltrb.max(dim=2).values
    in_range = (max_side > ranges[:, 0, None]) & (max_side <= ranges[:, 1, None])
    areas = ((x2 - x1) * (y2 - y1)).expand(num_points, -1)
    candidate_areas = torch.where(inside_box & inside_center & in_range, areas, torch.full_like(areas, float("inf")))
    best_area, best = candidate_areas.min(dim=1)
    return _targets(ltrb, best, torch.isfinite(best_area), gt_labels)


def assign_atss(
    points: Tensor,
    strides: Tensor,
    level_sizes: list[int],
    gt_boxes: Tensor,
    gt_labels: Tensor,
    *,
    top_k: int = 9,
    anchor_scale: float = 8.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Assign each point at most one ground-truth box by ATSS (Zhang et al., 2020), in its anchor-free form.

    Each point stands for a square anchor of side ``anchor_scale * stride`` centred on it. For each box, the
    ``top_k`` points of every level nearest its centre are candidates (ties: the lower index); those whose
    anchor overlaps the box by an IoU of at least the mean plus the standard deviation of the candidates' IoUs,
    and that lie strictly inside the box, are positive. A point positive for several boxes takes the one its
    anchor overlaps most. No size ranges: the threshold picks each box's levels.

    Args:
        points: ``[N,2]`` (x, y); strides: ``[N]``; level_sizes: the points of each level, in
        :func:`make_points`'s order (sum N); gt_boxes: ``[M,4]`` (x1, y1, x2, y2); gt_labels: ``[M]``.
    Returns:
        ``labels [N]``, ``reg_targets [N,4]`` and ``centerness [N]``, as :func:`assign_targets`.
    """
    if gt_boxes.numel() == 0:
        return _background(points)
    half = strides[:, None] * anchor_scale / 2
    ious = box_iou(torch.cat([points - half, points + half], dim=1), gt_boxes)  # [N,M]
    centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    squared_distances = (points[:, None, :] - centres[None]).square().sum(dim=2)  # [N,M]
    starts = [sum(level_sizes[:i]) for i in range(len(level_sizes))]
    candidates = torch.cat(
        [
            level.sort(dim=0, stable=True).indices[:top_k] + start
            for level, start in zip(squared_distances.split(level_sizes), starts)
        ]
    )  # [K,M], K = sum over levels of min(top_k, H_l * W_l)
    candidate_ious = ious.gather(0, candidates)
    threshold = candidate_ious.mean(dim=0) + candidate_ious.std(dim=0).nan_to_num(0.0)
    ltrb = _distances(points, gt_boxes)
    inside_box = ltrb.min(dim=2).values > 0
    positive = torch.zeros_like(inside_box).scatter_(0, candidates, candidate_ious >= threshold) & inside_box
    best_iou, best = torch.where(positive, ious, torch.full_like(ious, -1.0)).max(dim=1)
    return _targets(ltrb, best, best_iou >= 0, gt_labels)


def _background(points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Targets of an image without boxes: every point background."""
    num_points = points.shape[0]
    return (
        torch.zeros(num_points, dtype=torch.int64, device=points.device),
        points.new_zeros(num_points, 4),
        points.new_zeros(num_points),
    )


def _distances(points: Tensor, gt_boxes: Tensor) -> Tensor:
    """``[N,M,4]``: (l, t, r, b) from each point to the sides of each box; all > 0 inside it."""
    x, y = points[:, 0, None], points[:, 1, None]
    x1, y1, x2, y2 = gt_boxes.unbind(dim=1)
    return torch.stack([x - x1, y - y1, x2 - x, y2 - y], dim=2)


def _targets(ltrb: Tensor, best: Tensor, assigned: Tensor, gt_labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Labels (0 where not ``assigned [N]``), (l, t, r, b) and centerness of each point's box ``best [N]``."""
    labels = torch.where(assigned, gt_labels[best], torch.zeros_like(gt_labels[best]))
    reg_targets = ltrb[torch.arange(ltrb.shape[0], device=ltrb.device), best]
    l, t, r, b = reg_targets.clamp(min=0).unbind(dim=1)
    centerness = torch.sqrt(
        (torch.minimum(l, r) / torch.maximum(l, r).clamp(min=1e-6))
        * (torch.minimum(t, b) / torch.maximum(t, b).clamp(min=1e-6))
    )
    return labels, reg_targets, centerness
