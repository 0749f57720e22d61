"""Train FCOS on a VOC-layout data set: CPU, one GPU, DataParallel over all GPUs, or DDP under torchrun.

    python train_voc.py --preset demo                       # synthetic data, 2-core CPU, ~7 minutes
    python train_voc.py --preset fod-cpu --data-root foreign_object_dataset
    python train_voc.py --preset fod --data-root foreign_object_dataset --pretrained /path/resnet50.pth
    torchrun --nproc_per_node 4 train_voc.py --preset fod --data-root foreign_object_dataset --amp

Writes ``model_<epoch>.pth``, ``last.pth`` (and ``best.pth`` with ``--val-every``) atomically into
``--output-dir``, a CSV of every step, and a loss curve. ``--resume last.pth`` continues exactly.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from dataset.voc import VOCDataset, collate_fn, read_split, resolve_classes
from dataset.voc_eval import format_results
from eval_voc import evaluate_model, parse_resize
from model import FCOSConfig, FCOSDetector

PRESETS: dict[str, dict[str, Any]] = {
    # The original run: ImageNet ResNet50 at 922x1640, 2 pictures per GPU, 100 epochs, manual steps.
    "fod": dict(data_root="foreign_object_dataset", classes="fod", backbone="resnet50", pretrained="imagenet",
                fpn_channels=256, head_convs=4, resize=(922, 1640), batch_size=2, lr=1e-3, epochs=100,
                lr_steps=(70, 90), schedule="step", warmup_steps=500, augment="flip,color,rotate"),
    "fod-288": dict(data_root="foreign_object_dataset", classes="fod", backbone="resnet50", pretrained="imagenet",
                    fpn_channels=256, head_convs=4, resize=(288, 512), batch_size=2, lr=1e-3, epochs=100,
                    lr_steps=(70, 90), schedule="step", warmup_steps=500, augment="flip,color,rotate"),
    # PASCAL VOC07+12 trainval, scored on VOC07 test.
    "voc": dict(data_root="VOCdevkit/VOC0712", classes="voc", backbone="resnet50", pretrained="imagenet",
                fpn_channels=256, head_convs=4, resize=(800, 1333), batch_size=2, lr=1e-2, epochs=30,
                lr_steps=(20, 27), schedule="step", warmup_steps=500, augment="flip,color,rotate",
                train_split="trainval", val_split="test"),
    # From scratch on a 2-core CPU: object-centred crops of pictures at half resolution.
    "fod-cpu": dict(data_root="foreign_object_dataset", classes="fod", backbone="resnet18", pretrained="none",
                    fpn_channels=128, head_convs=2, resize=(720, 1280), crop=(320, 320), batch_size=8, lr=0.02,
                    epochs=1000, schedule="cosine", warmup_steps=100, augment="flip", time_budget=27.0,
                    cache=True, workers=2, amp="auto", save_every=20),
    # The embedded default: synthetic pictures, trained, scored and shown in about ten CPU minutes.
    "demo": dict(data_root="data/synthetic", classes="fod", backbone="resnet18", pretrained="none",
                 fpn_channels=64, head_convs=2, resize=(360, 640), crop=(256, 256), batch_size=8, lr=0.02,
                 epochs=1000, schedule="cosine", warmup_steps=100, augment="flip", time_budget=6.0,
                 cache=True, workers=2, amp="auto", save_every=0, val_split="test",
                 synthetic=dict(train=400, val=50, test=100, seed=0)),
}

DEFAULTS: dict[str, Any] = dict(
    data_root=None, classes="fod", backbone="resnet50", pretrained="none", fpn_channels=256, head_convs=4,
    resize=(922, 1640), crop=None, batch_size=2, lr=1e-3, momentum=0.9, weight_decay=1e-4, epochs=100,
    lr_steps=(70, 90), schedule="step", warmup_steps=500, augment="flip,color,rotate", train_split="train",
    val_split="val", time_budget=None, cache=False, workers=2, synthetic=None, amp="off", channels_last=True,
    save_every=1,
)


def resolve_amp(amp: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` where the hardware computes it natively (recent GPUs, CPUs with AMX), else ``off``."""
    if amp != "auto":
        return amp
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return "bf16" if device.type == "cpu" and amx else "off"


