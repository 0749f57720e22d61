"""Feature pyramid P3-P7: torchvision's FPN over C3-C5, P6 from P5 and a ReLU before P7."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7


class FPN(nn.Module):
    """``forward([C3, C4, C5]) -> [P3, P4, P5, P6, P7]``, each ``[B, channels, H/s, W/s]`` for s = 8..128."""

    def __init__(self, in_channels: list[int], channels: int = 256):
        super().__init__()
        # in_channels == out_channels makes LastLevelP6P7 build P6 from P5, as the original did.
        self.fpn = FeaturePyramidNetwork(in_channels, channels, extra_blocks=LastLevelP6P7(channels, channels))

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        named = OrderedDict((f"c{i + 3}", f) for i, f in enumerate(features))
        return list(self.fpn(named).values())
