"""Loss values against independent formulas and torchvision.ops; no inf or NaN, ever."""

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from model import FCOSConfig, FCOSDetector
from model.loss import fcos_loss_sums, ltrb_to_boxes, normalise_losses


def focal_reference(logits, targets, alpha=0.25, gamma=2.0):
    """Focal loss from its definition, with log-sigmoid for stability."""
    p = torch.sigmoid(logits)
    pos = -alpha * (1 - p) ** gamma * F.logsigmoid(logits)
    neg = -(1 - alpha) * p**gamma * F.logsigmoid(-logits)
    return (targets * pos + (1 - targets) * neg).sum()


def giou_reference(a, b):
    """1 - GIoU for pairs of boxes, from the definition."""
    losses = []
    for (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) in zip(a.tolist(), b.tolist()):
        inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
        union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
        hull = (max(ax2, bx2) - min(ax1, bx1)) * (max(ay2, by2) - min(ay1, by1))
        losses.append(1 - (inter / union - (hull - union) / hull))
    return torch.tensor(losses, dtype=torch.float64)


def random_batch(generator, points=500, classes=4):
    cls_logits = torch.randn(points, classes, generator=generator) * 3
    box_regression = torch.rand(points, 4, generator=generator) * 50 + 0.5
    ctr_logits = torch.randn(points, generator=generator)
    labels = torch.randint(0, classes + 1, (points,), generator=generator) * (
        torch.rand(points, generator=generator) < 0.1
    )
    reg_targets = torch.rand(points, 4, generator=generator) * 50 + 0.5
    ctr_targets = torch.rand(points, generator=generator)
    return cls_logits, box_regression, ctr_logits, labels, reg_targets, ctr_targets


def fcos_losses(*tensors, **options):
    """The losses of one batch, each divided by its positives, as the detector computes them."""
    sums = fcos_loss_sums(*tensors, **options)
    return normalise_losses(sums, sums["num_positive"], sums["reg_weight"])


def test_losses_match_references():
    generator = torch.Generator().manual_seed(0)
    cls_logits, box_regression, ctr_logits, labels, reg_targets, ctr_targets = random_batch(generator)
    losses = fcos_losses(cls_logits, box_regression, ctr_logits, labels, reg_targets, ctr_targets)
    positive = labels > 0
    num_pos = positive.sum().item()
    assert num_pos > 10
    one_hot = F.one_hot(labels, 5)[:, 1:].float()
    torch.testing.assert_close(losses["cls_loss"], focal_reference(cls_logits, one_hot) / num_pos)
    torch.testing.assert_close(losses["cls_loss"], sigmoid_focal_loss(cls_logits, one_hot, reduction="sum") / num_pos)
    pred_boxes, target_boxes = ltrb_to_boxes(box_regression[positive]), ltrb_to_boxes(reg_targets[positive])
    torch.testing.assert_close(losses["reg_loss"].double(), giou_reference(pred_boxes, target_boxes).sum() / num_pos)
    torch.testing.assert_close(
        losses["reg_loss"], generalized_box_iou_loss(pred_boxes, target_boxes, reduction="sum") / num_pos
    )
    expected_cnt = (
        F.binary_cross_entropy(
            torch.sigmoid(ctr_logits[positive]).double(), ctr_targets[positive].double(), reduction="sum"
        )
        / num_pos
    )
    torch.testing.assert_close(losses["cnt_loss"].double(), expected_cnt)
    torch.testing.assert_close(losses["total_loss"], losses["cls_loss"] + losses["cnt_loss"] + losses["reg_loss"])


def test_the_centerness_weighted_box_loss_is_the_weighted_mean_and_leaves_the_others_alone():
    """As the official FCOS: sum(centerness target x (1 - GIoU)) / sum(centerness targets) over the positives."""
    generator = torch.Generator().manual_seed(0)
    tensors = random_batch(generator)
    _, box_regression, _, labels, reg_targets, ctr_targets = tensors
    positive = labels > 0
    weights = ctr_targets[positive].double()
    giou = giou_reference(ltrb_to_boxes(box_regression[positive]), ltrb_to_boxes(reg_targets[positive]))
    weighted = fcos_losses(*tensors, reg_weighting="centerness")
    torch.testing.assert_close(weighted["reg_loss"].double(), (weights * giou).sum() / weights.sum())
    plain = fcos_losses(*tensors)
    assert weighted["cls_loss"] == plain["cls_loss"] and weighted["cnt_loss"] == plain["cnt_loss"]
    assert not torch.isclose(weighted["reg_loss"], plain["reg_loss"])


@pytest.mark.parametrize("reg_weighting", ["none", "centerness"])
def test_no_positives_gives_finite_zero_box_losses(reg_weighting):
    generator = torch.Generator().manual_seed(1)
    cls_logits, box_regression, ctr_logits, _, reg_targets, ctr_targets = random_batch(generator)
    cls_logits.requires_grad_()
    labels = torch.zeros(len(cls_logits), dtype=torch.int64)
    losses = fcos_losses(
        cls_logits, box_regression, ctr_logits, labels, reg_targets, ctr_targets, reg_weighting=reg_weighting
    )
    assert losses["reg_loss"].item() == 0.0 and losses["cnt_loss"].item() == 0.0
    losses["total_loss"].backward()
    assert torch.isfinite(cls_logits.grad).all()


def tiny_detector():
    torch.manual_seed(0)
    return FCOSDetector(FCOSConfig(backbone="resnet18", fpn_channels=32, head_convs=1, gn_groups=8))


def test_saturated_head_stays_finite():
    """Final biases at +-80 saturate every sigmoid; the original's log(sigmoid) went to inf there."""
    images = torch.randn(2, 3, 128, 160)
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 50.0, 60.0], [60.0, 20.0, 150.0, 120.0]]), "labels": torch.tensor([1, 4])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    for bias in (80.0, -80.0):
        model = tiny_detector().train()
        for conv in (model.head.cls_logits, model.head.bbox_pred, model.head.centerness):
            torch.nn.init.constant_(conv.bias, bias)
        losses = model(images, targets)
        assert all(torch.isfinite(v) for v in losses.values()), (bias, losses)
        losses["total_loss"].backward()
        for name, p in model.named_parameters():
            if p.grad is not None:
                assert torch.isfinite(p.grad).all(), (bias, name)


def test_image_without_boxes_trains():
    model = tiny_detector().train()
    losses = model(
        torch.randn(1, 3, 96, 128), [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    )
    assert losses["reg_loss"].item() == 0.0 and losses["cnt_loss"].item() == 0.0
    assert torch.isfinite(losses["cls_loss"]) and losses["cls_loss"].item() > 0
    losses["total_loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