# ----------------------------------------------------------------------------- schedule
def learning_rate(step: int, base_lr: float, warmup_steps: int, total_steps: int, schedule: str,
                  step_milestones: tuple[int, ...] = ()) -> float:
    """LR for optimizer step ``step`` (0-based): linear warmup from base_lr / warmup_steps, then x0.1 at
    each milestone (``schedule="step"``, the original's manual steps) or a cosine decay to 0 at
    ``total_steps`` (``"cosine"``)."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "cosine":
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return base_lr * 0.1 ** sum(step >= m for m in step_milestones)


# ----------------------------------------------------------------------------- distributed
def init_distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank); starts a process group when launched by torchrun."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, 0
    rank, world_size, local_rank = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return rank, world_size, local_rank


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def unwrap(model: nn.Module) -> FCOSDetector:
    """The FCOSDetector inside DataParallel / DistributedDataParallel / TrainStep wrappers."""
    while not isinstance(model, FCOSDetector):
        model = model.module
    return model


class TrainStep(nn.Module):
    """Loss computation with tensor-only inputs, so DataParallel can scatter the batch.

    ``forward(images [B,3,H,W], boxes [B,M,4], labels [B,M])`` (labels 0 = padding) -> the losses
    dict; under DataParallel each replica gets a slice of the batch and the dict is gathered.
    """

    def __init__(self, model: FCOSDetector):
        super().__init__()
        self.module = model

    def forward(self, images: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        targets = [{"boxes": b[l > 0], "labels": l[l > 0]} for b, l in zip(boxes, labels)]
        return self.module(images, targets)


def pad_targets(targets: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of ``{"boxes" [M_i,4], "labels" [M_i]}`` -> ``boxes [B,M,4]``, ``labels [B,M]`` (0-padded)."""
    m = max(1, max(len(t["labels"]) for t in targets))
    boxes = torch.zeros(len(targets), m, 4)
    labels = torch.zeros(len(targets), m, dtype=torch.int64)
    for i, t in enumerate(targets):
        boxes[i, : len(t["labels"])] = t["boxes"]
        labels[i, : len(t["labels"])] = t["labels"]
    return boxes, labels


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write atomically: a crash mid-write leaves the previous file intact."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def checkpoint_state(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                     epoch: int, state: dict[str, Any], args: argparse.Namespace, best_map: float) -> dict[str, Any]:
    detector = unwrap(model)
    step, total_steps, milestones = state["step"], state["total_steps"], state["milestones"]
    return {"model": detector.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "config": detector.config.to_dict(), "classes": list(detector.config.classes), "epoch": epoch,
            "step": step, "total_steps": total_steps, "milestones": list(milestones), "best_map": best_map,
            "args": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()}}


