"""FCOS losses: focal (classification), GIoU (boxes) and centerness BCE, normalised by positives."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss


def ltrb_to_boxes(ltrb: Tensor) -> Tensor:
    """Distances ``[...,4]`` (l, t, r, b) from a point to boxes ``[...,4]`` relative to that point."""
    l, t, r, b = ltrb.unbind(dim=-1)
    return torch.stack([-l, -t, r, b], dim=-1)


def fcos_losses(cls_logits: Tensor, box_regression: Tensor, centerness_logits: Tensor, labels: Tensor,
                reg_targets: Tensor, centerness_targets: Tensor, alpha: float = 0.25,
                gamma: float = 2.0) -> dict[str, Tensor]:
    """Losses for a batch, flattened over images and points.

    Args:
        cls_logits ``[P,C]``, box_regression ``[P,4]`` (l,t,r,b >= 0), centerness_logits ``[P]``;
        labels ``[P]`` (0 = background), reg_targets ``[P,4]``, centerness_targets ``[P]``.
    Returns ``cls_loss``, ``cnt_loss``, ``reg_loss`` and ``total_loss`` (their sum), each a scalar.

    The focal loss works on logits (torchvision's, built on BCE-with-logits), so a saturated
    sigmoid cannot produce log(0) = -inf; it is summed over all points and divided by the number
    of positives (at least 1). GIoU and centerness BCE are averaged over the positives. All three
    are computed in float32 so mixed precision cannot overflow them.
    """
    cls_logits, box_regression, centerness_logits = cls_logits.float(), box_regression.float(), centerness_logits.float()
    positive = labels > 0
    num_positive = positive.sum().clamp(min=1).float()
    one_hot = F.one_hot(labels, cls_logits.shape[1] + 1)[:, 1:].to(cls_logits.dtype)
    cls_loss = sigmoid_focal_loss(cls_logits, one_hot, alpha=alpha, gamma=gamma, reduction="sum") / num_positive
    reg_loss = generalized_box_iou_loss(
        ltrb_to_boxes(box_regression[positive]), ltrb_to_boxes(reg_targets[positive]), reduction="sum"
    ) / num_positive
    cnt_loss = F.binary_cross_entropy_with_logits(
        centerness_logits[positive], centerness_targets[positive], reduction="sum"
    ) / num_positive
    return {"cls_loss": cls_loss, "cnt_loss": cnt_loss, "reg_loss": reg_loss,
            "total_loss": cls_loss + cnt_loss + reg_loss}
