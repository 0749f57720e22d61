"""Train FCOS on a VOC-layout data set: CPU, one GPU, DataParallel over all GPUs, or DDP under torchrun.

    python train_voc.py --preset demo                       # synthetic data, 2-core CPU, a few minutes
    python train_voc.py --preset fod-cpu --data-root foreign_object_dataset
    python train_voc.py --preset fod --data-root foreign_object_dataset --pretrained /path/resnet50.pth
    torchrun --nproc_per_node 4 train_voc.py --preset fod --data-root foreign_object_dataset --amp

Writes ``model_<epoch>.pth``, ``last.pth`` (and ``best.pth`` with ``--val-every``) atomically into
``--output-dir``, a CSV of every step, and a loss curve. ``--resume last.pth`` continues exactly.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cli import run
from dataset import resolve_classes
from engine.amp import resolve_amp
from engine.annotate import detect_files
from engine.board import check_tensorboard
from engine.checkpoint import load_checkpoint, load_detector, load_resume_checkpoint, restore_training
from engine.compiling import compile_detector
from engine.config import BASE, TrainConfig, flag, flag_fields
from engine.data import seed_everything
from engine.distill import load_teacher
from engine.distributed import barrier, init_distributed, is_main_process, parallelise, process_device
from engine.memory_format import describe, resolve_channels_last
from engine.recipes import PRESETS
from engine.run import (
    Run,
    build_model,
    build_trainer,
    claimed_output_dir,
    load_data,
    prepare_synthetic,
    say,
    train_loader,
)
from engine.schedule import TimeBudget
from engine.state import TrainState
from engine.thresholds import FALLBACK_THRESHOLD, deploy_thresholds
from engine.train import TrainStep
from model import FCOSConfig


def get_args_parser(add_help: bool = True, config: TrainConfig = BASE) -> argparse.ArgumentParser:
    """One flag per field of :class:`TrainConfig`, its help showing ``config``'s value (a preset's, with
    ``--preset P --help``). Only typed flags come out of a parse: :func:`parse_config` lays them over the preset."""
    parser = argparse.ArgumentParser(
        description="Train FCOS on a VOC-layout data set",
        add_help=add_help,
        argument_default=argparse.SUPPRESS,
        epilog=f"{config.preset or 'these defaults'}: {config.describe_lr(config.batch_size)} at --batch-size "
        f"{config.batch_size} on one device",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for field in flag_fields():
        spec = field.metadata
        if spec["group"] not in groups:
            groups[spec["group"]] = parser.add_argument_group(spec["group"])
        group = groups[spec["group"]]
        value = getattr(config, field.name)
        if "shared" in spec:
            action = spec["shared"](group)
            action.default = argparse.SUPPRESS
        elif field.name == "preset":
            action = group.add_argument(flag(field.name), choices=sorted(PRESETS), help=spec["help"])
        elif isinstance(value, bool):
            action = group.add_argument(flag(field.name), action=argparse.BooleanOptionalAction, help=spec["help"])
        else:
            options = {k: spec[k] for k in ("choices", "nargs", "metavar") if k in spec}
            action = group.add_argument(flag(field.name), type=spec.get("parse", str), help=spec["help"], **options)
        if value is not None and value != "":
            action.help = f"{action.help} (default: {shown(value)})"
    return parser


def shown(value: Any) -> str:
    """A value as its flag is typed: sizes ``AxB``, lists joined."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if all(isinstance(v, str) for v in value) else " ".join(map(str, value))
    return str(value)


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """The run ``argv`` asks for: the ``--preset`` it names (or the original run), with the typed flags laid over
    it by :meth:`TrainConfig.override` (its length rule included). A value the config refuses is a usage error
    naming the flag, and so is a model setting typed beside ``--resume`` that differs from the checkpoint's model
    (a resumed run trains the checkpoint's)."""
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--preset")
    preset = PRESETS.get(peek.parse_known_args(argv)[0].preset, BASE)
    parser = get_args_parser(config=preset)
    typed = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(parser.parse_args(argv)).items()}
    try:
        config = preset.override(**typed)
        if config.tensorboard:
            check_tensorboard()
        stored = None
        if "resume" in typed:
            stored = FCOSConfig.from_dict(load_checkpoint(config.resume)["config"])
            changed = config.model_changes(stored, typed)
            if changed:
                raise ValueError(
                    f"{'; '.join(changed)}: a resumed run trains the model of {config.resume}; drop these flags, or "
                    "train anew without --resume"
                )
        if config.distill_from:  # the teacher checked before the work, against the model it would teach
            load_teacher(config.distill_from, stored or config.detector_config(resolve_classes(config.classes)))
    except (ImportError, OSError, ValueError) as err:
        parser.error(str(err))
    return config