# ----------------------------------------------------------------------------- one step, one epoch
class NonFiniteLossError(RuntimeError):
    pass


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               images: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, amp_dtype: torch.dtype | None,
               clip_grad_norm: float | None) -> tuple[dict[str, float], bool]:
    """One optimizer step. Returns the losses (floats, averaged over replicas) and whether the step was
    applied: a non-finite loss on any process skips it everywhere, leaving weights, BatchNorm statistics
    and optimizer untouched."""
    device_type = images.device.type
    autocast = torch.autocast(device_type, dtype=amp_dtype) if amp_dtype else nullcontext()
    buffers = list(model.buffers())
    saved_buffers = [b.clone() for b in buffers]  # the forward pass updates BatchNorm running statistics
    with autocast:
        losses = model(images, boxes, labels)
    losses = {k: v.float().mean() for k, v in losses.items()}
    finite = torch.isfinite(losses["total_loss"]).float()
    if dist.is_initialized():
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    optimizer.zero_grad(set_to_none=True)
    if finite.item() < 1:
        with torch.no_grad():
            for buffer, saved in zip(buffers, saved_buffers):
                buffer.copy_(saved)
        return {k: v.item() for k, v in losses.items()}, False
    scaler.scale(losses["total_loss"]).backward()
    if clip_grad_norm:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    return {k: v.item() for k, v in losses.items()}, True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                    loader: DataLoader, epoch: int, state: dict[str, Any], args: argparse.Namespace,
                    device: torch.device, log_writer: Any | None, deadline: float | None) -> None:
    """Run the batches of one epoch; ``state`` carries ``step``, ``total_steps``, ``bad_steps``, ``history``."""
    model.train()
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    progress = tqdm(loader, desc=f"epoch {epoch}/{args.epochs}", unit="batch", disable=not is_main_process(),
                    dynamic_ncols=True, leave=False)
    tic = time.perf_counter()
    for images, targets in progress:
        if state["step"] >= state["total_steps"] or past_deadline(deadline):
            break
        lr = learning_rate(state["step"], args.lr, args.warmup_steps, state["total_steps"], args.schedule,
                           state["milestones"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        boxes, labels = pad_targets(targets)
        images = images.to(device, non_blocking=True)
        losses, applied = train_step(model, optimizer, scaler, images, boxes.to(device), labels.to(device),
                                     amp_dtype, args.clip_grad_norm)
        if not applied:
            state["bad_steps"] += 1
            state["skipped_steps"] += 1
            if is_main_process():  # every process skips the same steps
                tqdm.write(f"step {state['step']}: non-finite loss {losses}, step skipped "
                           f"({state['bad_steps']} in a row, {state['skipped_steps']} in all)")
            if state["bad_steps"] >= args.max_bad_steps:
                raise NonFiniteLossError(
                    f"{state['bad_steps']} non-finite losses in a row at step {state['step']}; stopping. "
                    f"The last good checkpoint in {args.output_dir} is intact: lower --lr, add --clip-grad-norm, "
                    f"or check the data.")
            continue
        state["bad_steps"] = 0
        state["step"] += 1
        if deadline is not None and state["step"] == state["calibration_steps"][0]:
            state["calibration_clock"] = time.perf_counter()
        elif deadline is not None and state["step"] == state["calibration_steps"][1]:
            first, last = state["calibration_steps"]
            fit_schedule_to_budget(state, deadline, (time.perf_counter() - state["calibration_clock"]) / (last - first))
            if is_main_process():
                tqdm.write(f"time budget: schedule sized to {state['total_steps']} steps")
        toc = time.perf_counter()
        images_per_s = images.shape[0] * args.world_size / (toc - tic)
        state["images_seen"] += images.shape[0] * args.world_size
        state["step_seconds"] += toc - tic
        tic = toc
        row = {"step": state["step"], "epoch": epoch, **{k: round(v, 6) for k, v in losses.items()},
               "lr": lr, "time": round(time.time() - state["start_time"], 3)}
        state["history"].append(row)
        if log_writer is not None:
            log_writer.writerow(row)
        progress.set_postfix(cls=f"{losses['cls_loss']:.3f}", cnt=f"{losses['cnt_loss']:.3f}",
                             reg=f"{losses['reg_loss']:.3f}", lr=f"{lr:.2e}", img_s=f"{images_per_s:.1f}")
    progress.close()


def past_deadline(deadline: float | None) -> bool:
    """Out of time? Under DDP the schedule sized to the budget decides instead, identically on every process."""
    return deadline is not None and not dist.is_initialized() and time.time() > deadline


def fit_schedule_to_budget(state: dict[str, Any], deadline: float, seconds_per_step: float) -> None:
    """Size the schedule (cosine end, step milestones) to the steps that still fit before ``deadline``.

    Called once the step time is known (step 25) and again after every epoch, so loader start-up,
    checkpoints and a busy machine are all accounted for and the LR reaches its end as time runs out.
    """
    fits = state["step"] + max(0, int(0.98 * (deadline - time.time()) / seconds_per_step))
    if dist.is_initialized():  # every process must stop at the same step
        agreed = torch.tensor(fits)
        dist.all_reduce(agreed, op=dist.ReduceOp.MIN)
        fits = int(agreed)
    ratio = fits / state["total_steps"]
    state["milestones"] = tuple(int(m * ratio) for m in state["milestones"])
    state["total_steps"] = fits


def plot_losses(history: list[dict[str, Any]], path: Path) -> None:
    """Loss curves (each part and the total) against the step, as a PNG."""
    from matplotlib.figure import Figure

    if not history:
        return
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    steps = [row["step"] for row in history]
    for key in ("total_loss", "cls_loss", "cnt_loss", "reg_loss"):
        ax.plot(steps, [row[key] for row in history], label=key, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- set-up
def apply_preset(args: argparse.Namespace) -> argparse.Namespace:
    """Fill every flag left unset from the preset, then from DEFAULTS."""
    preset = PRESETS[args.preset] if args.preset else {}
    for key, default in DEFAULTS.items():
        if getattr(args, key, None) is None:
            setattr(args, key, preset.get(key, default))
    args.synthetic = preset.get("synthetic")
    args.resize = tuple(args.resize)
    args.crop = tuple(args.crop) if args.crop else None
    args.lr_steps = tuple(args.lr_steps)
    if args.output_dir is None:
        args.output_dir = str(Path("checkpoint") / (args.preset or "run"))
    return args


def prepare_data_root(args: argparse.Namespace) -> None:
    """Check the data set exists (the demo generates its synthetic one when absent)."""
    root = Path(args.data_root)
    if args.synthetic and not (root / "ImageSets" / "Main" / f"{args.train_split}.txt").is_file():
        from dataset.synthetic import generate

        spec = args.synthetic
        print(f"generating the synthetic data set in {root} ...")
        generate(root, {"train": spec["train"], "val": spec["val"], "test": spec["test"]}, seed=spec["seed"])
    if not root.is_dir():
        raise SystemExit(f"train_voc.py: error: data root {root} does not exist (pass --data-root)")
    for split in (args.train_split, args.val_split):
        if not read_split(root, split):
            raise SystemExit(f"train_voc.py: error: split {split!r} in {root} is empty")


def build_model(args: argparse.Namespace, classes: tuple[str, ...], load_pretrained: bool = True) -> FCOSDetector:
    pretrained: bool | str = {"none": False, "imagenet": True}.get(args.pretrained, args.pretrained)
    config = FCOSConfig(classes=classes, backbone=args.backbone, pretrained=pretrained,
                        fpn_channels=args.fpn_channels, head_convs=args.head_convs, resize_size=args.resize,
                        channels_last=args.channels_last)
    return FCOSDetector(config, load_pretrained)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train FCOS on a VOC-layout data set", add_help=add_help)
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="a recipe; every value it sets can be overridden by its own flag")
    data = parser.add_argument_group("data")
    data.add_argument("--data-root", help="VOC-layout folder (Annotations/, JPEGImages/, ImageSets/Main/)")
    data.add_argument("--train-split", help="default: train")
    data.add_argument("--val-split", help="default: val (the demo: test)")
    data.add_argument("--classes", help="fod (default), voc, 'a,b,c' or a file with one name a line")
    data.add_argument("--resize", type=parse_resize, metavar="MIN,MAX", help="picture size (short side, long side)")
    data.add_argument("--crop", type=parse_resize, metavar="H,W", help="train on object-centred crops of this size")
    data.add_argument("--augment", help="comma list of flip,color,rotate,crop ('' for none)")
    data.add_argument("--workers", type=int, help="data loading processes per GPU/process")
    data.add_argument("--cache", action=argparse.BooleanOptionalAction, default=None,
                      help="keep decoded, resized pictures in memory (decoding 2560x1440 JPEGs dominates otherwise)")
    net = parser.add_argument_group("model")
    net.add_argument("--backbone", choices=["resnet18", "resnet34", "resnet50", "resnet101"])
    net.add_argument("--pretrained", help="none, imagenet (torchvision's download) or a local state dict path")
    net.add_argument("--fpn-channels", type=int)
    net.add_argument("--head-convs", type=int)
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int)
    opt.add_argument("--batch-size", type=int, help="pictures per GPU (per process under torchrun)")
    opt.add_argument("--lr", type=float, help="base learning rate")
    opt.add_argument("--momentum", type=float)
    opt.add_argument("--weight-decay", type=float)
    opt.add_argument("--schedule", choices=["step", "cosine"], help="manual x0.1 steps (original) or cosine")
    opt.add_argument("--lr-steps", type=int, nargs="+", metavar="EPOCH", help="epochs where the LR drops x0.1")
    opt.add_argument("--warmup-steps", type=int, help="linear warmup length in steps")
    opt.add_argument("--clip-grad-norm", type=float, default=None, help="clip the gradient norm (off by default)")
    opt.add_argument("--time-budget", type=float, metavar="MIN", help="stop training after this many minutes")
    opt.add_argument("--max-bad-steps", type=int, default=5, help="stop after this many non-finite losses in a row")
    opt.add_argument("--seed", type=int, default=0)
    hw = parser.add_argument_group("hardware")
    hw.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    hw.add_argument("--amp", nargs="?", const="bf16", choices=["bf16", "fp16", "auto", "off"], default=None,
                    help="mixed precision: bf16 (what --amp alone means), fp16 with a gradient scaler, "
                         "auto (bf16 where the GPU or CPU computes it natively, e.g. Intel AMX), off")
    hw.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                    help="NHWC memory format, the default (faster convolutions, on GPUs and on CPUs)")
    hw.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under torchrun (from-scratch backbones)")
    hw.add_argument("--no-data-parallel", action="store_true", help="use one GPU even when several are visible")
    out = parser.add_argument_group("output")
    out.add_argument("--output-dir", help="default: checkpoint/<preset>")
    out.add_argument("--resume", metavar="CKPT", help="continue exactly from a checkpoint written by this script")
    out.add_argument("--save-every", type=int,
                     help="write model_<epoch>.pth every N epochs; 0: only last.pth (default 1; fod-cpu 20, demo 0)")
    out.add_argument("--val-every", type=int, default=0, help="score --val-split every N epochs and keep best.pth")
    out.add_argument("--no-final-eval", action="store_true", help="skip scoring --val-split after training")
    return parser


