"""FCOSDetector: backbone -> FPN -> shared head; targets + losses when training, decoding when not."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import torch
from torch import Tensor, nn

from .backbone import ResNetBackbone
from .config import FCOSConfig
from .fpn import FPN
from .head import FCOSHead
from .loss import fcos_losses
from .postprocess import postprocess
from .targets import assign_targets, make_points


class FCOSDetector(nn.Module):
    """FCOS (Tian et al., 2019) with a ResNet trunk, P3-P7 and a GroupNorm head.

    ``model.train(); model(images [B,3,H,W], targets)`` -> dict of ``cls_loss``, ``cnt_loss``,
    ``reg_loss``, ``total_loss``; targets are dicts with ``boxes [M,4]`` (x1,y1,x2,y2 in input pixels)
    and ``labels [M]`` (1..C).
    ``model.eval(); model(images)`` -> per image ``{"boxes" [K,4], "scores" [K], "labels" [K]}`` in
    the input's pixels, scored by sqrt(cls * centerness) and class-wise NMS.
    ``load_pretrained=False`` skips reading ``config.pretrained``'s weights (the layers are still
    frozen the same way), for models whose weights come from a checkpoint.
    """

    def __init__(self, config: FCOSConfig | None = None, load_pretrained: bool = True):
        super().__init__()
        self.config = config = config or FCOSConfig()
        self.backbone = ResNetBackbone(config.backbone, config.pretrained, config.frozen_stages, load_pretrained)
        self.fpn = FPN(self.backbone.out_channels, config.fpn_channels)
        self.head = FCOSHead(config.fpn_channels, config.num_classes, len(config.strides), config.head_convs,
                             config.gn_groups, config.prior_prob)
        if config.channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None):
        if self.config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        features = self.fpn(self.backbone(images))
        cls_logits, box_regression, centerness_logits = self.head(features, self.config.strides)
        feature_sizes = [tuple(f.shape[-2:]) for f in features]
        points, strides, ranges = make_points(feature_sizes, self.config.strides, self.config.size_ranges, images.device)
        if self.training:
            if targets is None:
                raise ValueError("FCOSDetector needs targets in training mode; call model.eval() for detections")
            assigned = [assign_targets(points, strides, ranges, t["boxes"].float(), t["labels"],
                                       self.config.center_sampling_radius) for t in targets]
            labels, reg_targets, centerness = (torch.cat(parts) for parts in zip(*assigned))
            return fcos_losses(cls_logits.flatten(0, 1), box_regression.flatten(0, 1), centerness_logits.flatten(),
                               labels, reg_targets, centerness, self.config.focal_alpha, self.config.focal_gamma)
        return postprocess(cls_logits, box_regression, centerness_logits, points, [h * w for h, w in feature_sizes],
                           tuple(images.shape[-2:]), self.config.score_threshold, self.config.nms_iou,
                           self.config.pre_nms_top_k, self.config.max_detections)

    @classmethod
    def from_checkpoint(cls, checkpoint: Union[str, Path, dict[str, Any]], map_location: Any = "cpu") -> "FCOSDetector":
        """Rebuild a detector (in eval mode) from a checkpoint written by train_voc.py.

        The backbone is built as it was trained (FrozenBatchNorm when pretrained) without reading the
        pretrained file or downloading anything: the checkpoint holds all the weights.
        """
        if not isinstance(checkpoint, dict):
            path = Path(checkpoint)
            if not path.is_file():
                raise FileNotFoundError(f"checkpoint not found: {path}")
            checkpoint = torch.load(path, map_location=map_location, weights_only=False)
        for key in ("model", "config"):
            if key not in checkpoint:
                raise ValueError(f"not an FCOS checkpoint: no {key!r} entry")
        model = cls(FCOSConfig.from_dict(checkpoint["config"]), load_pretrained=False)
        model.load_state_dict(checkpoint["model"])
        return model.eval()
