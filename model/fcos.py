"""FCOSDetector: backbone -> FPN -> shared head; targets + losses when training, decoding when not."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .backbone import build_backbone
from .config import FCOSConfig
from .distill import distillation_loss_sums
from .fpn import FPN
from .head import FCOSHead
from .loss import fcos_loss_sums, normalise_losses
from .postprocess import decode, select_detections
from .targets import assign_atss, assign_targets, feature_sizes, make_points


class FCOSDetector(nn.Module):
    """FCOS (Tian et al., 2019) with a ResNet or EfficientNet-Lite trunk, P3-P7 and a GroupNorm head.

    ``model.train(); model(images [B,3,H,W], targets)`` -> dict of ``cls_loss``, ``cnt_loss``,
    ``reg_loss``, ``total_loss``; targets are dicts with ``boxes [M,4]`` (x1,y1,x2,y2 in input pixels)
    and ``labels [M]`` (1..C).
    ``model.eval(); model(images)`` -> per image ``{"boxes" [K,4], "scores" [K], "labels" [K]}`` in
    the input's pixels, scored by sqrt(cls * centerness) and class-wise NMS.
    ``load_pretrained=False`` skips reading ``config.pretrained``'s weights (the layers are still
    frozen the same way), for models whose weights come from a checkpoint
    (:func:`engine.checkpoint.detector_from_checkpoint`).
    """

    def __init__(self, config: FCOSConfig | None = None, load_pretrained: bool = True):
        super().__init__()
        self.config = config = config or FCOSConfig()
        self.backbone = build_backbone(config.backbone, config.pretrained, config.frozen_stages, load_pretrained)
        self.fpn = FPN(self.backbone.out_channels, config.fpn_channels)
        self.head = FCOSHead(
            config.fpn_channels,
            config.num_classes,
            num_levels=len(config.strides),
            num_convs=config.head_convs,
            gn_groups=config.gn_groups,
            prior_prob=config.prior_prob,
        )
        self.network = self._network
        self.set_channels_last(True)

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None):
        if not self.training:
            return self.select(*self.dense(images), tuple(images.shape[-2:]))
        if targets is None:
            raise ValueError("FCOSDetector needs targets in training mode; call model.eval() for detections")
        sums = self.loss_sums(images, targets)
        return normalise_losses(sums, sums["num_positive"], sums["reg_weight"])

    def set_channels_last(self, on: bool) -> None:
        """Run the network channels-last (NHWC) or channels-first (NCHW); the results are the same. The format
        is how this process runs the network (chosen for its device: engine/memory_format.py), not a setting of
        the model, so checkpoints do not hold it."""
        self.channels_last = on
        self.to(memory_format=torch.channels_last if on else torch.contiguous_format)

    def _network(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Backbone, FPN and head: ``cls_logits [B,N,C]``, ``box_regression [B,N,4]``, ``centerness_logits [B,N]``."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.head(self.fpn(self.backbone(images)), self.config.strides)

    def points(self, image_size: tuple[int, int], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """``points [N,2]``, ``strides [N]``, ``ranges [N,2]`` of every location for an input of (H, W)."""
        return make_points(
            feature_sizes(image_size, self.config.strides), self.config.strides, self.config.size_ranges, device
        )

    def dense(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``scores [B,N,C]`` and ``boxes [B,N,4]`` at every location: the network and :func:`decode`."""
        cls_logits, box_regression, centerness_logits = self.network(images)
        points, _, _ = self.points(tuple(images.shape[-2:]), images.device)
        return decode(cls_logits, box_regression, centerness_logits, points)

    def select(
        self,
        scores: Tensor,
        boxes: Tensor,
        image_size: tuple[int, int],
        score_threshold: float | Tensor | None = None,
        pass_sizes: list[tuple[int, int]] | None = None,
    ) -> list[dict[str, Tensor]]:
        """Threshold (the config's unless given), per-level top-k and NMS: :func:`select_for_config`."""
        return select_for_config(self.config, scores, boxes, image_size, score_threshold, pass_sizes)

    def loss_sums(
        self,
        images: Tensor,
        targets: list[dict[str, Tensor]],
        teacher_outputs: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """The losses summed over the batch and its positive count (:func:`model.loss.fcos_loss_sums`), and
        with ``teacher_outputs`` (another detector's :meth:`network` on ``images``) the distillation losses
        (:func:`model.distill.distillation_loss_sums`)."""
        outputs = cls_logits, box_regression, centerness_logits = self.network(images)
        image_size = tuple(images.shape[-2:])
        points, strides, ranges = self.points(image_size, images.device)
        level_sizes = [h * w for h, w in feature_sizes(image_size, self.config.strides)]
        assigned = [
            self.assign(points, strides, ranges, level_sizes, boxes=t["boxes"].float(), labels=t["labels"])
            for t in targets
        ]
        labels, reg_targets, centerness = (torch.cat(parts) for parts in zip(*assigned))
        sums = fcos_loss_sums(
            cls_logits.flatten(0, 1),
            box_regression.flatten(0, 1),
            centerness_logits.flatten(),
            labels,
            reg_targets,
            centerness,
            alpha=self.config.focal_alpha,
            gamma=self.config.focal_gamma,
            reg_weighting=self.config.reg_weighting,
        )
        if teacher_outputs is not None:
            if [t.shape for t in teacher_outputs] != [o.shape for o in outputs]:
                raise ValueError("the teacher's outputs are not at the student's locations (other strides or input)")
            flat = [(o.flatten(0, 1), b.flatten(0, 1), c.flatten()) for o, b, c in (outputs, teacher_outputs)]
            sums |= distillation_loss_sums(*flat, score_threshold=self.config.score_threshold)
        return sums

    def assign(
        self, points: Tensor, strides: Tensor, ranges: Tensor, level_sizes: list[int], *, boxes: Tensor, labels: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One image's ``labels [N]``, ``reg_targets [N,4]``, ``centerness [N]`` by the config's assigner."""
        if self.config.assigner == "atss":
            return assign_atss(points, strides, level_sizes, boxes, labels, top_k=self.config.atss_top_k)
        return assign_targets(points, strides, ranges, boxes, labels, self.config.center_sampling_radius)

    def compile(self, **options: Any) -> None:
        """``torch.compile`` the dense network (backbone, FPN, head); targets, losses and NMS stay eager.

        The state dict is unchanged, so checkpoints load the same with or without it.
        """
        self.network = torch.compile(self._network, **options)


def select_for_config(
    config: FCOSConfig,
    scores: Tensor,
    boxes: Tensor,
    image_size: tuple[int, int],
    score_threshold: float | Tensor | None = None,
    pass_sizes: list[tuple[int, int]] | None = None,
) -> list[dict[str, Tensor]]:
    """Detections from dense ``scores [B,N,C]`` and ``boxes [B,N,4]`` of an input of ``image_size`` (H, W).

    N may hold several passes concatenated (test-time augmentation), each pass's levels with their own top-k:
    passes over inputs of ``pass_sizes`` (H, W) each, or, when None, as many passes of ``image_size`` as N
    holds. Boxes are in ``image_size``'s pixels. ``score_threshold``: a number or a ``[C]`` tensor; the
    config's when None.
    """
    if pass_sizes is None:
        per_pass = sum(h * w for h, w in feature_sizes(image_size, config.strides))
        pass_sizes = [image_size] * (scores.shape[1] // per_pass)
    level_sizes = [h * w for size in pass_sizes for h, w in feature_sizes(size, config.strides)]
    threshold = config.score_threshold if score_threshold is None else score_threshold
    return select_detections(
        scores,
        boxes,
        level_sizes,
        image_size,
        score_threshold=threshold,
        nms_iou=config.nms_iou,
        pre_nms_top_k=config.pre_nms_top_k,
        max_detections=config.max_detections,
    )