# ----------------------------------------------------------------------------- main
def main(args: argparse.Namespace) -> dict[str, Any]:
    args = apply_preset(args)
    rank, args.world_size, local_rank = init_distributed()
    device = torch.device(f"cuda:{local_rank}" if args.device == "cuda" and dist.is_initialized() else args.device)
    args.amp = resolve_amp(args.amp, device)
    if is_main_process():
        prepare_data_root(args)
    if dist.is_initialized():
        dist.barrier()
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    classes = resolve_classes(args.classes)

    checkpoint = None
    if args.resume:
        checkpoint = torch.load(args.resume, map_location="cpu", weights_only=False)
        if tuple(checkpoint["classes"]) != classes:
            raise SystemExit(f"train_voc.py: error: {args.resume} was trained on classes {checkpoint['classes']}, "
                             f"not {list(classes)}")
    seed_everything(args.seed + rank)
    model = build_model(args, classes, load_pretrained=checkpoint is None)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
    if args.sync_bn and dist.is_initialized():
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)

    augment = tuple(a for a in args.augment.split(",") if a)
    dataset = VOCDataset(args.data_root, args.train_split, classes=classes, train=True, resize_size=args.resize,
                         crop_size=args.crop, cache=args.cache, augment=augment)
    if args.cache:
        for i in tqdm(range(len(dataset)), desc="caching pictures", disable=not is_main_process(), leave=False):
            dataset.load_picture(i)  # before the workers fork, so they share it
    generator = torch.Generator()
    sampler = (DistributedSampler(dataset, shuffle=True, seed=args.seed) if dist.is_initialized()
               else RandomSampler(dataset, generator=generator))
    num_gpus = torch.cuda.device_count() if device.type == "cuda" and not dist.is_initialized() else 1
    use_data_parallel = num_gpus > 1 and not args.no_data_parallel
    batch_size = args.batch_size * (num_gpus if use_data_parallel else 1)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=args.workers,
                        collate_fn=collate_fn, pin_memory=device.type == "cuda", drop_last=True,
                        generator=generator)
    if len(loader) == 0:
        raise SystemExit(f"train_voc.py: error: {len(dataset)} pictures in {args.train_split!r} make no full batch "
                         f"of {batch_size}")

    step_model: nn.Module = TrainStep(model)
    if dist.is_initialized():
        step_model = nn.parallel.DistributedDataParallel(step_model, device_ids=[local_rank] if device.type == "cuda" else None)
    elif use_data_parallel:
        step_model = nn.DataParallel(step_model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")

    steps_per_epoch = len(loader)
    state: dict[str, Any] = {"step": 0, "total_steps": args.epochs * steps_per_epoch, "bad_steps": 0,
                             "skipped_steps": 0, "history": [], "start_time": time.time(),
                             "images_seen": 0, "step_seconds": 0.0,
                             "milestones": tuple(e * steps_per_epoch for e in args.lr_steps),
                             "calibration_steps": (5, 25)}
    start_epoch, best_map = 1, -1.0
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        start_epoch, best_map = checkpoint["epoch"] + 1, checkpoint.get("best_map", -1.0)
        state["step"] = checkpoint["step"]
        if args.time_budget:  # continue the schedule that was sized to the budget
            state["total_steps"], state["milestones"] = checkpoint["total_steps"], tuple(checkpoint["milestones"])
        state["calibration_steps"] = (state["step"] + 5, state["step"] + 25)
    deadline = None
    if args.time_budget:
        deadline = state["start_time"] + 60 * args.time_budget

    log_file = open(output_dir / "log.csv", "a", newline="") if is_main_process() else None
    log_writer = None
    if log_file is not None:
        log_writer = csv.DictWriter(log_file, ["step", "epoch", "cls_loss", "cnt_loss", "reg_loss", "total_loss",
                                               "lr", "time"])
        if log_file.tell() == 0:
            log_writer.writeheader()
    if is_main_process():
        print(f"training {args.backbone} FCOS on {len(dataset)} pictures of {args.data_root}/{args.train_split} "
              f"({', '.join(classes)}), {steps_per_epoch} steps/epoch of {batch_size * args.world_size} pictures, "
              f"device {device}{f' x{num_gpus} DataParallel' if use_data_parallel else ''}"
              f"{f' x{args.world_size} DDP' if dist.is_initialized() else ''}, output {output_dir}")

    epoch = start_epoch - 1
    try:
        for next_epoch in range(start_epoch, args.epochs + 1):
            if state["step"] >= state["total_steps"] or past_deadline(deadline):
                break
            epoch, epoch_start, epoch_first_step = next_epoch, time.perf_counter(), state["step"]
            skipped_before = state["skipped_steps"]
            seed_everything(args.seed + 1000 * epoch + rank)  # exact resume: each epoch's randomness from its number
            generator.manual_seed(args.seed + epoch)
            if isinstance(sampler, DistributedSampler):
                sampler.set_epoch(epoch)
            train_one_epoch(step_model, optimizer, scaler, loader, epoch, state, args, device, log_writer, deadline)
            if (state["step"], state["skipped_steps"]) == (epoch_first_step, skipped_before):
                # time ran out before its first batch: no epoch to log or save
                epoch -= 1
                break
            if log_file is not None:
                log_file.flush()
            if is_main_process():
                last = state["history"][-1] if state["history"] else {}
                print(f"epoch {epoch}: step {state['step']}, loss {last.get('total_loss', float('nan')):.4f} "
                      f"(cls {last.get('cls_loss', float('nan')):.4f}, cnt {last.get('cnt_loss', float('nan')):.4f}, "
                      f"reg {last.get('reg_loss', float('nan')):.4f}), {time.time() - state['start_time']:.0f} s")
                if args.val_every and epoch % args.val_every == 0:
                    result = evaluate_model(model, args.data_root, args.val_split, classes, args.resize, device,
                                            batch_size=args.batch_size, workers=args.workers, progress=False)
                    print(f"epoch {epoch}: {args.val_split} mAP {result['map']:.4f}")
                    val_log = output_dir / "val_log.csv"
                    with open(val_log, "a") as f:
                        if f.tell() == 0:
                            f.write("epoch,step,map\n")
                        f.write(f"{epoch},{state['step']},{result['map']:.6f}\n")
                    if result["map"] > best_map:
                        best_map = result["map"]
                        save_checkpoint(checkpoint_state(model, optimizer, scaler, epoch, state, args, best_map), output_dir / "best.pth")
                    model.train()
                ckpt = checkpoint_state(model, optimizer, scaler, epoch, state, args, best_map)
                if args.save_every and epoch % args.save_every == 0:
                    save_checkpoint(ckpt, output_dir / f"model_{epoch}.pth")
                save_checkpoint(ckpt, output_dir / "last.pth")
                plot_losses(state["history"], output_dir / "loss.png")
            if deadline is not None and state["step"] > epoch_first_step:
                fit_schedule_to_budget(state, deadline, (time.perf_counter() - epoch_start) / (state["step"] - epoch_first_step))
    finally:
        if log_file is not None:
            log_file.close()

    summary: dict[str, Any] = {"epoch": epoch, "step": state["step"], "skipped_steps": state["skipped_steps"],
                               "train_seconds": time.time() - state["start_time"], "output_dir": str(output_dir),
                               "images_per_second": state["images_seen"] / max(state["step_seconds"], 1e-9),
                               "model": model}
    if is_main_process():
        print(f"trained {state['step']} steps in {summary['train_seconds'] / 60:.1f} min "
              f"({summary['images_per_second']:.1f} pictures/s); {state['skipped_steps']} steps skipped; "
              f"checkpoints in {output_dir}")
        if not args.no_final_eval:
            result = evaluate_model(model, args.data_root, args.val_split, classes, args.resize, device,
                                    batch_size=args.batch_size, workers=args.workers)
            print(f"{args.val_split} split of {args.data_root}:")
            print(format_results(result))
            summary["result"] = result
        if args.preset == "demo":
            import detect

            detect_args = detect.get_args_parser().parse_args(
                ["--checkpoint", str(output_dir / "last.pth"), "--input", "test_images",
                 "--output-dir", str(output_dir / "detections")])
            detect.main(detect_args)
    if dist.is_initialized():
        dist.destroy_process_group()
    return summary


if __name__ == "__main__":
    try:
        main(get_args_parser().parse_args())
    except NonFiniteLossError as err:
        sys.exit(f"train_voc.py: error: {err}")
