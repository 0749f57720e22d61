"""Shared FCOS head: GroupNorm towers, centerness on the regression tower, a learnable scale per level."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Scale(nn.Module):
    """A learnable scalar multiplier (one per pyramid level)."""

    def __init__(self, value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


def _tower(channels: int, depth: int, gn_groups: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(gn_groups, channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class FCOSHead(nn.Module):
    """Runs on every pyramid level with shared weights and flattens the levels into one point axis.

    ``forward([P3..P7], strides)`` returns, with N = sum of H_l * W_l over levels (row-major per level):
      - ``cls_logits [B, N, C]``
      - ``box_regression [B, N, 4]``: distances (l, t, r, b) in input pixels, >= 0
      - ``centerness_logits [B, N]``

    Distances are ``relu(scale_l * x) * stride_l`` (the FCOS authors' improved form) rather than
    ``exp(scale_l * x)``: it is linear, so no logit can overflow to inf however large it grows, and
    GIoU is scale invariant, so measuring in strides is the same as normalising the targets.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        *,
        num_levels: int = 5,
        num_convs: int = 4,
        gn_groups: int = 32,
        prior_prob: float = 0.01,
    ):
        super().__init__()
        self.cls_tower = _tower(channels, num_convs, gn_groups)
        self.reg_tower = _tower(channels, num_convs, gn_groups)
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(channels, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in range(num_levels))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.constant_(module.bias, 0.0)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, features: list[Tensor], strides: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor]:
        cls_out, reg_out, ctr_out = [], [], []
        for feature, scale, stride in zip(features, self.scales, strides):
            cls_feat = self.cls_tower(feature)
            reg_feat = self.reg_tower(feature)
            cls_out.append(self.cls_logits(cls_feat).flatten(2))
            reg_out.append(torch.relu(scale(self.bbox_pred(reg_feat))).flatten(2) * stride)
            ctr_out.append(self.centerness(reg_feat).flatten(2))
        cls_logits = torch.cat(cls_out, dim=2).transpose(1, 2)
        box_regression = torch.cat(reg_out, dim=2).transpose(1, 2)
        centerness_logits = torch.cat(ctr_out, dim=2).squeeze(1)
        return cls_logits, box_regression, centerness_logits
