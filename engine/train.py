"""Training: the step (DataParallel- and DDP-ready), the epoch, weight averaging and the step log."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from model import FCOSDetector
from model.distill import normalise_distillation
from model.loss import LOSS_NAMES, normalise_losses

from .amp import autocast
from .board import Board
from .distributed import all_reduce, is_main_process, world_size
from .schedule import TimeBudget, learning_rate, resize_schedule
from .state import TrainState

if TYPE_CHECKING:  # engine/distill.py reads checkpoints, which import this module
    from .distill import Teacher


class NonFiniteLossError(ValueError):
    """Too many non-finite losses in a row."""


class TrainStep(nn.Module):
    """Loss sums with tensor-only inputs, so that DataParallel can scatter the batch.

    ``forward(images [B,3,H,W], boxes [B,M,4], labels [B,M])`` (labels 0 = padding) -> ``cls_loss``,
    ``cnt_loss``, ``reg_loss`` (sums), ``num_positive`` and ``reg_weight``, each ``[1]`` float32; DataParallel
    gathers them to ``[replicas]`` and :func:`reduce_losses` normalises by the positives (and the GIoU
    losses' weights) of the whole batch. With a teacher's outputs on the batch (``[B,N,C]``, ``[B,N,4]``,
    ``[B,N]``, scattered with it) the distillation sums too (:func:`model.distill.distillation_loss_sums`).
    It enters autocast itself: DataParallel runs each replica in a thread of its own, and autocast
    state does not cross threads (``parallel_apply`` re-enters it without the dtype, which falls back
    to float16 on CUDA).
    """

    def __init__(self, model: FCOSDetector, amp: str = "off"):
        super().__init__()
        self.module, self.amp = model, amp

    def forward(self, images: Tensor, boxes: Tensor, labels: Tensor, *teacher_outputs: Tensor) -> dict[str, Tensor]:
        targets = [{"boxes": box[label > 0], "labels": label[label > 0]} for box, label in zip(boxes, labels)]
        with autocast(images.device, self.amp):
            sums = self.module.loss_sums(images, targets, tuple(teacher_outputs) or None)
        return {k: v.float().reshape(1) for k, v in sums.items()}


def reduce_losses(sums: dict[str, Tensor], distill_weight: float = 1.0) -> dict[str, Tensor]:
    """The losses of :class:`TrainStep` (``[replicas]`` each) normalised by the positives (the GIoU loss by
    its weights) of the whole batch; with distillation sums, ``distill_loss`` too, added to ``total_loss``
    times ``distill_weight``.

    Under DDP each process divides its own sums by the mean count over processes, so that DDP's
    gradient averaging gives the sum over all processes divided by all positives (as the official
    FCOS does).
    """
    names = [name for name in ("num_positive", "reg_weight", "teacher_score") if name in sums]
    reduced = all_reduce(torch.stack([sums[name].detach().sum() for name in names])) / world_size()  # one collective
    counts = dict(zip(names, reduced))
    losses = normalise_losses({k: sums[k].sum() for k in LOSS_NAMES}, counts["num_positive"], counts["reg_weight"])
    if "teacher_score" in sums:
        summed = {k: v.sum() for k, v in sums.items()}
        losses["distill_loss"] = normalise_distillation(summed, counts["num_positive"], counts["teacher_score"])
        losses["total_loss"] = losses["total_loss"] + distill_weight * losses["distill_loss"]
    return losses


def pad_targets(targets: list[dict[str, Tensor]]) -> tuple[Tensor, Tensor]:
    """List of ``{"boxes" [M_i,4], "labels" [M_i]}`` -> ``boxes [B,M,4]``, ``labels [B,M]`` (0-padded)."""
    m = max(1, max(len(t["labels"]) for t in targets))
    boxes = torch.zeros(len(targets), m, 4)
    labels = torch.zeros(len(targets), m, dtype=torch.int64)
    for i, t in enumerate(targets):
        boxes[i, : len(t["labels"])] = t["boxes"]
        labels[i, : len(t["labels"])] = t["labels"]
    return boxes, labels


def make_ema(model: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of ``model``'s weights and buffers (torch's AveragedModel).

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after n updates, so early weights, which
    are far from the final ones, fade out quickly.
    """

    def ema_update(averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        if not averaged[0].is_floating_point():  # BatchNorm's num_batches_tracked
            torch._foreach_copy_(averaged, current)
            return
        n = float(num_averaged)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1.0 + n) / (10.0 + n)))

    return AveragedModel(model, multi_avg_fn=ema_update, use_buffers=True)


