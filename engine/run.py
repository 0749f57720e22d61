"""A training run: how its parts are built from its :class:`TrainConfig`, and the object that holds them through
the epochs.

``train_voc.py`` reads as the recipe (data, model, optimizer, resume, schedule, loop, evaluation) by calling
the builders here; :class:`Run` holds what the loop, the checkpoints and the evaluation share.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from signal import Signals
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from cli import Stopped
from dataset import VOCDataset
from dataset.synthetic import ensure_data_set
from model import FCOSConfig, FCOSDetector

from .amp import resolve_amp
from .annotate import write_json_atomically
from .atomic import write_text_atomically
from .board import Board, drawn_pictures
from .checkpoint import remove_partial_checkpoints, save_checkpoint, training_checkpoint
from .config import TrainConfig
from .data import cache_pictures, make_train_loader, start_epoch
from .distill import Teacher, load_teacher
from .distributed import all_reduce, is_main_process, world_size
from .folder_lock import FolderInUseError, folder_lock
from .inference import evaluate
from .interrupts import StopRequests
from .memory_format import resolve_channels_last
from .metrics import format_results
from .plots import plot_losses, plot_validation
from .schedule import TimeBudget, plan_run
from .state import TrainState
from .thresholds import operating_points
from .train import NonFiniteLossError, StepLog, Trainer, make_ema


def say(text: str) -> None:
    """Print on the main process only."""
    if is_main_process():
        print(text, flush=True)


def agreed(flag: bool) -> bool:
    """``flag`` of this process, or of any process under DDP (so that all stop after the same step)."""
    if world_size() == 1:
        return flag
    return bool(all_reduce(torch.tensor([float(flag)]), "max").item())


@contextlib.contextmanager
def claimed_output_dir(path: Path) -> Iterator[Path]:
    """The output folder, made and held by the main process for the block (:func:`engine.folder_lock.folder_lock`:
    a second run into it stops at once, every process of it); once it is held, half-written checkpoints a killed
    run left there are removed."""
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"--output-dir {path} is a file, not a folder")
    with contextlib.ExitStack() as held:
        refused = None
        if is_main_process():  # the others write nothing there
            try:
                held.enter_context(folder_lock(path))
            except FolderInUseError as err:
                refused = err
        if agreed(refused is not None):  # under DDP the other processes stop too, rather than wait for it
            raise refused or FolderInUseError(f"--output-dir {path} is in use by another run")
        if is_main_process():
            for partial in remove_partial_checkpoints(path):
                say(f"removed {partial}, a checkpoint left half-written by an interrupted run")
        yield path


def prepare_synthetic(config: TrainConfig) -> None:
    """The demo's synthetic pictures in its data root, unless a data set with the run's splits is already there."""
    spec = config.synthetic
    counts = {"train": spec.train, "val": spec.val, "test": spec.test}
    splits = [s for s in (config.train_split, config.val_split) if s]
    if not ensure_data_set(config.data_root, counts, spec.seed, splits):
        say(f"using the data set already in {config.data_root}")


def load_data(
    config: TrainConfig, classes: tuple[str, ...], normalization: str
) -> tuple[VOCDataset, VOCDataset | None]:
    """The training split with its crops and augmentation (cached if asked) and the validation split, every
    file read and checked now rather than after hours of training."""
    train_set = VOCDataset(
        config.data_root,
        config.train_split,
        classes,
        train=True,
        resize_size=config.resize,
        crop_size=config.crop,
        cache=config.cache,
        augment=config.augment,
        scale_jitter=config.scale_jitter,
        background_crops=config.background_crops,
        normalization=normalization,
    )
    val_set = None
    if config.val_split:
        val_set = VOCDataset(
            config.data_root, config.val_split, classes, resize_size=config.resize, normalization=normalization
        )
        shared = set(train_set.ids) & set(val_set.ids)
        if shared:
            say(
                f"--val-split {config.val_split}: {len(shared)} of its {len(val_set)} pictures are in --train-split "
                f"{config.train_split} too, so its mAP and the operating points stored from it come from pictures "
                "the model trained on: a sanity check, not a measure"
            )
    cache_pictures(train_set, is_main_process())
    return train_set, val_set


def train_loader(
    config: TrainConfig, train_set: VOCDataset, *, batch_size: int, device: torch.device, rank: int, world_size: int
) -> DataLoader:
    """Shuffled full batches of ``batch_size`` (per process); ``ValueError`` when the split makes none."""
    loader = make_train_loader(
        train_set,
        batch_size,
        workers=config.workers,
        seed=config.seed,
        rank=rank,
        world_size=world_size,
        pin_memory=device.type == "cuda",
    )
    if len(loader) == 0:
        raise ValueError(
            f"{len(train_set) // world_size} pictures of split {config.train_split!r} per process make no "
            f"full batch of {batch_size}; lower --batch-size"
        )
    return loader


def build_model(
    config: TrainConfig, classes: tuple[str, ...], checkpoint: dict[str, Any] | None = None
) -> FCOSDetector:
    """The detector the config describes; a resumed one gets the checkpoint's settings and weights."""
    if checkpoint is not None:
        model = FCOSDetector(FCOSConfig.from_dict(checkpoint["config"]), load_pretrained=False)
        model.load_state_dict(checkpoint["model"])
        return model
    return FCOSDetector(config.detector_config(classes))


