"""The checkpoint format, written and read in one place: atomic writes, reads that cannot run code, checks.

A checkpoint is a dict of plain values and tensors (``torch.load(weights_only=True)`` reads it):

- ``model``: the detector's state dict; ``config``: :meth:`model.FCOSConfig.to_dict`; ``classes``; ``epoch``
- written by training, for ``--resume``: ``optimizer``, ``scaler``, ``step``, ``state``
  (:meth:`engine.state.TrainState.to_dict`), ``train_config`` (the run's settings,
  :meth:`engine.config.TrainConfig.to_dict`), and with ``--ema`` the averaged weights ``ema`` and their count
  ``ema_updates``
- after the final evaluation: ``thresholds``, the per-class operating points ``detect.py`` keeps by default

Deployment uses ``ema`` when present, else ``model``.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from model import FCOSConfig, FCOSDetector

from .atomic import TMP_SUFFIX, atomic_write
from .config import TrainConfig
from .state import TrainState
from .train import Trainer


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, written or used; the message names the file."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically: a crash or a full disk mid-write leaves the previous file intact.
    A state with a non-finite tensor (weights, buffers, optimizer state) is refused: no checkpoint ever holds one."""
    path = Path(path)
    kept = f"; the previous {path.name} is left as it was" if path.exists() else ""
    bad = non_finite_tensors(state)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise CheckpointError(f"{path}: not written: {len(bad)} tensors hold NaN or infinite values ({shown}){kept}")
    full = False
    try:
        with atomic_write(path) as tmp:
            try:
                with open(tmp, "wb") as f:
                    torch.save(state, f)
                    f.flush()
                    os.fsync(f.fileno())
            except (OSError, RuntimeError) as err:
                full = disk_full(err, path.parent)  # while the partial file still fills the disk
                raise
    except (OSError, RuntimeError) as err:
        full = full or disk_full(err, path.parent)
        reason = "no space left on the disk" if full else str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: cannot write the checkpoint ({reason}){kept}") from None


def disk_full(err: Exception, folder: Path) -> bool:
    """Whether a failed write ran out of disk: ENOSPC, or torch's writer failing (it words a full disk as an
    ``inline_container.cc`` position or write error) on a disk with less than 64 MiB free."""
    if isinstance(err, OSError):
        return err.errno == errno.ENOSPC
    return "inline_container" in str(err) and shutil.disk_usage(folder).free < 64 * 2**20


def non_finite_tensors(state: Any, name: str = "") -> list[str]:
    """The keys (dotted) of the floating-point tensors in ``state``, nested dicts and lists included, that hold a
    NaN or an infinity."""
    if isinstance(state, Tensor):
        return [name] if state.is_floating_point() and not bool(torch.isfinite(state).all()) else []
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return []
    return [bad for key, value in items for bad in non_finite_tensors(value, f"{name}.{key}" if name else str(key))]


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
    try:
        check_entries(checkpoint)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return checkpoint


def check_entries(checkpoint: Any) -> None:
    """``ValueError`` unless ``checkpoint`` is a dict with the entries every FCOS checkpoint has."""
    if not isinstance(checkpoint, dict) or not {"model", "config"} <= set(checkpoint):
        keys = sorted(map(str, checkpoint))[:6] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"not an FCOS checkpoint (needs 'model' and 'config'; found {keys})")