@dataclass(kw_only=True)
class Trainer:
    """What an optimizer step needs: the wrapped model, optimizer, scaler, LR schedule and guards."""

    step_model: nn.Module  # TrainStep, maybe inside DataParallel or DistributedDataParallel
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    base_lr: float
    warmup_steps: int
    schedule: str  # "step" or "cosine"
    clip_grad_norm: float | None = None
    max_bad_steps: int = 5
    ema: AveragedModel | None = None
    teacher: Teacher | None = None  # --distill-from
    distill_weight: float = 1.0

    @property
    def loss_names(self) -> tuple[str, ...]:
        """The losses a step reports, ``total_loss`` last."""
        return (*LOSS_NAMES, *(("distill_loss",) if self.teacher is not None else ()), "total_loss")

    def step(self, images: Tensor, boxes: Tensor, labels: Tensor) -> tuple[dict[str, float], bool]:
        """One optimizer step. Returns the losses (floats, averaged over processes) and whether the step
        was applied: a non-finite loss on any process skips it everywhere, leaving weights, BatchNorm
        statistics and optimizer untouched."""
        buffers = list(self.step_model.buffers())
        saved = [b.clone() for b in buffers]  # the forward pass updates BatchNorm running statistics
        teacher_outputs = self.teacher(images) if self.teacher is not None else ()
        losses = reduce_losses(self.step_model(images, boxes, labels, *teacher_outputs), self.distill_weight)
        values = torch.stack([losses[k].detach() for k in self.loss_names])
        report = all_reduce(torch.cat([values, torch.isfinite(values[-1:]).float()]).cpu()) / world_size()
        self.optimizer.zero_grad(set_to_none=True)
        floats = dict(zip(self.loss_names, report[:-1].tolist()))
        if report[-1] < 1:
            with torch.no_grad():
                torch._foreach_copy_(buffers, saved)
            return floats, False
        self.scaler.scale(losses["total_loss"]).backward()
        if self.clip_grad_norm:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.step_model.parameters(), self.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.step_model)
        return floats, True

    def set_lr(self, state: TrainState) -> float:
        lr = learning_rate(state.step, state, self.base_lr, self.warmup_steps, self.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def train_one_epoch(
        self,
        batches: Iterable,
        state: TrainState,
        *,
        epoch: int,
        device: torch.device,
        budget: TimeBudget | None = None,
        log: StepLog | None = None,
        max_steps: int | None = None,
        desc: str = "",
        stop: Callable[[], bool] = lambda: False,
    ) -> None:
        """Run the batches of epoch ``epoch`` until the schedule ends, the time budget runs out or ``stop()``
        says so after a step. The first ``state.batches_done`` batches, used before a stop, are drawn again (so
        that the rest comes out as it would have) and passed over.

        ``budget`` is the run's clock (``state.train_seconds`` follows it) and, with minutes, refits the
        schedule every 25 steps (:meth:`TimeBudget.after_step`), capped at ``max_steps``. Running out of time
        ends the schedule at the step reached, so that the state saved afterwards reads finished.
        """
        budget = budget or TimeBudget()
        self.step_model.train()
        progress = tqdm(
            batches,
            desc=desc or f"epoch {epoch}",
            unit="batch",
            disable=not is_main_process(),
            dynamic_ncols=True,
            leave=False,
        )
        tic = budget.clock()
        used_before = state.batches_done
        for index, (images, targets) in enumerate(progress):
            if index < used_before:
                tic = budget.clock()
                continue
            if budget.out_of_time():
                state.total_steps = state.step
            if state.finished:
                break
            lr = self.set_lr(state)
            boxes, labels = pad_targets(targets)
            losses, applied = self.step(images.to(device, non_blocking=True), boxes.to(device), labels.to(device))
            state.batches_done += 1
            toc = budget.clock()
            state.train_seconds = budget.spent()
            if not applied:
                self._skipped(state, losses)
                tic = toc
                if stop():
                    break
                continue
            state.bad_steps = 0
            state.step += 1
            state.images_seen += images.shape[0] * world_size()
            state.step_seconds += toc - tic
            tic = toc
            if (fits := budget.after_step()) is not None:
                resize_schedule(state, min(state.step + fits, max_steps or state.step + fits), self.warmup_steps)
                if budget.steps_timed == budget.REFIT_EVERY and is_main_process():
                    tqdm.write(f"time budget: {state.total_steps} steps fit in {budget.minutes:g} min")
            row = {
                "step": state.step,
                "epoch": epoch,
                **{k: round(v, 6) for k, v in losses.items()},
                "lr": lr,
                "time": round(state.train_seconds, 3),
                "images_per_second": state.images_per_second,
            }
            state.history.append(row)
            if log is not None:
                log.write(row)
            progress.set_postfix(
                loss=f"{losses['total_loss']:.3f}",
                lr=f"{lr:.2e}",
                img_s=f"{state.images_per_second:.1f}",
                step=f"{state.step}/{state.total_steps}",
                left=f"{state.minutes_left:.1f}min",
            )
            if stop():
                break
        progress.close()

    def _skipped(self, state: TrainState, losses: dict[str, float]) -> None:
        state.bad_steps += 1
        state.skipped_steps += 1
        if is_main_process():  # every process skips the same steps
            tqdm.write(
                f"step {state.step}: non-finite loss {losses}, step skipped "
                f"({state.bad_steps} in a row, {state.skipped_steps} in all)"
            )
        if state.bad_steps >= self.max_bad_steps:
            raise NonFiniteLossError(
                f"{state.bad_steps} non-finite losses in a row at step {state.step}; stopping (lower --lr, add "
                "--clip-grad-norm, or check the data)."
            )


class StepLog:
    """``log.csv``: one row a step (and, with a :class:`Board`, the same to TensorBoard). Resuming keeps the rows
    up to the resumed step and drops any a crash left after it; a new run starts the file anew. ``losses``: the
    loss columns (:attr:`Trainer.loss_names`)."""

    def __init__(
        self,
        path: str | Path,
        resume_step: int | None = None,
        board: Board | None = None,
        losses: tuple[str, ...] = (*LOSS_NAMES, "total_loss"),
    ):
        self.path, self.board = Path(path), board
        self.fields = ("step", "epoch", *losses, "lr", "time")
        self.rows: list[dict[str, Any]] = []
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="") as f:
                for row in csv.DictReader(f):
                    if row.get("step", "").isdigit() and int(row["step"]) <= resume_step:
                        self.rows.append(
                            {
                                k: float(v) if k not in ("step", "epoch") else int(v)
                                for k, v in row.items()
                                if k in self.fields and v  # a column the run before did not have is empty
                            }
                        )
        self.file = open(self.path, "w", newline="")
        self.writer = csv.DictWriter(self.file, self.fields, extrasaction="ignore")
        self.writer.writeheader()
        self.writer.writerows(self.rows)

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow(row)
        if self.board is not None:
            self.board.write(row)

    def flush(self) -> None:
        self.file.flush()
        if self.board is not None:
            self.board.flush()

    def close(self) -> None:
        self.file.close()
        if self.board is not None:
            self.board.close()

    def __enter__(self) -> StepLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