def build_trainer(
    config: TrainConfig, model: FCOSDetector, step_model: nn.Module, *, amp: str, total_batch: int
) -> Trainer:
    """SGD on the trainable parameters at the LR the linear rule gives for ``total_batch``, a gradient scaler
    for float16, the weight average (``ema``), the teacher (``distill_from``) and the guards. ``step_model``:
    the model's :class:`TrainStep`, maybe inside DataParallel or DDP."""
    lr = config.learning_rate(total_batch)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler(next(model.parameters()).device.type, enabled=amp == "fp16")
    return Trainer(
        step_model=step_model,
        optimizer=optimizer,
        scaler=scaler,
        base_lr=lr,
        warmup_steps=config.warmup_steps,
        schedule=config.schedule,
        clip_grad_norm=config.clip_grad_norm,
        max_bad_steps=config.max_bad_steps,
        ema=make_ema(model, config.ema_decay) if config.ema else None,
        teacher=teacher_of(config, model) if config.distill_from else None,
        distill_weight=config.distill_weight,
    )


def teacher_of(config: TrainConfig, model: FCOSDetector) -> Teacher:
    """The detector of checkpoint ``config.distill_from``, frozen, on ``model``'s device, in the precision and
    memory format that ``--amp`` and ``--channels-last`` choose for its own trunk (a Lite teacher of a ResNet
    runs as Lite trains)."""
    device = next(model.parameters()).device
    teacher = load_teacher(config.distill_from, model.config).to(device)
    backbone = teacher.config.backbone
    teacher.set_channels_last(resolve_channels_last(config.channels_last, device, backbone)[0])
    return Teacher(teacher, resolve_amp(config.amp, device, backbone)[0])


