"""The learning-rate schedule (warmup, then manual x0.1 steps or cosine) and the time budget that sizes it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from .distributed import all_reduce
from .state import TrainState


def learning_rate(step: int, state: TrainState, base_lr: float, warmup_steps: int, schedule: str) -> float:
    """LR for optimizer step ``step`` (0-based): linear warmup from base_lr / warmup_steps, then x0.1 at
    each of ``state.milestones`` (``"step"``, the original's manual steps) or a cosine decay
    ``state.anchor_lr * (1 + cos(pi * phase)) / 2`` (``"cosine"``), its phase going linearly from
    ``state.anchor_phase`` at ``state.anchor_step`` to 1 at ``state.total_steps``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "cosine":
        return state.anchor_lr * 0.5 * (1.0 + math.cos(math.pi * cosine_phase(step, state)))
    return base_lr * 0.1 ** sum(step >= m for m in state.milestones)


def cosine_phase(step: int, state: TrainState) -> float:
    """How far along its half period the cosine is at ``step``: 0 at the peak, 1 at the end (LR 0)."""
    span = max(1, state.total_steps - state.anchor_step)
    progress = min(1.0, max(0.0, (step - state.anchor_step) / span))
    return state.anchor_phase + (1.0 - state.anchor_phase) * progress


def plan_schedule(
    state: TrainState, total_steps: int, milestones: tuple[int, ...], base_lr: float, warmup_steps: int
) -> None:
    """Lay the schedule out from the start: cosine from base_lr at the end of warmup, milestones as given."""
    state.total_steps, state.milestones = total_steps, tuple(milestones)
    state.anchor_step, state.anchor_lr, state.anchor_phase = warmup_steps, base_lr, 0.0


def resize_schedule(state: TrainState, total_steps: int, warmup_steps: int) -> None:
    """Make the schedule end at ``total_steps`` from where it stands, never raising the LR.

    Milestones already passed stay where they are; those ahead keep their place in the rest of the run
    (scaled with the remaining steps). A cosine keeps the phase it has reached and spreads the rest of
    its half period over the steps left, so the LR stays continuous, falls monotonically to 0 at the new
    end, and is the planned cosine exactly when the new end is the old one. (Restarting the decay from
    the current LR instead would start a fresh, flat cosine at every refit and hold the LR near its peak.)
    """
    now = state.step
    ahead_before, ahead_after = max(1, state.total_steps - now), max(0, total_steps - now)
    state.milestones = tuple(
        m if m <= now else now + round((m - now) * ahead_after / ahead_before) for m in state.milestones
    )
    if now >= warmup_steps:
        state.anchor_step, state.anchor_phase = now, cosine_phase(now, state)
    state.total_steps = total_steps


class TimeBudget:
    """Minutes of training that size the schedule, counting time already spent before a resume.

    ``steps_that_fit(seconds_per_step)`` is the number of steps still affordable (98% of the time left, so
    the last epoch's saving fits). Under DDP every process agrees on the smallest count, and the schedule
    (not the clock) stops them all at the same step.
    """

    def __init__(self, minutes: float, spent_seconds: float = 0.0, clock: Callable[[], float] = time.monotonic):
        self.minutes, self.clock = minutes, clock
        self.deadline = clock() + 60.0 * minutes - spent_seconds
        self.steps_timed, self.mark = 0, 0.0

    def calibrate(self) -> int | None:
        """Called after every step: once, at this run's 25th step, the steps that fit at the speed of steps
        5 to 25 (start-up excluded); None otherwise."""
        self.steps_timed += 1
        if self.steps_timed == 5:
            self.mark = self.clock()
        elif self.steps_timed == 25:
            return self.steps_that_fit((self.clock() - self.mark) / 20)
        return None

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def steps_that_fit(self, seconds_per_step: float) -> int:
        fits = torch.tensor(max(0, int(0.98 * self.remaining() / max(seconds_per_step, 1e-9))))
        return int(all_reduce(fits, "min"))
