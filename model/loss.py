"""FCOS losses: focal (classification), GIoU (boxes) and centerness BCE, normalised by positives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

LOSS_NAMES = ("cls_loss", "cnt_loss", "reg_loss")


def ltrb_to_boxes(ltrb: Tensor) -> Tensor:
    """Distances ``[...,4]`` (l, t, r, b) from a point to boxes ``[...,4]`` relative to that point."""
    l, t, r, b = ltrb.unbind(dim=-1)
    return torch.stack([-l, -t, r, b], dim=-1)


def fcos_loss_sums(
    cls_logits: Tensor,
    box_regression: Tensor,
    centerness_logits: Tensor,
    labels: Tensor,
    reg_targets: Tensor,
    centerness_targets: Tensor,
    *,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reg_weighting: str = "none",
) -> dict[str, Tensor]:
    """The three losses summed over a batch (flattened over images and points), and the positives counted.

    Args:
        cls_logits ``[P,C]``, box_regression ``[P,4]`` (l,t,r,b >= 0), centerness_logits ``[P]``;
        labels ``[P]`` (0 = background), reg_targets ``[P,4]``, centerness_targets ``[P]``;
        reg_weighting: ``none`` (each positive's GIoU loss counts once) or ``centerness`` (weighted by its
        centerness target, as the official FCOS and mmdetection weight it, so that points near a box's centre,
        whose boxes are scored highest, fit it best).
    Returns scalars ``cls_loss`` (focal, over all points), ``reg_loss`` (GIoU) and ``cnt_loss`` (BCE),
    both over the positives, ``num_positive`` (float) and ``reg_weight`` (the GIoU losses' summed weights).
    Sums, so that replicas and processes can be normalised by those of the whole batch
    (:func:`normalise_losses`).

    The focal loss works on logits (torchvision's, built on BCE-with-logits), so a saturated sigmoid
    cannot produce log(0) = -inf. Everything is computed in float32 so mixed precision cannot overflow it.
    """
    cls_logits, box_regression, centerness_logits = (
        cls_logits.float(),
        box_regression.float(),
        centerness_logits.float(),
    )
    positive = labels > 0
    one_hot = F.one_hot(labels, cls_logits.shape[1] + 1)[:, 1:].to(cls_logits.dtype)
    giou = generalized_box_iou_loss(ltrb_to_boxes(box_regression[positive]), ltrb_to_boxes(reg_targets[positive]))
    weight = centerness_targets[positive] if reg_weighting == "centerness" else torch.ones_like(giou)
    return {
        "cls_loss": sigmoid_focal_loss(cls_logits, one_hot, alpha=alpha, gamma=gamma, reduction="sum"),
        "cnt_loss": F.binary_cross_entropy_with_logits(
            centerness_logits[positive], centerness_targets[positive], reduction="sum"
        ),
        "reg_loss": (weight * giou).sum(),
        "num_positive": positive.sum().float(),
        "reg_weight": weight.sum(),
    }


def normalise_losses(sums: dict[str, Tensor], num_positive: Tensor, reg_weight: Tensor) -> dict[str, Tensor]:
    """``cls_loss`` and ``cnt_loss`` in ``sums`` divided by ``max(num_positive, 1)``, ``reg_loss`` by
    ``max(reg_weight, 1)``, plus their sum ``total_loss``. The official FCOS divides by the weights' sum as it is
    and mmdetection by at least 1e-6; the floor of 1 is the positives' count's, so that the default weighting
    divides by exactly that count; with centerness it matters only to a batch whose targets sum below 1."""
    denominators = {"cls_loss": num_positive, "cnt_loss": num_positive, "reg_loss": reg_weight}
    losses = {name: sums[name] / denominators[name].clamp(min=1.0) for name in LOSS_NAMES}
    losses["total_loss"] = losses["cls_loss"] + losses["cnt_loss"] + losses["reg_loss"]
    return losses
