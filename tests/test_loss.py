"""Loss values against independent formulas and torchvision.ops; no inf or NaN, ever."""

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from model import FCOSConfig, FCOSDetector
from model.distill import distillation_loss_sums, normalise_distillation
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


# ---------------------------------------------------------------------------------------------- distillation


def test_distillation_losses_worked_by_hand():
    """Location 0: the teacher says class 0 at 0.5 and centerness 0.5 (score 0.5), box l,t,r,b = 1,1,3,1; the
    student says 0.75 for both and box 1,1,1,1 (IoU 2/4 with the teacher's, the enclosing box the teacher's, GIoU
    loss 0.5). Location 1: the teacher sees nothing there (score ~2e-7), so the student's other centerness and box
    there count for nothing; its class probabilities equal the teacher's, so they add exactly 0."""
    low = -30.0
    teacher = (
        torch.tensor([[0.0, low], [low, low]]),
        torch.tensor([[1.0, 1, 3, 1], [1.0, 1, 1, 1]]),
        torch.tensor([0.0, 0.0]),
    )
    student = (
        torch.tensor([[math.log(3), low], [low, low]]),
        torch.tensor([[1.0, 1, 1, 1], [2.0, 2, 2, 2]]),
        torch.tensor([math.log(3), 5.0]),
    )
    sums = distillation_loss_sums(student, teacher, score_threshold=0.05)
    bce = -(0.5 * math.log(0.75) + 0.5 * math.log(0.25))  # BCE of 0.75 against 0.5
    soft = bce * 0.25**2  # modulated by |0.75 - 0.5| ** 2
    assert sums["distill_cls"].item() == pytest.approx(soft, rel=1e-6)
    assert sums["distill_cnt"].item() == pytest.approx(0.5 * soft, rel=1e-6)
    assert sums["distill_reg"].item() == pytest.approx(0.5 * 0.5, rel=1e-6)
    assert sums["teacher_score"].item() == pytest.approx(0.5, rel=1e-6)
    total = normalise_distillation(sums, num_positive=torch.tensor(4.0), teacher_score=sums["teacher_score"])
    assert total.item() == pytest.approx(soft / 4 + (0.5 * soft + 0.25) / 1.0, rel=1e-6)  # the weights' floor of 1


def test_a_student_that_says_what_its_teacher_says_learns_nothing_and_the_teacher_gets_no_gradient():
    torch.manual_seed(0)
    teacher = (torch.randn(50, 4, requires_grad=True), torch.rand(50, 4) * 20 + 1, torch.randn(50))
    student = tuple(t.detach().clone().requires_grad_() for t in teacher)
    sums = distillation_loss_sums(student, teacher, score_threshold=0.05)
    assert sums["teacher_score"] > 1  # some locations above the threshold
    assert sums["distill_cls"] == 0 and sums["distill_cnt"] == 0 and sums["distill_reg"].item() < 1e-5
    different = (student[0] + 1, *student[1:])
    distillation_loss_sums(different, teacher, score_threshold=0.05)["distill_cls"].backward()
    assert student[0].grad.abs().sum() > 0 and teacher[0].grad is None


def test_a_teacher_at_other_locations_is_refused():
    model = FCOSDetector(FCOSConfig(backbone="resnet18", fpn_channels=32, head_convs=1)).train()
    images = torch.randn(1, 3, 192, 192)  # P7 2x2: GroupNorm trains on a single picture
    other = tuple(t[:, :-1] for t in model.network(images))
    target = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 60.0]]), "labels": torch.tensor([1])}]
    with pytest.raises(ValueError, match="the teacher's outputs are not at the student's locations"):
        model.loss_sums(images, target, other)
