"""TrainState: where a training run stands, saved in every checkpoint so that ``--resume`` continues exactly."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class TrainState:
    """Counters and the schedule's shape; plain numbers, so ``torch.load(weights_only=True)`` reads them.

    ``total_steps`` is where the schedule ends; ``milestones`` the steps where a ``step`` schedule drops
    the LR x0.1; a ``cosine`` schedule ``anchor_lr * (1 + cos(pi * phase)) / 2`` moves its phase from
    ``anchor_phase`` at ``anchor_step`` to 1 at ``total_steps`` (phase 0 at the end of warmup at first;
    where the phase stood when a time budget re-sized the schedule later, so the cosine goes on where it
    was). Checkpoints written before ``anchor_phase`` existed read it as 0, which is what their
    ``anchor_lr`` meant then.
    """

    step: int = 0  # optimizer steps applied
    epoch: int = 0  # epochs completed
    batches_done: int = 0  # batches of the epoch in progress already used (a run stopped by a signal resumes after)
    total_steps: int = 0
    milestones: tuple[int, ...] = ()
    anchor_step: int = 0
    anchor_lr: float = 0.0
    anchor_phase: float = 0.0
    bad_steps: int = 0  # non-finite losses in a row
    skipped_steps: int = 0  # non-finite losses in all
    best_map: float = -1.0
    stale_validations: int = 0  # validations in a row without a better mAP (what --patience counts)
    train_seconds: float = 0.0  # time spent training, checkpoints included, across resumes (what a budget counts)
    budget_minutes: float = 0.0  # the --time-budget the schedule was sized to (0: none)
    images_seen: int = 0
    step_seconds: float = 0.0  # time spent in steps, loading included
    history: list[dict[str, float]] = field(default_factory=list, repr=False)  # this process's log rows

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["history"]
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        known = {f.name for f in fields(cls)} - {"history"}
        state = cls(**{k: v for k, v in d.items() if k in known})
        state.milestones = tuple(state.milestones)
        return state

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps

    @property
    def images_per_second(self) -> float:
        """Training pictures a second, over the time spent in steps (loading included)."""
        return self.images_seen / max(self.step_seconds, 1e-9)

    @property
    def minutes_left(self) -> float:
        """What the rest of the schedule takes at the speed so far."""
        return (self.total_steps - self.step) * self.step_seconds / max(self.step, 1) / 60
