"""The learning-rate schedule (warmup, then manual x0.1 steps or cosine) and the time budget that sizes it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from .distributed import all_reduce, world_size
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


def plan_run(
    state: TrainState,
    *,
    planned: int,
    milestones: tuple[int, ...],
    base_lr: float,
    warmup_steps: int,
    budget: TimeBudget,
    resumed: bool,
) -> None:
    """Size the schedule at the start of a run: ``planned`` steps (from --steps or --epochs), fitted to the budget.

    A new run, or any run without a time budget, is laid out from the flags alone, so a resumed run continues
    exactly and a larger --epochs or --steps extends it (as if planned so from the start). The budget of a new
    run refits it once the run knows its speed (:meth:`TimeBudget.after_step`). A resumed run with a budget is
    fitted at once to the steps that fit in the minutes left, at its past speed: an unfinished one goes on along
    its own cosine; a finished one goes on only when given more minutes than it was sized to, laid out anew up to
    the steps that fit. Either way a budget spent, or with less left than one step takes, leaves it finished.
    """
    if budget.minutes is None or not resumed:
        plan_schedule(state, planned, milestones, base_lr, warmup_steps)
    else:
        end = min(planned, state.step + budget.steps_that_fit(state.train_seconds / max(state.step, 1)))
        if not state.finished:
            resize_schedule(state, end, warmup_steps)
        elif budget.minutes > state.budget_minutes and end > state.step:
            plan_schedule(state, end, milestones, base_lr, warmup_steps)
    state.budget_minutes = budget.minutes or 0.0


class TimeBudget:
    """The clock of a training run, and the minutes that size its schedule (``minutes`` None: no limit).

    Time spent before a resume counts (``spent_seconds``). The speed, the one figure every refit and the stop
    use (:meth:`seconds_per_step`), is the clock's seconds per step from this run's 5th step on (start-up
    excluded; checkpoints and validation included, since they take from the budget too). :meth:`after_step`
    refits the schedule every 25 steps from the 25th on; ``steps_that_fit`` keeps 2% of the time left for the
    last checkpoint. Under DDP every process agrees on the smallest count, and the schedule (not each
    process's clock) stops them all at the same step.
    """

    START_UP_STEPS = 5
    REFIT_EVERY = 25

    def __init__(
        self, minutes: float | None = None, spent_seconds: float = 0.0, clock: Callable[[], float] = time.monotonic
    ):
        self.minutes, self.clock = minutes, clock
        self.started, self.spent_before = clock(), spent_seconds
        self.steps_timed, self.mark = 0, 0.0

    def spent(self) -> float:
        """Seconds of training in all, those before a resume included."""
        return self.spent_before + self.clock() - self.started

    def remaining(self) -> float:
        return math.inf if self.minutes is None else 60.0 * self.minutes - self.spent()

    def seconds_per_step(self) -> float:
        """The run's speed: since its 5th step, or until then since its start (start-up included, so rather
        slow than fast); 0 before its first step."""
        if self.steps_timed > self.START_UP_STEPS:
            return (self.clock() - self.mark) / (self.steps_timed - self.START_UP_STEPS)
        return (self.clock() - self.started) / self.steps_timed if self.steps_timed else 0.0

    def out_of_time(self) -> bool:
        """Whether less is left than one step takes (anything at all before the speed is known). Never under
        DDP, where the schedule stops every process at the same step."""
        return world_size() == 1 and self.minutes is not None and self.remaining() <= self.seconds_per_step()

    def steps_that_fit(self, seconds_per_step: float) -> int:
        """Steps still affordable at ``seconds_per_step`` (the fewest over processes under DDP)."""
        fits = torch.tensor(max(0, int(0.98 * self.remaining() / max(seconds_per_step, 1e-9))))
        return int(all_reduce(fits, "min"))

    def after_step(self) -> int | None:
        """Called after every applied step: the steps that still fit, every 25 steps of this run from the 25th
        on (at the speed since its 5th step); None otherwise, and always without a budget."""
        self.steps_timed += 1
        if self.steps_timed == self.START_UP_STEPS:
            self.mark = self.clock()
        if self.minutes is None or self.steps_timed < self.REFIT_EVERY or self.steps_timed % self.REFIT_EVERY:
            return None
        return self.steps_that_fit(self.seconds_per_step())
