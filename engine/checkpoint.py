"""Checkpoints: written atomically, read without unpickling code, checked, and turned back into a detector."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from model import FCOSDetector

TMP_SUFFIX = ".tmp"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, written or used; the message names the file."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically: a crash or a full disk mid-write leaves the previous file intact."""
    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        tmp.unlink(missing_ok=True)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "write" in reason and "inline_container" in reason:
            reason = "the file could not be written (is the disk full?)"
        kept = f"; the previous {path.name} is intact" if path.exists() else ""
        raise CheckpointError(f"{path}: cannot write the checkpoint ({reason}){kept}") from None


def remove_partial_checkpoints(folder: str | Path) -> list[Path]:
    """Delete ``*.pth.tmp`` files a killed run left in ``folder``; returns them."""
    partial = sorted(Path(folder).glob(f"*.pth{TMP_SUFFIX}"))
    for path in partial:
        path.unlink()
    return partial


def newest_checkpoint(folder: str | Path = "checkpoint") -> Path:
    """The most recently modified ``*.pth`` under ``folder``, sub-folders included (training writes to
    ``checkpoint/<preset>/``)."""
    candidates = [p for p in Path(folder).rglob("*.pth") if p.is_file()]
    if not candidates:
        raise FileNotFoundError(f"no checkpoint (*.pth) under {folder}/; pass --checkpoint")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by training, on the CPU, with ``weights_only=True``: tensors, numbers,
    strings and containers only, so a crafted file cannot run code. ``CheckpointError`` (or
    ``FileNotFoundError``) naming the file for anything that is not a readable FCOS checkpoint."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: is not a file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):
            raise CheckpointError(
                f"{path}: refused: it holds Python objects, not only weights, and loading it could run code"
            ) from None
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated, or not written by torch.save)") from None
    except Exception:  # torch.load of arbitrary bytes raises about any type; none of them is a bug here
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated, or not written by torch.save)") from None
    if not isinstance(checkpoint, dict) or not {"model", "config"} <= set(checkpoint):
        keys = sorted(checkpoint)[:6] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f"{path}: not an FCOS checkpoint (needs 'model' and 'config'; found {keys})")
    return checkpoint


def load_detector(path: str | Path) -> tuple[FCOSDetector, dict[str, Any]]:
    """The detector (eval mode, CPU) and the checkpoint dict from a checkpoint file."""
    checkpoint = load_checkpoint(path)
    try:
        return FCOSDetector.from_checkpoint(checkpoint), checkpoint
    except (ValueError, TypeError, KeyError) as err:
        raise CheckpointError(f"{path}: {err}") from None
