"""FCOS inference: decode, score = sqrt(cls * centerness), per-level top-k, class-wise NMS, cap, clip."""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms, clip_boxes_to_image


def postprocess(cls_logits: Tensor, box_regression: Tensor, centerness_logits: Tensor, points: Tensor,
                level_sizes: list[int], image_size: tuple[int, int], score_threshold: float = 0.05,
                nms_iou: float = 0.6, pre_nms_top_k: int = 1000, max_detections: int = 100) -> list[dict[str, Tensor]]:
    """Turn head outputs into detections.

    Args:
        cls_logits ``[B,N,C]``, box_regression ``[B,N,4]`` (l,t,r,b), centerness_logits ``[B,N]``,
        points ``[N,2]`` (x, y); ``level_sizes`` the number of points of each level (sum N);
        ``image_size`` (H, W) of the input tensor, to clip to.
    Returns per image ``{"boxes" [K,4], "scores" [K], "labels" [K] in 1..C}``, sorted by score, K <= max_detections.
    """
    num_classes = cls_logits.shape[2]
    scores_all = torch.sqrt(torch.sigmoid(cls_logits.float()) * torch.sigmoid(centerness_logits.float())[..., None])
    boxes_all = torch.cat([points - box_regression[..., :2].float(), points + box_regression[..., 2:].float()], dim=-1)
    results = []
    for scores_img, boxes_img in zip(scores_all, boxes_all):
        boxes, scores, labels = [], [], []
        for scores_lvl, boxes_lvl in zip(scores_img.split(level_sizes), boxes_img.split(level_sizes)):
            flat = scores_lvl.flatten()
            keep = torch.nonzero(flat > score_threshold).squeeze(1)
            top = flat[keep].topk(min(pre_nms_top_k, keep.numel())).indices
            keep = keep[top]
            boxes.append(boxes_lvl[keep // num_classes])
            scores.append(flat[keep])
            labels.append(keep % num_classes + 1)
        boxes_t = clip_boxes_to_image(torch.cat(boxes), image_size)
        scores_t, labels_t = torch.cat(scores), torch.cat(labels)
        keep = batched_nms(boxes_t, scores_t, labels_t, nms_iou)[:max_detections]
        results.append({"boxes": boxes_t[keep], "scores": scores_t[keep], "labels": labels_t[keep]})
    return results