@dataclass(kw_only=True)
class Run:
    """One training run: what the loop, the checkpoints and the evaluation share."""

    config: TrainConfig
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
    saved_step: int | None = None  # the step last.pth holds, when this run wrote it or resumed from it
    board: Board | None = None  # TensorBoard's event files (--tensorboard), on the main process
    stop_reason: str | None = None  # why the run stopped before its schedule's end

    def __post_init__(self) -> None:
        if self.resumed and Path(self.config.resume).resolve() == (self.output_dir / "last.pth").resolve():
            self.saved_step = self.state.step

    @property
    def planned(self) -> int:
        return self.config.planned_steps(len(self.loader))

    @property
    def deployed(self) -> FCOSDetector:
        """The weights that are evaluated and deployed: the average with --ema."""
        return self.trainer.ema.module if self.trainer.ema is not None else self.model

    def plan(self) -> None:
        plan_run(
            self.state,
            planned=self.planned,
            milestones=tuple(e * len(self.loader) for e in self.config.lr_steps),
            base_lr=self.trainer.base_lr,
            warmup_steps=self.config.warmup_steps,
            budget=self.budget,
            resumed=self.resumed,
        )
        if self.out_of_patience_already:
            self.state.total_steps = self.state.step  # a run stopped early stays stopped at the same --patience
            self.stop_reason = self.stopped_early()
        if self.resumed and not self.state.finished:
            say(
                f"resuming at step {self.state.step} (epoch {self.state.epoch + 1}); the schedule ends at step "
                f"{self.state.total_steps}"
            )

    @property
    def out_of_patience_already(self) -> bool:
        return bool(self.config.patience) and self.state.stale_validations >= self.config.patience

    @property
    def unscored(self) -> bool:
        """Whether the run is to end in a final evaluation that its output folder does not hold, of its step:
        the evaluation failed or was interrupted, or a finished checkpoint was resumed into another folder."""
        if self.val_set is None or not self.config.final_eval:
            return False
        try:
            return json.loads((self.output_dir / "results.json").read_text())["steps"] != self.state.step
        except (OSError, ValueError, KeyError, TypeError):
            return True

    def nothing_left(self) -> str:
        state, config = self.state, self.config
        if self.out_of_patience_already:
            return (
                f"nothing left to do: {config.resume} stopped early at step {state.step}, {state.stale_validations} "
                f"validations without a better mAP than {state.best_map:.4f}. To go on, pass a larger --patience "
                "(0: none)"
            )
        if config.time_budget:
            return (
                f"nothing left to do: {config.resume} trained {state.step} steps in {state.train_seconds / 60:.1f} "
                f"of its --time-budget {config.time_budget:g} minutes. To train longer, pass a larger --time-budget "
                f"(total minutes, those already spent included)"
            )
        return (
            f"nothing left to do: {config.resume} finished its schedule at step {state.step} (epoch {state.epoch}). "
            f"To train longer, pass --epochs above {state.epoch} or --steps above {state.step}"
        )

    def fit(self) -> None:
        """Epochs until the schedule ends (or --epochs), each followed by :meth:`end_of_epoch`. A SIGINT or
        SIGTERM stops the run after the step in progress with ``last.pth`` written (:meth:`stop`)."""
        state, config = self.state, self.config
        resume_step = state.step if self.resumed else None
        if is_main_process():
            self.board = Board(self.output_dir, resume_step) if config.tensorboard else None
            log = StepLog(self.output_dir / "log.csv", resume_step, board=self.board, losses=self.trainer.loss_names)
        else:
            log = None
        state.history = list(log.rows) if log else []
        with log or contextlib.nullcontext(), StopRequests() as requests:
            while not state.finished and state.epoch < config.epoch_limit:
                before = (state.step, state.skipped_steps)
                start_epoch(self.loader, config.seed, state.epoch + 1, self.rank)
                try:
                    self.trainer.train_one_epoch(
                        self.loader,
                        state,
                        epoch=state.epoch + 1,
                        device=self.device,
                        budget=self.budget,
                        log=log,
                        max_steps=self.planned,
                        stop=lambda: agreed(requests.signal is not None),
                    )
                except NonFiniteLossError as err:
                    raise NonFiniteLossError(f"{err} {self.kept()}") from None
                except RuntimeError as err:
                    # the signal ended the DataLoader workers too: the batch awaited is lost, the state is whole
                    if requests.signal is None or "DataLoader worker" not in str(err):
                        raise
                if agreed(requests.signal is not None):
                    self.stop(requests.signal, log)
                if (state.step, state.skipped_steps) == before:
                    break  # out of time before the epoch's first step: nothing to log or save
                state.epoch += 1
                state.batches_done = 0
                self.end_of_epoch(log)
                state.train_seconds = self.budget.spent()
                if self.out_of_patience():
                    break
        say(
            f"trained {state.step} steps ({state.epoch} epochs) in {state.train_seconds / 60:.1f} min, "
            f"{state.images_per_second:.1f} pictures/s; {state.skipped_steps} steps skipped; "
            f"checkpoints in {self.output_dir}" + (f"; {self.stop_reason}" if self.stop_reason else "")
        )

    def stopped_early(self) -> str:
        return (
            f"stopped early: {self.config.patience} validations without a better mAP than {self.state.best_map:.4f} "
            "(best.pth)"
        )

    def out_of_patience(self) -> bool:
        """Whether --patience validations in a row found no better mAP; then the schedule ends here (last.pth,
        written again, reads finished) and :attr:`stop_reason` says so."""
        state, patience = self.state, self.config.patience
        if not (patience and agreed(state.stale_validations >= patience)):
            return False
        state.total_steps = state.step
        self.stop_reason = self.stopped_early()
        if is_main_process():
            self.save("last.pth")
        return True

    def stop(self, signal: Signals | None, log: StepLog | None) -> None:
        """Write ``last.pth`` as the run stands after the step in progress (the epoch's batches used so far
        counted, so ``--resume`` continues exactly), then raise :class:`cli.Stopped` saying how to go on."""
        state = self.state
        state.train_seconds = self.budget.spent()
        name = signal.name if signal is not None else "a signal to another process"
        if is_main_process():
            log.flush()
            self.save("last.pth")
        raise Stopped(
            f"stopped by {name} at step {state.step} (epoch {state.epoch + 1}, batch {state.batches_done} of "
            f"{len(self.loader)}); {self.output_dir / 'last.pth'} holds it: to go on, run the same command with "
            f"--resume {self.output_dir / 'last.pth'}",
            status=128 + (signal or 15),
        )

    def kept(self) -> str:
        """What is on disk for the run to go back to: only what was checked finite is ever written."""
        last = self.output_dir / "last.pth"
        if self.saved_step is None:
            return "No checkpoint was written."
        return f"{last} holds step {self.saved_step}, written before the non-finite losses."

    def end_of_epoch(self, log: StepLog | None) -> None:
        """Report, validate every --val-every epochs (best.pth), write checkpoints and the loss curve."""
        if not is_main_process():
            return
        state, config = self.state, self.config
        log.flush()
        last = state.history[-1] if state.history else {}
        print(
            f"epoch {state.epoch}: step {state.step}/{state.total_steps}, loss {last.get('total_loss', math.nan):.4f} "
            f"(cls {last.get('cls_loss', math.nan):.4f}, cnt {last.get('cnt_loss', math.nan):.4f}, "
            f"reg {last.get('reg_loss', math.nan):.4f}"
            + (f", distill {last['distill_loss']:.4f}" if "distill_loss" in last else "")
            + f"), {state.train_seconds / 60:.1f} min, "
            f"about {state.minutes_left:.1f} min left",
            flush=True,
        )
        if config.val_every and self.val_set is not None and state.epoch % config.val_every == 0:
            self.validate()
        periodic = config.save_every and state.epoch % config.save_every == 0
        self.save("last.pth", *([f"model_{state.epoch}.pth"] if periodic else []))
        plot_losses(state.history, self.output_dir / "loss.png")

    def evaluate(self, progress: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """VOC AP of the deployed weights on --val-split, and their detections."""
        return evaluate(
            self.deployed,
            self.val_set,
            device=self.device,
            batch_size=self.config.batch_size,
            workers=self.config.workers,
            amp=self.amp,
            flip=self.config.tta,
            progress=progress,
        )

    def validate(self) -> None:
        """Score --val-split, append it to ``val_log.csv`` (mAP and each class's AP), draw ``val.png``, keep the best
        weights in ``best.pth`` and count the validations without a better mAP (--patience)."""
        state = self.state
        result, detections = self.evaluate(progress=False)
        print(f"epoch {state.epoch}: {self.config.val_split} mAP {result['map']:.4f}", flush=True)
        path = self.output_dir / "val_log.csv"
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, ["epoch", "step", "map", *result["ap"]])
            if f.tell() == 0:
                writer.writeheader()
            writer.writerow({"epoch": state.epoch, "step": state.step, "map": result["map"], **result["ap"]})
        with open(path, newline="") as f:
            plot_validation(
                [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)], self.output_dir / "val.png"
            )
        if self.board is not None:
            self.board.validation(state.step, result, drawn_pictures(self.val_set, detections))
        if result["map"] > state.best_map:
            state.best_map, state.stale_validations = result["map"], 0
            self.save("best.pth")
        else:
            state.stale_validations += 1

    def save(self, *names: str, thresholds: dict[str, Any] | None = None) -> None:
        """The run as it stands, written atomically to each of ``names`` in the output folder."""
        checkpoint = training_checkpoint(
            self.model, trainer=self.trainer, state=self.state, config=self.config, thresholds=thresholds
        )
        for name in names:
            save_checkpoint(checkpoint, self.output_dir / name)
        if "last.pth" in names:
            self.saved_step = self.state.step

    def finish(self) -> dict[str, Any]:
        """The final checkpoint, holding the state the run ended in; with a --val-split (and no
        --no-final-eval) scored first, its operating points stored in it (for ``detect.py --score-threshold
        auto``), ``results.json`` and the split's ``detections.json`` (``eval_voc.py --detections`` scores it)
        written. Main process only."""
        if not is_main_process():
            return {}
        config = self.config
        if self.val_set is None or not config.final_eval:
            self.save("last.pth")
            return {}
        result, detections = self.evaluate()
        print(f"{config.val_split} split of {config.data_root}:\n{format_results(result)}")
        thresholds = operating_points(result)
        self.save("last.pth", thresholds=thresholds)
        write_json_atomically(detections, self.output_dir / "detections.json")
        self.write_results(result)
        return {"result": result, "thresholds": thresholds}

    def write_results(self, result: dict[str, Any]) -> None:
        """The run in one JSON: the evaluation's mAP and per-class AP, steps, minutes and speed."""
        state = self.state
        summary = {
            "split": self.config.val_split,
            "map": result["map"],
            "ap": result["ap"],
            "steps": state.step,
            "epochs": state.epoch,
            "train_minutes": state.train_seconds / 60,
            "images_per_second": state.images_per_second,
            "seconds_per_step": state.step_seconds / max(state.step, 1),
            "tta": self.config.tta,
            "stopped": self.stop_reason or "at the end of its schedule",
            "train_config": self.config.to_dict(),
        }
        write_text_atomically(json.dumps(summary, indent=2), self.output_dir / "results.json")