def training_checkpoint(
    model: FCOSDetector,
    *,
    trainer: Trainer,
    state: TrainState,
    config: TrainConfig,
    thresholds: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything ``--resume`` needs, and the weights to deploy."""
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "config": model.config.to_dict(),
        "classes": list(model.config.classes),
        "epoch": state.epoch,
        "step": state.step,
        "state": state.to_dict(),
        "train_config": config.to_dict(),
    }
    if trainer.ema is not None:
        checkpoint["ema"], checkpoint["ema_updates"] = trainer.ema.module.state_dict(), int(trainer.ema.n_averaged)
    if thresholds:
        checkpoint["thresholds"] = thresholds
    return checkpoint


def load_resume_checkpoint(path: str | Path, classes: tuple[str, ...]) -> dict[str, Any]:
    """A checkpoint that training can continue from, with the classes of the run; ``CheckpointError`` otherwise."""
    checkpoint = load_checkpoint(path)
    if not {"optimizer", "scaler", "state"} <= set(checkpoint):
        raise CheckpointError(f"{path}: holds weights only (no optimizer or training state); it cannot be resumed")
    if tuple(checkpoint.get("classes", ())) != classes:
        raise CheckpointError(f"{path} was trained on classes {checkpoint.get('classes')}, not {list(classes)}")
    return checkpoint


def restore_training(checkpoint: dict[str, Any], trainer: Trainer) -> TrainState:
    """Optimizer, scaler and weight average as they were; the training state to continue from."""
    trainer.optimizer.load_state_dict(checkpoint["optimizer"])
    trainer.scaler.load_state_dict(checkpoint["scaler"])
    if trainer.ema is not None and "ema" in checkpoint:
        trainer.ema.module.load_state_dict(checkpoint["ema"])
        trainer.ema.n_averaged.fill_(checkpoint["ema_updates"])
    return TrainState.from_dict(checkpoint["state"])


def detector_from_checkpoint(checkpoint: dict[str, Any], averaged: bool = True) -> FCOSDetector:
    """The detector (eval mode, CPU) a checkpoint dict holds: ``ema`` when ``averaged`` and present, else ``model``.

    The backbone is built as it was trained (frozen BatchNorm when pretrained) without reading the pretrained
    file or downloading anything: the checkpoint holds all the weights. ``ValueError`` when the weights do not
    fit the checkpoint's config, naming the settings that differ.
    """
    check_entries(checkpoint)
    config = FCOSConfig.from_dict(checkpoint["config"])
    model = FCOSDetector(config, load_pretrained=False)
    weights = (averaged and checkpoint.get("ema")) or checkpoint["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(mismatch_message(weights, config, err)) from None
    return model.eval()


def load_detector(path: str | Path, averaged: bool = True) -> tuple[FCOSDetector, dict[str, Any]]:
    """The detector (eval mode, CPU) and the checkpoint dict from a checkpoint file; its weight average when
    ``averaged`` and it holds one (:func:`detector_from_checkpoint`)."""
    checkpoint = load_checkpoint(path)
    try:
        return detector_from_checkpoint(checkpoint, averaged), checkpoint
    except (ValueError, TypeError, KeyError) as err:
        raise CheckpointError(f"{path}: {err}") from None


def architecture_of(weights: dict[str, Tensor]) -> dict[str, Any]:
    """The settings a state dict's tensors imply: backbone, num_classes, fpn_channels, head_convs."""
    found: dict[str, Any] = {}
    if any(k.startswith("backbone.body.") for k in weights):  # EfficientNet-Lite: blocks and C3's width tell it
        blocks = {tuple(k.split(".")[3:5]) for k in weights if k.startswith("backbone.body.blocks.")}
        c3 = weights.get("backbone.body.blocks.2.0.conv_pwl.weight", torch.empty(0))
        lites = {(16, 40): "efficientnet_lite0", (21, 40): "efficientnet_lite1", (21, 48): "efficientnet_lite2"}
        found["backbone"] = lites.get((len(blocks), len(c3)))
    else:
        blocks = {k.split(".")[2] for k in weights if k.startswith("backbone.layer3.")}
        bottleneck = any(k.startswith("backbone.layer1.0.conv3.") for k in weights)
        resnets = {(2, False): "resnet18", (6, False): "resnet34", (6, True): "resnet50", (23, True): "resnet101"}
        found["backbone"] = resnets.get((len(blocks), bottleneck))
    cls_weight = weights.get("head.cls_logits.weight")
    if cls_weight is not None:
        found["num_classes"], found["fpn_channels"] = int(cls_weight.shape[0]), int(cls_weight.shape[1])
    found["head_convs"] = sum(1 for k, v in weights.items() if k.startswith("head.cls_tower.") and v.ndim == 4)
    return found


def mismatch_message(weights: dict[str, Tensor], config: FCOSConfig, err: Exception) -> str:
    found = architecture_of(weights)
    differ = [
        f"{key}: {value} in the weights, {getattr(config, key)} in the config"
        for key, value in found.items()
        if value is not None and value != getattr(config, key)
    ]
    detail = "; ".join(differ) if differ else str(err).splitlines()[-1].strip()
    return f"the weights do not fit the checkpoint's model settings ({detail})"
