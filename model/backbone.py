"""ResNet trunk from torchvision returning C3, C4, C5, with pretrained loading and freezing."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision import models
from torchvision.ops import FrozenBatchNorm2d

_RESNETS = {
    "resnet18": (models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (models.resnet34, models.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (models.resnet50, models.ResNet50_Weights.IMAGENET1K_V1),
    "resnet101": (models.resnet101, models.ResNet101_Weights.IMAGENET1K_V1),
}


def _imagenet_state_dict(name: str) -> dict[str, Tensor]:
    weights = _RESNETS[name][1]
    try:
        return weights.get_state_dict(progress=False)
    except Exception as exc:  # offline: URLError, socket errors, hub cache misses
        raise RuntimeError(
            f"could not download torchvision's ImageNet weights for {name} ({exc}). Offline, download "
            f"{weights.url} elsewhere and pass the local file: FCOSConfig(pretrained='/path/to/{name}.pth') "
            f"or train_voc.py --pretrained /path/to/{name}.pth"
        ) from exc


def _local_state_dict(path: str | Path) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained backbone weights not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return state


class ResNetBackbone(nn.Module):
    """torchvision ResNet without its classifier.

    ``forward(x [B,3,H,W]) -> [C3 [B,c3,H/8,W/8], C4 [B,c4,H/16,W/16], C5 [B,c5,H/32,W/32]]``.

    Pretrained trunks use FrozenBatchNorm2d and freeze the stem plus the first ``frozen_stages``
    stages, as in the original. A trunk trained from scratch keeps ordinary BatchNorm: frozen
    identity statistics cannot learn. ``load_weights=False`` builds a pretrained trunk's structure
    without reading its weights, for restoring a checkpoint that holds them.
    """

    def __init__(
        self, name: str = "resnet50", pretrained: bool | str = False, frozen_stages: int = 1, load_weights: bool = True
    ):
        super().__init__()
        if name not in _RESNETS:
            raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(_RESNETS)}")
        norm_layer = FrozenBatchNorm2d if pretrained else nn.BatchNorm2d
        resnet = _RESNETS[name][0](weights=None, norm_layer=norm_layer)
        if pretrained and load_weights:
            state = _imagenet_state_dict(name) if pretrained is True else _local_state_dict(pretrained)
            missing, unexpected = resnet.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith("fc.")]
            if missing:
                raise ValueError(f"pretrained weights for {name} lack {len(missing)} tensors, e.g. {missing[:3]}")
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4
        self.out_channels = [_stage_channels(stage) for stage in (self.layer2, self.layer3, self.layer4)]
        if pretrained:
            for module in [self.stem, self.layer1, self.layer2, self.layer3, self.layer4][: frozen_stages + 1]:
                module.requires_grad_(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        c2 = self.layer1(self.stem(x))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c3, c4, c5]


def _stage_channels(stage: nn.Sequential) -> int:
    last = stage[-1]
    return (last.conv3 if hasattr(last, "conv3") else last.conv2).out_channels
