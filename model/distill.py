"""Knowledge distillation for FCOS: a trained detector's dense outputs as soft targets for a smaller one that has
the same locations (the same strides, on the same input), beside the losses of the labels.

Classification learns the teacher's probabilities at every location with a focal-modulated BCE (the quality
focal loss of GFL, Li et al., 2020), which is 0 exactly where the student already gives the teacher's
probability. Where the teacher would report a detection (its score sqrt(cls * centerness) above the model's
score threshold), centerness learns its centerness the same way and the box its box by GIoU, each weighted by
that score: where it sees no object, its centerness and boxes were not trained to mean anything.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss

from .loss import ltrb_to_boxes


def soft_focal_loss(logits: Tensor, target: Tensor, gamma: float = 2.0) -> Tensor:
    """Elementwise BCE-with-logits of ``logits`` against probabilities ``target`` (same shape), scaled by
    ``|sigmoid(logits) - target| ** gamma``."""
    modulation = (torch.sigmoid(logits) - target).abs().pow(gamma)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none") * modulation


def distillation_loss_sums(
    student: tuple[Tensor, Tensor, Tensor],
    teacher: tuple[Tensor, Tensor, Tensor],
    *,
    score_threshold: float,
    gamma: float = 2.0,
) -> dict[str, Tensor]:
    """The distillation losses summed over a batch, and the teacher's scores that weight them summed.

    ``student`` and ``teacher``: ``cls_logits [P,C]``, ``box_regression [P,4]`` (l,t,r,b), ``centerness_logits
    [P]`` at the same P locations (images and points flattened). Returns scalars ``distill_cls`` (over every
    location and class; normalised later by the positives, as the focal loss is), ``distill_cnt`` and
    ``distill_reg`` (at the locations where the teacher's score is above ``score_threshold``, weighted by it)
    and ``teacher_score`` (those scores' sum), all float32. The teacher's outputs carry no gradient.
    """
    cls_logits, box_regression, centerness_logits = (t.float() for t in student)
    teacher_cls, teacher_box, teacher_cnt = (t.detach().float() for t in teacher)
    cls_prob, cnt_prob = torch.sigmoid(teacher_cls), torch.sigmoid(teacher_cnt)
    score = torch.sqrt(cls_prob.amax(dim=1) * cnt_prob)
    shown = score > score_threshold
    giou = generalized_box_iou_loss(ltrb_to_boxes(box_regression[shown]), ltrb_to_boxes(teacher_box[shown]))
    return {
        "distill_cls": soft_focal_loss(cls_logits, cls_prob, gamma).sum(),
        "distill_cnt": (score[shown] * soft_focal_loss(centerness_logits[shown], cnt_prob[shown], gamma)).sum(),
        "distill_reg": (score[shown] * giou).sum(),
        "teacher_score": score[shown].sum(),
    }


def normalise_distillation(sums: dict[str, Tensor], num_positive: Tensor, teacher_score: Tensor) -> Tensor:
    """``distill_cls`` over ``max(num_positive, 1)`` plus ``distill_cnt + distill_reg`` over
    ``max(teacher_score, 1)``: one scalar, added to the total loss with the run's weight."""
    located = sums["distill_cnt"] + sums["distill_reg"]
    return sums["distill_cls"] / num_positive.clamp(min=1.0) + located / teacher_score.clamp(min=1.0)
