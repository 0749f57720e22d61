"""A training run: how its parts are built from the flags, and the object that holds them through the epochs.

``train_voc.py`` reads as the recipe (data, model, optimizer, resume, schedule, loop, evaluation) by calling
the builders here; :class:`Run` holds what the loop, the checkpoints and the evaluation share.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from dataset.synthetic import ensure_data_set
from dataset.transforms import check_augment
from dataset.voc import VOCDataset
from model import FCOSConfig, FCOSDetector

from .checkpoint import plain_args, remove_partial_checkpoints, save_checkpoint, training_checkpoint
from .data import cache_pictures, make_train_loader, start_epoch
from .distributed import is_main_process
from .inference import evaluate
from .metrics import format_results
from .plots import plot_losses
from .schedule import TimeBudget, plan_run
from .state import TrainState
from .thresholds import operating_points
from .train import StepLog, Trainer, make_ema


def say(text: str) -> None:
    """Print on the main process only."""
    if is_main_process():
        print(text, flush=True)


def prepare_output_dir(path: Path) -> Path:
    """The output folder, made; half-written checkpoints a killed run left there are removed."""
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"--output-dir {path} is a file, not a folder")
    path.mkdir(parents=True, exist_ok=True)
    for partial in remove_partial_checkpoints(path):
        say(f"removed {partial}, a checkpoint left half-written by an interrupted run")
    return path


def prepare_synthetic(args: argparse.Namespace) -> None:
    """The demo's synthetic pictures in --data-root, unless a data set with the run's splits is already there."""
    spec = args.synthetic
    counts = {k: spec[k] for k in ("train", "val", "test")}
    splits = [s for s in (args.train_split, args.val_split) if s]
    if not ensure_data_set(args.data_root, counts, spec["seed"], splits):
        say(f"using the data set already in {args.data_root}")


def load_data(
    args: argparse.Namespace, classes: tuple[str, ...], normalization: str
) -> tuple[VOCDataset, VOCDataset | None]:
    """The training split with its crops and augmentation (cached if asked) and the validation split, every
    file read and checked now rather than after hours of training."""
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
    val_set = None
    if args.val_split:
        val_set = VOCDataset(
            args.data_root, args.val_split, classes, resize_size=args.resize, normalization=normalization
        )
    cache_pictures(train_set, is_main_process())
    return train_set, val_set


def train_loader(
    args: argparse.Namespace, train_set: VOCDataset, batch_size: int, device: torch.device, rank: int, world_size: int
) -> DataLoader:
    """Shuffled full batches of ``batch_size`` (per process); ``ValueError`` when the split makes none."""
    loader = make_train_loader(train_set, batch_size, args.workers, args.seed, rank, world_size, device.type == "cuda")
    if len(loader) == 0:
        raise ValueError(
            f"{len(train_set) // world_size} pictures of split {args.train_split!r} per process make no "
            f"full batch of {batch_size}; lower --batch-size"
        )
    return loader


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
    )
    return FCOSDetector(config)


def build_trainer(
    args: argparse.Namespace, model: FCOSDetector, step_model: nn.Module, amp: str, total_batch: int
) -> Trainer:
    """SGD on the trainable parameters at the LR the linear rule gives for ``total_batch``, a gradient scaler
    for float16, the weight average (``--ema``) and the guards. ``step_model``: the model's
    :class:`TrainStep`, maybe inside DataParallel or DDP."""
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
        make_ema(model, args.ema_decay) if args.ema else None,
    )


@dataclass
class Run:
    """One training run: what the loop, the checkpoints and the evaluation share."""

    args: argparse.Namespace
    model: FCOSDetector
    trainer: Trainer
    state: TrainState
    loader: DataLoader
    val_set: VOCDataset | None
    device: torch.device
    amp: str
    output_dir: Path
    budget: TimeBudget
    resumed: bool = False
    rank: int = 0

    @property
    def planned(self) -> int:
        """The steps --steps or --epochs ask for; a time budget may end the run sooner."""
        return self.args.steps or self.args.epochs * len(self.loader)

    @property
    def deployed(self) -> FCOSDetector:
        """The weights that are evaluated and deployed: the average with --ema."""
        return self.trainer.ema.module if self.trainer.ema is not None else self.model

    def plan(self) -> None:
        milestones = tuple(e * len(self.loader) for e in self.args.lr_steps)
        plan_run(
            self.state,
            self.planned,
            milestones,
            self.trainer.base_lr,
            self.args.warmup_steps,
            self.budget,
            self.resumed,
        )
        if self.resumed and not self.state.finished:
            say(
                f"resuming at step {self.state.step} (epoch {self.state.epoch}); the schedule ends at step "
                f"{self.state.total_steps}"
            )

    def nothing_left(self) -> str:
        state, args = self.state, self.args
        if args.time_budget:
            return (
                f"nothing left to do: {args.resume} trained {state.step} steps in {state.train_seconds / 60:.1f} "
                f"of its --time-budget {args.time_budget:g} minutes. To train longer, pass a larger --time-budget "
                f"(total minutes, those already spent included)"
            )
        return (
            f"nothing left to do: {args.resume} finished its schedule at step {state.step} (epoch {state.epoch}). "
            f"To train longer, pass --epochs above {state.epoch} or --steps above {state.step}"
        )

    def fit(self) -> None:
        """Epochs until the schedule ends (or --epochs), each followed by :meth:`end_of_epoch`."""
        state, args = self.state, self.args
        log = StepLog(self.output_dir / "log.csv", state.step if self.resumed else None) if is_main_process() else None
        state.history = list(log.rows) if log else []
        with log or contextlib.nullcontext():
            while not state.finished and state.epoch < (math.inf if args.steps else args.epochs):
                before = (state.step, state.skipped_steps)
                start_epoch(self.loader, args.seed, state.epoch + 1, self.rank)
                self.trainer.train_one_epoch(
                    self.loader, state, state.epoch + 1, self.device, self.budget, log, self.planned
                )
                if (state.step, state.skipped_steps) == before:
                    break  # out of time before the epoch's first step: nothing to log or save
                state.epoch += 1
                self.end_of_epoch(log)
                state.train_seconds = self.budget.spent()
        say(
            f"trained {state.step} steps ({state.epoch} epochs) in {state.train_seconds / 60:.1f} min, "
            f"{state.images_per_second:.1f} pictures/s; {state.skipped_steps} steps skipped; "
            f"checkpoints in {self.output_dir}"
        )

    def end_of_epoch(self, log: StepLog | None) -> None:
        """Report, validate every --val-every epochs (best.pth), write checkpoints and the loss curve."""
        if not is_main_process():
            return
        state, args = self.state, self.args
        log.flush()
        last = state.history[-1] if state.history else {}
        print(
            f"epoch {state.epoch}: step {state.step}/{state.total_steps}, loss {last.get('total_loss', math.nan):.4f} "
            f"(cls {last.get('cls_loss', math.nan):.4f}, cnt {last.get('cnt_loss', math.nan):.4f}, "
            f"reg {last.get('reg_loss', math.nan):.4f}), {state.train_seconds / 60:.1f} min, "
            f"about {state.minutes_left:.1f} min left",
            flush=True,
        )
        if args.val_every and self.val_set is not None and state.epoch % args.val_every == 0:
            self.validate()
        periodic = args.save_every and state.epoch % args.save_every == 0
        self.save("last.pth", *([f"model_{state.epoch}.pth"] if periodic else []))
        plot_losses(state.history, self.output_dir / "loss.png")

    def evaluate(self, progress: bool = True) -> dict[str, Any]:
        """VOC AP of the deployed weights on --val-split."""
        args = self.args
        result, _ = evaluate(
            self.deployed,
            self.val_set,
            self.device,
            args.batch_size,
            args.workers,
            self.amp,
            args.tta,
            progress=progress,
        )
        return result

    def validate(self) -> None:
        """Score --val-split, append it to ``val_log.csv`` and keep the best weights in ``best.pth``."""
        state = self.state
        result = self.evaluate(progress=False)
        print(f"epoch {state.epoch}: {self.args.val_split} mAP {result['map']:.4f}", flush=True)
        with open(self.output_dir / "val_log.csv", "a") as f:
            if f.tell() == 0:
                f.write("epoch,step,map\n")
            f.write(f"{state.epoch},{state.step},{result['map']:.6f}\n")
        if result["map"] > state.best_map:
            state.best_map = result["map"]
            self.save("best.pth")

    def save(self, *names: str, thresholds: dict[str, Any] | None = None) -> None:
        """The run as it stands, written atomically to each of ``names`` in the output folder."""
        checkpoint = training_checkpoint(self.model, self.trainer, self.state, self.args, thresholds)
        for name in names:
            save_checkpoint(checkpoint, self.output_dir / name)

    def finish(self) -> dict[str, Any]:
        """The final checkpoint, holding the state the run ended in; with a --val-split (and no
        --no-final-eval) scored first, its operating points stored in it (for ``detect.py --score-threshold
        auto``) and ``results.json`` written. Main process only."""
        if not is_main_process():
            return {}
        args = self.args
        if self.val_set is None or args.no_final_eval:
            self.save("last.pth")
            return {}
        result = self.evaluate()
        print(f"{args.val_split} split of {args.data_root}:\n{format_results(result)}")
        thresholds = operating_points(result)
        self.save("last.pth", thresholds=thresholds)
        self.write_results(result)
        return {"result": result, "thresholds": thresholds}

    def write_results(self, result: dict[str, Any]) -> None:
        """The run in one JSON: the evaluation's mAP and per-class AP, steps, minutes and speed."""
        state = self.state
        summary = {
            "split": self.args.val_split,
            "map": result["map"],
            "ap": result["ap"],
            "steps": state.step,
            "epochs": state.epoch,
            "train_minutes": state.train_seconds / 60,
            "images_per_second": state.images_per_second,
            "seconds_per_step": state.step_seconds / max(state.step, 1),
            "tta": self.args.tta,
            "args": plain_args(self.args),
        }
        (self.output_dir / "results.json").write_text(json.dumps(summary, indent=2))
