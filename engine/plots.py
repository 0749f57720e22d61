"""Figures written by training and evaluation: the loss and validation curves and precision-recall curves
(matplotlib, Agg)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .atomic import atomic_write


def new_figure(width: float, height: float) -> Figure:
    """A figure on an Agg canvas: no display needed."""
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` atomically (a reader never sees half a PNG), in the format its suffix names (PNG without
    one)."""
    path = Path(path)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    return path


def plot_losses(history: list[dict[str, Any]], path: str | Path) -> None:
    """Loss curves (each part and the total) against the step, as a PNG."""
    if not history:
        return
    fig = new_figure(8, 4.5)
    ax = fig.subplots()
    steps = [row["step"] for row in history]
    for key in ("total_loss", "cls_loss", "cnt_loss", "reg_loss", "distill_loss"):
        if any(key in row for row in history):  # distill_loss: from the step a teacher joined (resumed) on
            ax.plot(steps, [row.get(key, math.nan) for row in history], label=key, linewidth=1)
    ax.set(xlabel="step", ylabel="loss", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def plot_validation(rows: list[dict[str, float]], path: str | Path) -> None:
    """mAP (thick) and each class's AP against the step, one point a validation: ``rows`` of ``val_log.csv``
    (``step``, ``map`` and one column a class)."""
    if not rows:
        return
    fig = new_figure(8, 4.5)
    ax = fig.subplots()
    steps = [row["step"] for row in rows]
    classes = [key for key in rows[0] if key not in ("epoch", "step", "map")]
    ax.plot(steps, [row["map"] for row in rows], "o-", color="black", linewidth=2.5, label="mAP")
    for name in classes:
        ax.plot(steps, [row[name] for row in rows], ".-", linewidth=1, label=name)
    ax.set(xlabel="step", ylabel="AP", ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


def plot_pr_curves(result: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write ``pr_<class>.png`` (precision over recall, with the interpolated envelope) per class."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, ap in result["ap"].items():
        recall, precision = result["recall"][name], result["precision"][name]
        fig = new_figure(5, 4)
        ax = fig.add_subplot()
        if result["num_gt"][name] > 0 and len(recall):
            envelope = np.maximum.accumulate(precision[::-1])[::-1]
            ax.plot(recall, precision, color="tab:blue", lw=1, label="precision")
            ax.plot(recall, envelope, color="tab:orange", lw=1.5, drawstyle="steps-pre", label="interpolated")
            ax.legend(loc="lower left")
        ax.set(
            xlim=(0, 1.01),
            ylim=(0, 1.01),
            xlabel="recall",
            ylabel="precision",
            title=f"{name}: AP={ap:.3f} ({result['num_gt'][name]} objects)",
        )
        ax.grid(alpha=0.3)
        paths.append(save_figure(fig, out_dir / f"pr_{name}.png"))
    return paths
