"""FCOS inference: decode, score = sqrt(cls * centerness), per-level top-k, class-wise NMS, cap, clip.

Split in two so that every way of running the network shares one selection: :func:`decode` is dense
tensor arithmetic (it is part of the exported ONNX graph and of the compiled network), and
:func:`select_detections` does the data-dependent part (threshold, top-k, NMS) for PyTorch, ONNX
Runtime and test-time augmentation alike.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms, clip_boxes_to_image


def decode(
    cls_logits: Tensor, box_regression: Tensor, centerness_logits: Tensor, points: Tensor
) -> tuple[Tensor, Tensor]:
    """Head outputs -> ``scores [B,N,C]`` = sqrt(sigmoid(cls) * sigmoid(ctr)) and ``boxes [B,N,4]`` (x1,y1,x2,y2).

    Args: cls_logits ``[B,N,C]``, box_regression ``[B,N,4]`` (l,t,r,b), centerness_logits ``[B,N]``,
    points ``[N,2]`` (x, y). Computed in float32 whatever the head's dtype.
    """
    scores = torch.sqrt(torch.sigmoid(cls_logits.float()) * torch.sigmoid(centerness_logits.float())[..., None])
    box_regression = box_regression.float()
    boxes = torch.cat([points - box_regression[..., :2], points + box_regression[..., 2:]], dim=-1)
    return scores, boxes


def select_detections(
    scores: Tensor,
    boxes: Tensor,
    level_sizes: list[int],
    image_size: tuple[int, int],
    *,
    score_threshold: float | Tensor = 0.05,
    nms_iou: float = 0.6,
    pre_nms_top_k: int = 1000,
    max_detections: int = 100,
) -> list[dict[str, Tensor]]:
    """Detections from dense ``scores [B,N,C]`` and ``boxes [B,N,4]``.

    ``level_sizes``: the number of points of each pyramid level (sum N); the top-k is taken per level.
    ``image_size``: (H, W) of the input tensor, to clip to. ``score_threshold``: one number, or a ``[C]``
    tensor with a threshold per class. Returns per image ``{"boxes" [K,4], "scores" [K], "labels" [K] in
    1..C}``, sorted by score, K <= max_detections.
    """
    num_classes = scores.shape[2]
    if isinstance(score_threshold, Tensor):
        score_threshold = score_threshold.to(scores.device, scores.dtype)
    results = []
    for scores_img, boxes_img in zip(scores, boxes):
        kept_boxes, kept_scores, kept_labels = [], [], []
        for scores_lvl, boxes_lvl in zip(scores_img.split(level_sizes), boxes_img.split(level_sizes)):
            above = (scores_lvl > score_threshold).flatten()
            flat = scores_lvl.flatten()
            keep = torch.nonzero(above).squeeze(1)
            keep = keep[flat[keep].topk(min(pre_nms_top_k, keep.numel())).indices]
            kept_boxes.append(boxes_lvl[keep // num_classes])
            kept_scores.append(flat[keep])
            kept_labels.append(keep % num_classes + 1)
        boxes_t = clip_boxes_to_image(torch.cat(kept_boxes), image_size)
        scores_t, labels_t = torch.cat(kept_scores), torch.cat(kept_labels)
        keep = batched_nms(boxes_t, scores_t, labels_t, nms_iou)[:max_detections]
        results.append({"boxes": boxes_t[keep], "scores": scores_t[keep], "labels": labels_t[keep]})
    return results