def main(config: TrainConfig, clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Train as ``config`` says, holding its output folder; ``clock`` times the run (and its time budget)."""
    rank, world_size, local_rank = init_distributed()
    with claimed_output_dir(config.output_path) as output_dir:
        return train(config, output_dir, clock, rank=rank, world_size=world_size, local_rank=local_rank)


def train(
    config: TrainConfig,
    output_dir: Path,
    clock: Callable[[], float],
    *,
    rank: int,
    world_size: int,
    local_rank: int,
) -> dict[str, Any]:
    """:func:`main`'s run, into ``output_dir`` (held)."""
    device, num_gpus = process_device(config.device, local_rank, config.data_parallel)
    classes = resolve_classes(config.classes)
    if config.synthetic and is_main_process():
        prepare_synthetic(config)
    barrier()

    checkpoint = load_resume_checkpoint(config.resume, classes) if config.resume else None
    stored = FCOSConfig.from_dict(checkpoint["config"]) if checkpoint else None
    normalization = stored.normalization if stored else config.normalization
    backbone = (stored or config).backbone
    amp, why = resolve_amp(config.amp, device, backbone)
    channels_last, layout = resolve_channels_last(config.channels_last, device, backbone)
    train_set, val_set = load_data(config, classes, normalization)
    batch_size = config.batch_size * num_gpus
    loader = train_loader(config, train_set, batch_size=batch_size, device=device, rank=rank, world_size=world_size)

    seed_everything(config.seed)
    model = build_model(config, classes, checkpoint).to(device)
    model.set_channels_last(channels_last)
    step_model = parallelise(TrainStep(model, amp), device, num_gpus, config.sync_bn)
    if config.compile:
        say(f"network: {compile_detector(model)}")
    trainer = build_trainer(config, model, step_model, amp=amp, total_batch=batch_size * world_size)
    state = restore_training(checkpoint, trainer) if checkpoint else TrainState()
    training = Run(
        config=config,
        model=model,
        trainer=trainer,
        state=state,
        loader=loader,
        val_set=val_set,
        device=device,
        amp=amp,
        output_dir=output_dir,
        budget=TimeBudget(config.time_budget or None, state.train_seconds, clock),
        resumed=checkpoint is not None,
        rank=rank,
    )
    training.plan()
    if state.finished and not training.unscored:
        say(training.nothing_left())
        return {"output_dir": str(output_dir), "model": model, "state": state}
    if state.finished:
        say(
            f"nothing left to train: {config.resume} ended at step {state.step}; scoring it on "
            f"{config.val_split}, since {output_dir} holds no final evaluation of that step (results.json)"
        )
    else:
        parallel = f" x{num_gpus} DataParallel" if num_gpus > 1 else f" x{world_size} DDP" if world_size > 1 else ""
        say(
            f"training {model.config.backbone} FCOS on {len(train_set)} pictures of {config.data_root}/"
            f"{config.train_split} ({', '.join(classes)}): {len(loader)} steps/epoch of {batch_size * world_size} "
            f"pictures, {config.describe_lr(batch_size * world_size)}, {device}{parallel}, amp {amp} ({why}), "
            f"{describe(channels_last)} ({layout}); output {output_dir}"
            + (f"; learning {config.distill_from}'s outputs too" if config.distill_from else "")
        )
        training.fit()
    summary = {
        "output_dir": str(output_dir),
        "model": model,
        "state": state,
        "stopped": training.stop_reason,
        **training.finish(),
    }
    if is_main_process() and config.preset == "demo":
        demo_epilogue(output_dir, device)
    return summary


def demo_epilogue(output_dir: Path, device: torch.device) -> None:
    """The demo model on the sample pictures, at each class's best-F1 threshold, and where to look next."""
    model, checkpoint = load_detector(output_dir / "last.pth")
    points = checkpoint.get("thresholds") or {}
    report = detect_files(
        model.to(device),
        sorted(Path("test_images").glob("*.jpg")),
        output_dir / "detections",
        device=device,
        score_threshold=deploy_thresholds(points, model.config.classes, FALLBACK_THRESHOLD),
        progress=False,
    )
    print(
        f"\nannotated sample pictures: {output_dir / 'detections'}/ ({len(report.outputs)} pictures, "
        f"detections.json)\nloss curve: {output_dir / 'loss.png'}   step log: {output_dir / 'log.csv'}   "
        f"checkpoint: {output_dir / 'last.pth'}\n\nnext, on the real pictures (see foreign_object_dataset/README.md):\n"
        f"    python train_voc.py --preset fod-cpu --data-root foreign_object_dataset"
    )


if __name__ == "__main__":
    run(main, parse_config(), "train_voc.py")
