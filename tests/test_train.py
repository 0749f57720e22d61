"""train_voc.py and engine/: steps, exact resume, the non-finite guard, schedules and budgets, DataParallel and DDP."""

import csv
import json
import math
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import eval_voc
import train_voc
from cli import Stopped, interruption
from dataset import VOCDataset, load_ground_truth
from dataset.synthetic import generate
from engine import amp as amp_policy
from engine import train as engine_train
from engine.amp import resolve_amp
from engine.checkpoint import CheckpointError, load_detector
from engine.config import BASE, TrainConfig
from engine.data import make_train_loader, start_epoch
from engine.memory_format import resolve_channels_last
from engine.metrics import evaluate_detections
from engine.recipes import PRESETS
from engine.run import Run, build_model, load_data, teacher_of
from engine.schedule import TimeBudget, learning_rate, plan_run, plan_schedule, resize_schedule
from engine.state import TrainState
from engine.train import NonFiniteLossError, Trainer, TrainStep, make_ema, pad_targets, reduce_losses
from model import FCOSConfig
from model.distill import normalise_distillation
from model.loss import normalise_losses

FOD = ("nail", "clip_B", "clip_Y", "L_stick")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, {"train": 8, "val": 2}, seed=3, size=(128, 224))
    return root


# A ResNet18 FCOS with a one-conv head on 128x224 pictures: one epoch is 4 steps of 2 of the 8 training pictures.
TINY = replace(
    BASE,
    backbone="resnet18",
    fpn_channels=32,
    head_convs=1,
    resize=(128, 224),
    batch_size=2,
    epochs=1,
    lr=0.01,
    warmup_steps=2,
    workers=0,
    final_eval=False,
)


def tiny_config(data_root, output_dir, **changes):
    return replace(TINY, data_root=str(data_root), output_dir=str(output_dir)).override(**changes)


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def weights(path):
    return load(path)["model"]


def tiny_model(data_root):
    return build_model(tiny_config(data_root, "unused"), FOD)


class FakeClock:
    """A clock that moves only with the training steps: a test's steps take the time it says on any machine."""

    def __init__(self, step_seconds: float):
        self.now, self.step_seconds = 0.0, step_seconds

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def step_clock(monkeypatch):
    """``step_clock(s)``: a FakeClock that every training step moves by s seconds (the clock the step
    sees is the latest one made)."""
    clocks = []
    forward = TrainStep.forward

    def timed(self, *args):
        clocks[-1].now += clocks[-1].step_seconds
        return forward(self, *args)

    monkeypatch.setattr(TrainStep, "forward", timed)

    def make(step_seconds: float) -> FakeClock:
        clocks.append(FakeClock(step_seconds))
        return clocks[-1]

    return make


def batch():
    targets = [
        {"boxes": torch.tensor([[10.0, 10.0, 40.0, 50.0]]), "labels": torch.tensor([2])},
        {"boxes": torch.tensor([[5.0, 5.0, 20.0, 20.0], [50.0, 60.0, 90.0, 100.0]]), "labels": torch.tensor([1, 4])},
    ]
    torch.manual_seed(0)
    return torch.randn(2, 3, 192, 192), targets  # P7 2x2: GroupNorm trains on a single picture too


# ---------------------------------------------------------------------------------------------- schedule, budget


def test_schedule_values():
    state = TrainState()
    plan_schedule(state, 10_000, (7000, 9000), 1e-3, 500)
    lr = lambda step: learning_rate(step, state, 1e-3, 500, "step")  # noqa: E731
    assert lr(0) == pytest.approx(1e-3 / 500) and lr(249) == pytest.approx(0.5e-3)
    assert lr(500) == pytest.approx(1e-3) and lr(6999) == pytest.approx(1e-3)
    assert lr(7000) == pytest.approx(1e-4) and lr(9000) == pytest.approx(1e-5)
    plan_schedule(state, 1100, (), 0.02, 100)
    cosine = lambda step: learning_rate(step, state, 0.02, 100, "cosine")  # noqa: E731
    assert cosine(100) == pytest.approx(0.02) and cosine(600) == pytest.approx(0.01)
    assert cosine(1100) == pytest.approx(0.0, abs=1e-12)
    assert cosine(350) == pytest.approx(0.01 * (1 + math.cos(math.pi / 4)))


@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_budget_refits_never_raise_the_lr_nor_move_a_passed_milestone(schedule):
    """The old refit scaled every milestone, passed ones too, so the LR jumped back up 10x."""
    state = TrainState()
    plan_schedule(state, 1000, (300, 700), 0.02, 50)
    ends = {200: 400, 320: 2000, 500: 800, 650: 660, 659: 5000}  # a refit at these steps: shorter, longer
    lrs = []
    for step in range(2000):
        state.step = step
        if step in ends:
            before = tuple(m for m in state.milestones if m <= step)
            resize_schedule(state, ends[step], 50)
            assert tuple(m for m in state.milestones if m <= step) == before
        if step >= state.total_steps:
            break
        lrs.append(learning_rate(step, state, 0.02, 50, schedule))
    after_warmup = lrs[50:]
    assert all(b <= a + 1e-15 for a, b in zip(after_warmup, after_warmup[1:]))
    assert state.milestones[0] == 225  # 300, moved to 225 by the refit at 200 (ahead then), passed, kept since


def test_budget_refits_keep_the_cosine_phase():
    """The old refit restarted the cosine from the current LR, a fresh flat top at every epoch: under a
    time budget the LR was still 0.86 of its peak at 80% of the run, where the cosine gives 0.10."""
    state = TrainState()
    plan_schedule(state, 1100, (), 0.02, 100)
    planned = [learning_rate(step, state, 0.02, 100, "cosine") for step in range(1100)]
    for step in range(1100):
        state.step = step
        if step % 37 == 0:  # refits that find the same end change nothing
            resize_schedule(state, 1100, 100)
        assert learning_rate(step, state, 0.02, 100, "cosine") == pytest.approx(planned[step], abs=1e-12)
    assert planned[900] / 0.02 == pytest.approx(0.5 * (1 + math.cos(0.8 * math.pi)))  # 0.095 at 80%

    plan_schedule(state, 1100, (), 0.02, 100)
    state.step = 600  # half way; a later estimate gives 500 more steps
    before = learning_rate(600, state, 0.02, 100, "cosine")
    resize_schedule(state, 1600, 100)
    assert learning_rate(600, state, 0.02, 100, "cosine") == pytest.approx(before)
    assert learning_rate(1100, state, 0.02, 100, "cosine") == pytest.approx(0.01 * (1 + math.cos(0.75 * math.pi)))
    assert learning_rate(1600, state, 0.02, 100, "cosine") == pytest.approx(0.0, abs=1e-12)


def test_a_checkpoint_without_a_cosine_phase_resumes_on_its_own_curve():
    """Checkpoints written before ``anchor_phase`` anchored a fresh cosine at ``anchor_lr``."""
    old = {"step": 600, "total_steps": 1100, "anchor_step": 600, "anchor_lr": 0.01, "milestones": []}
    state = TrainState.from_dict(old)
    assert state.anchor_phase == 0.0
    assert learning_rate(600, state, 0.02, 100, "cosine") == pytest.approx(0.01)
    assert learning_rate(850, state, 0.02, 100, "cosine") == pytest.approx(0.005)


@pytest.mark.timing
def test_budget_refits_every_25_steps_at_the_speed_after_start_up_and_grants_nothing_when_out_of_time():
    now = [0.0]
    budget = TimeBudget(1.0, clock=lambda: now[0])  # 60 s
    fits = {}
    for step in range(1, 51):
        now[0] += 3.0 if step <= 5 else 0.5  # a slow start-up, then 0.5 s a step
        fits[step] = budget.after_step()
    assert [step for step, f in fits.items() if f is not None] == [25, 50]
    assert fits[25] == int(0.98 * (60 - 25) / 0.5) and fits[50] == int(0.98 * (60 - 37.5) / 0.5)
    assert budget.spent() == 37.5 and budget.seconds_per_step() == 0.5
    assert TimeBudget(1.0, spent_seconds=59.9, clock=lambda: 0.0).steps_that_fit(0.5) == 0
    assert TimeBudget(1.0, spent_seconds=61, clock=lambda: 0.0).out_of_time()
    unlimited = TimeBudget(None, clock=lambda: now[0])
    assert not unlimited.out_of_time() and all(unlimited.after_step() is None for _ in range(50))


@pytest.mark.timing
def test_a_budget_with_less_left_than_a_step_takes_stops_before_that_step():
    now = [0.0]
    budget = TimeBudget(3.0 / 60, clock=lambda: now[0])
    for _ in range(4):
        now[0] += 0.7
        budget.after_step()
    assert budget.out_of_time()  # 0.2 s left, a step takes 0.7


PLAN = {"planned": 1000, "milestones": (), "base_lr": 0.01, "warmup_steps": 2}


@pytest.mark.timing
def test_a_resumed_budget_with_less_left_than_a_step_reads_as_spent():
    """A run stopped (or killed) with 0.18 s of its 3 s left must not train past its budget when resumed."""
    state = TrainState(step=4, total_steps=7, train_seconds=2.82, budget_minutes=0.05)
    plan_run(state, **PLAN, budget=TimeBudget(0.05, state.train_seconds), resumed=True)
    assert state.finished and state.total_steps == 4
    grown = TrainState(step=4, total_steps=4, train_seconds=2.8, budget_minutes=0.05)
    plan_run(grown, **PLAN, budget=TimeBudget(0.1, grown.train_seconds, clock=lambda: 0.0), resumed=True)
    assert grown.total_steps == 4 + int(0.98 * (6 - 2.8) / 0.7)


@pytest.mark.timing
def test_time_budget_stops_training(data_root, tmp_path, step_clock):
    clock = step_clock(0.5)
    summary = train_voc.main(tiny_config(data_root, tmp_path, epochs=50, time_budget=0.1), clock)
    assert summary["state"].step == 11  # 6 s: after 11 steps of 0.5 s, less than a step's time is left
    assert load(tmp_path / "last.pth")["state"]["total_steps"] == 11  # the checkpoint reads finished


def test_steps_fix_the_length_of_training(data_root, tmp_path):
    summary = train_voc.main(tiny_config(data_root, tmp_path, steps=6, save_every=0))
    assert (summary["state"].step, summary["state"].epoch) == (6, 2)
    assert load(tmp_path / "last.pth")["state"]["total_steps"] == 6


@pytest.mark.timing
def test_epoch_cut_off_before_its_first_step_is_not_saved(data_root, tmp_path, monkeypatch, capsys, step_clock):
    """The budget running out while epoch 2 loads its first batch must leave epoch 1 as the last one."""
    clock, original = step_clock(0.5), Trainer.train_one_epoch

    def out_of_time_in_epoch_2(self, batches, state, **kwargs):
        if kwargs["epoch"] == 2:
            clock.now += 3600
        return original(self, batches, state, **kwargs)

    monkeypatch.setattr(Trainer, "train_one_epoch", out_of_time_in_epoch_2)
    summary = train_voc.main(tiny_config(data_root, tmp_path, epochs=3, time_budget=10), clock)
    assert (summary["state"].epoch, summary["state"].step) == (1, 4)
    assert (load(tmp_path / "last.pth")["epoch"], load(tmp_path / "last.pth")["step"]) == (1, 4)
    assert not (tmp_path / "model_2.pth").exists() and "epoch 2:" not in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- presets, flags


def test_presets_fill_unset_flags_and_flags_win(capsys):
    args = train_voc.parse_config(["--preset", "fod", "--lr", "0.005"])
    assert (args.backbone, args.resize, args.batch_size, args.epochs, args.lr) == (
        "resnet50",
        (922, 1640),
        2,
        100,
        0.005,
    )
    assert args.augment == ("flip", "color", "rotate") and args.pretrained == "imagenet" and args.momentum == 0.9
    assert args.output_path.as_posix() == "checkpoint/fod"
    assert train_voc.parse_config(["--preset", "fod-288"]).resize == (288, 512)
    assert train_voc.parse_config(["--preset", "demo", "--save-every", "5"]).save_every == 5
    assert train_voc.parse_config(["--preset", "fod-cpu", "--crop", "256x256"]).crop == (256, 256)
    assert train_voc.parse_config(["--preset", "fod-cpu"]).tta and not train_voc.parse_config(["--preset", "demo"]).tta
    assert not train_voc.parse_config(["--preset", "fod-cpu", "--no-tta"]).tta  # a preset's switch can be turned off
    pretrained, scratch = (train_voc.parse_config(["--preset", p]) for p in ("fod-cpu", "fod-cpu-scratch"))
    changed = {k: (getattr(scratch, k), v) for k, v in pretrained.changes(scratch).items()}
    assert changed == {
        "preset": ("fod-cpu-scratch", "fod-cpu"),
        "backbone": ("resnet18", "efficientnet_lite2"),
        "pretrained": ("none", "imagenet"),
        "lr": (0.02, 0.01),
        "steps": (None, 1000),
        "time_budget": (30.0, None),
        "amp": ("auto", "off"),
    }
    with pytest.raises(SystemExit):
        train_voc.parse_config(["--preset", "fod-cpu", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "(default: 720x1280)" in shown and "(default: efficientnet_lite2)" in shown
    assert "(default: 320x320)" in shown and "(default: flip)" in shown and "(default: on)" in shown
    assert "fod-cpu: lr 0.01 (0.01 x 8/8, the linear rule) at --batch-size 8 on one device" in shown
    with pytest.raises(SystemExit):
        train_voc.parse_config(["--crop", "320,320"])  # one size syntax: AxB
    assert "720x1280" in capsys.readouterr().err


def test_each_preset_is_named_and_shows_the_lr_it_runs_at(capsys):
    """``fod``'s LR is 1e-3 for a total batch of 4: on one device at batch 2 the linear rule makes it 5e-4."""
    for name, preset in PRESETS.items():
        assert preset.preset == name and preset.output_path.as_posix() == f"checkpoint/{name}"
    assert PRESETS["fod"].changes() == {"preset": "fod", "pretrained": "imagenet", "lr_batch": 4}
    assert PRESETS["fod"].describe_lr(2) == "lr 0.0005 (0.001 x 2/4, the linear rule)"
    with pytest.raises(SystemExit):
        train_voc.parse_config(["--preset", "fod", "--help"])
    assert "fod: lr 0.0005 (0.001 x 2/4, the linear rule) at --batch-size 2" in " ".join(
        capsys.readouterr().out.split()
    )


def test_the_flags_are_the_configs_fields_and_typed_ones_win():
    """Every flag typed into a config: the parse and the config agree field by field."""
    config = train_voc.parse_config(
        ["--crop", "64x96", "--lr-steps", "3", "5", "--augment", "flip,rotate", "--no-data-parallel", "--ema"]
    )
    assert config == replace(
        BASE, crop=(64, 96), lr_steps=(3, 5), augment=("flip", "rotate"), data_parallel=False, ema=True
    )
    assert train_voc.parse_config([]) == BASE
    assert isinstance(config, TrainConfig) and train_voc.parse_config(["--no-final-eval"]).final_eval is False
    weighted = train_voc.parse_config(["--reg-weighting", "centerness"])
    assert weighted.detector_config(FOD).reg_weighting == "centerness" and BASE.reg_weighting == "none"


def test_a_typed_length_replaces_the_presets_length():
    """``--preset demo --epochs 2`` once trained the preset's steps: its --steps beat the typed --epochs."""
    demo = train_voc.parse_config(["--preset", "demo", "--epochs", "2"])
    assert (demo.epochs, demo.steps, demo.time_budget) == (2, None, None)
    budgeted = train_voc.parse_config(["--preset", "demo", "--time-budget", "2"])
    assert (budgeted.epochs, budgeted.steps, budgeted.time_budget) == (1000, None, 2.0)  # epochs bound the budget
    scratch = train_voc.parse_config(["--preset", "fod-cpu-scratch", "--steps", "10"])
    assert (scratch.steps, scratch.time_budget) == (10, None)
    assert train_voc.parse_config(["--preset", "fod-cpu-scratch", "--epochs", "3"]).time_budget is None
    untouched = train_voc.parse_config(["--preset", "demo", "--lr", "0.02"])
    assert (untouched.steps, untouched.lr) == (200, 0.02)


def test_the_demo_trains_one_epoch_when_asked_and_keeps_the_data_set_it_finds(tmp_path):
    """The demo once regenerated a data set made with other sizes and trained the preset's steps on it."""
    mine = tmp_path / "mine"
    generate(mine, {"train": 8, "test": 2}, seed=5, size=(96, 160))
    before = {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()}
    args = train_voc.parse_config(
        ["--preset", "demo", "--epochs", "1", "--data-root", str(mine), "--output-dir", str(tmp_path / "out")]
    )
    summary = train_voc.main(args)
    assert (summary["state"].epoch, summary["state"].step) == (1, 1)  # 8 pictures, batch 8
    assert {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()} == before


def test_size_ranges_flag_sets_the_levels_and_reaches_the_checkpoint(data_root, tmp_path):
    assert build_model(tiny_config(data_root, "unused"), FOD).config.size_ranges == FCOSConfig().size_ranges
    args = tiny_config(data_root, tmp_path, size_ranges=(128.0, 256.0, 512.0, 1024.0), steps=1)
    assert build_model(args, FOD).config.size_ranges == (
        (-1.0, 128.0),
        (128.0, 256.0),
        (256.0, 512.0),
        (512.0, 1024.0),
        (1024.0, math.inf),
    )
    train_voc.main(args)
    saved = FCOSConfig.from_dict(load(tmp_path / "last.pth")["config"])
    assert saved.size_ranges[0] == (-1.0, 128.0) and saved.size_ranges[-1] == (1024.0, math.inf)


def test_voc_preset_scales_the_learning_rate_with_the_batch(data_root, tmp_path, capsys):
    """0.01 is the official rate for 16 pictures a step; 2 pictures get 0.01 x 2 / 16."""
    args = train_voc.parse_config(
        [
            "--preset",
            "voc",
            "--data-root",
            str(data_root),
            "--output-dir",
            str(tmp_path),
            "--classes",
            "fod",
            "--train-split",
            "train",
            "--val-split",
            "val",
            "--pretrained",
            "none",
            "--backbone",
            "resnet18",
            "--fpn-channels",
            "32",
            "--head-convs",
            "1",
            "--resize",
            "128x224",
            "--steps",
            "1",
            "--workers",
            "0",
            "--augment",
            "flip",
            "--no-final-eval",
        ]
    )
    train_voc.main(args)
    assert "lr 0.00125 (0.01 x 2/16, the linear rule)" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- checkpoints, logs


def test_save_every_zero_keeps_only_last(data_root, tmp_path):
    train_voc.main(tiny_config(data_root, tmp_path, epochs=2, save_every=0))
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["last.pth"]
    train_voc.main(tiny_config(data_root, tmp_path / "every", epochs=2))
    assert sorted(p.name for p in (tmp_path / "every").glob("*.pth")) == ["last.pth", "model_1.pth", "model_2.pth"]


def test_one_cpu_step_writes_checkpoints_and_logs(data_root, tmp_path):
    summary = train_voc.main(tiny_config(data_root, tmp_path, epochs=1))
    assert summary["state"].step == 4 and summary["state"].skipped_steps == 0
    checkpoint = load(tmp_path / "last.pth")
    assert {"model", "optimizer", "scaler", "config", "classes", "epoch", "step", "state"} <= set(checkpoint)
    assert checkpoint["epoch"] == 1 and checkpoint["step"] == 4 and checkpoint["classes"] == list(FOD)
    assert (tmp_path / "model_1.pth").is_file() and (tmp_path / "loss.png").is_file()
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,cls_loss,cnt_loss,reg_loss,total_loss,lr,time" and len(rows) == 5
    assert not list(tmp_path.glob("*.tmp"))


LITE0 = {"backbone": "efficientnet_lite0", "pretrained": "imagenet", "normalization": "tf"}


@pytest.mark.parametrize("extra", [{}, {"ema": True}, LITE0])
def test_resume_is_exact(data_root, tmp_path, extra):
    common = {"augment": ("flip", "color", "rotate", "photo", "noise"), "crop": (96, 96), "scale_jitter": 1.3, **extra}
    train_voc.main(tiny_config(data_root, tmp_path / "straight", epochs=2, **common))
    train_voc.main(tiny_config(data_root, tmp_path / "resumed", epochs=1, **common))
    torch.manual_seed(12345)  # whatever happened in between must not matter
    train_voc.main(
        tiny_config(data_root, tmp_path / "resumed", epochs=2, resume=str(tmp_path / "resumed" / "last.pth"), **common)
    )
    a, b = load(tmp_path / "straight" / "last.pth"), load(tmp_path / "resumed" / "last.pth")
    for key in ("model", "ema") if extra.get("ema") else ("model",):
        assert a[key].keys() == b[key].keys() and all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    assert not torch.equal(
        a["model"]["head.cls_logits.weight"], weights(tmp_path / "resumed" / "model_1.pth")["head.cls_logits.weight"]
    )
    assert (tmp_path / "straight" / "log.csv").read_text().count("\n") == (
        tmp_path / "resumed" / "log.csv"
    ).read_text().count("\n")


def test_resume_after_a_crash_drops_the_log_rows_after_the_checkpoint(data_root, tmp_path):
    train_voc.main(tiny_config(data_root, tmp_path, epochs=1))
    log = tmp_path / "log.csv"
    log.write_text(log.read_text() + "5,2,1,1,1,3,0.01,9\n6,2,1,1,1,3,0.01,9\n")  # rows of an epoch that crashed
    (tmp_path / "last.pth.tmp").write_bytes(b"\0" * 1000)  # and its half-written checkpoint
    train_voc.main(tiny_config(data_root, tmp_path, epochs=2, resume=str(tmp_path / "last.pth")))
    steps = [int(row.split(",")[0]) for row in log.read_text().splitlines()[1:]]
    assert steps == list(range(1, 9))
    assert not (tmp_path / "last.pth.tmp").exists()


def test_resume_with_other_classes_is_refused(data_root, tmp_path):
    train_voc.main(tiny_config(data_root, tmp_path))
    args = tiny_config(
        data_root, tmp_path, classes="nail,clip_B,clip_Y,L_stick,foreign", resume=str(tmp_path / "last.pth")
    )
    with pytest.raises(ValueError, match="trained on classes"):
        train_voc.main(args)


def test_resuming_a_finished_run_says_so_and_how_to_go_on(data_root, tmp_path, capsys):
    train_voc.main(tiny_config(data_root, tmp_path, epochs=1))
    summary = train_voc.main(tiny_config(data_root, tmp_path, epochs=1, resume=str(tmp_path / "last.pth")))
    assert summary["state"].step == 4
    printed = " ".join(capsys.readouterr().out.split())
    assert "nothing left to do" in printed and "--epochs above 1 or --steps above 4" in printed
    summary = train_voc.main(tiny_config(data_root, tmp_path, epochs=2, resume=str(tmp_path / "last.pth")))
    assert summary["state"].step == 8


def test_resuming_a_run_whose_final_evaluation_failed_scores_it_without_training(
    data_root, tmp_path, capsys, monkeypatch
):
    """It used to say there was nothing left to do, and the run stayed unscored. A results.json of an earlier
    step, or a half-written one, is no final evaluation of the run either."""
    real = Run.evaluate

    def failing(self, progress=True):
        raise MemoryError("scoring")

    monkeypatch.setattr(Run, "evaluate", failing)
    with pytest.raises(MemoryError):
        train_voc.main(tiny_config(data_root, tmp_path, final_eval=True))
    trained = load(tmp_path / "last.pth")
    assert trained["state"]["step"] == 4 and not (tmp_path / "results.json").exists()
    monkeypatch.setattr(Run, "evaluate", real)
    capsys.readouterr()
    summary = train_voc.main(tiny_config(data_root, tmp_path, final_eval=True, resume=str(tmp_path / "last.pth")))
    printed = " ".join(capsys.readouterr().out.split())
    assert "nothing left to train" in printed and "training resnet18" not in printed
    assert json.loads((tmp_path / "results.json").read_text())["steps"] == 4 and (tmp_path / "detections.json").exists()
    assert torch.equal(
        load(tmp_path / "last.pth")["model"]["head.cls_logits.weight"], trained["model"]["head.cls_logits.weight"]
    )
    assert set(summary["thresholds"]) == set(FOD)
    train_voc.main(tiny_config(data_root, tmp_path, final_eval=True, resume=str(tmp_path / "last.pth")))
    assert "nothing left to do" in " ".join(capsys.readouterr().out.split())

    monkeypatch.setattr(Run, "evaluate", failing)  # trained on to step 8, its scoring failing: step 4's results stay
    with pytest.raises(MemoryError):
        train_voc.main(tiny_config(data_root, tmp_path, epochs=2, final_eval=True, resume=str(tmp_path / "last.pth")))
    monkeypatch.setattr(Run, "evaluate", real)
    train_voc.main(tiny_config(data_root, tmp_path, epochs=2, final_eval=True, resume=str(tmp_path / "last.pth")))
    assert json.loads((tmp_path / "results.json").read_text())["steps"] == 8
    (tmp_path / "results.json").write_text('{"split": "val", "ma')
    train_voc.main(tiny_config(data_root, tmp_path, epochs=2, final_eval=True, resume=str(tmp_path / "last.pth")))
    assert json.loads((tmp_path / "results.json").read_text())["steps"] == 8


@pytest.mark.timing
def test_resuming_a_finished_budgeted_run_continues_with_more_minutes(data_root, tmp_path, capsys, step_clock):
    """At 0.7 s a step a 3 s budget ends at step 4 with 0.2 s left: resumed with the same budget, nothing is
    left to do (it once trained 3 more steps, the checkpoint saying 7 were planned)."""
    common = {"epochs": 50, "resume": str(tmp_path / "last.pth")}
    first = train_voc.main(tiny_config(data_root, tmp_path, epochs=50, time_budget=0.05), step_clock(0.7))
    assert first["state"].step == 4 and load(tmp_path / "last.pth")["state"]["total_steps"] == 4
    again = train_voc.main(tiny_config(data_root, tmp_path, **common, time_budget=0.05), step_clock(0.7))
    assert again["state"].step == 4
    assert "pass a larger --time-budget" in " ".join(capsys.readouterr().out.split())
    more = train_voc.main(tiny_config(data_root, tmp_path, **common, time_budget=0.1), step_clock(0.7))
    assert more["state"].step == 8  # 6 s in all: 4 more steps of 0.7 s leave less than one step's time


# ---------------------------------------------------------------------------------------------- signals


def signal_on_call(numbers, call):
    """A TrainStep.forward that sends this process ``numbers`` (signals) during its ``call``-th call."""
    calls = {"n": 0}
    real_forward = TrainStep.forward

    def forward(self, *args):
        calls["n"] += 1
        if calls["n"] == call:
            for number in numbers:
                os.kill(os.getpid(), number)
        return real_forward(self, *args)

    return forward


@pytest.fixture
def python_signal_handlers():
    """SIGINT and SIGTERM handled as a Python started in a terminal's foreground handles them, whatever started
    the tests (a shell script's background job ignores SIGINT), and the handlers before restored after."""
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for number, handler in before.items():
        signal.signal(number, handler)


@pytest.mark.usefixtures("python_signal_handlers")
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_after_the_step_and_resuming_continues_exactly(data_root, tmp_path, monkeypatch, capsys, number):
    """SIGTERM once ended training with no word and Ctrl-C with a traceback, the epoch's steps lost; the resumed
    run once counted its epochs from 0 where the stopped one had said epoch 1."""
    common = {"augment": ("flip", "photo"), "crop": (96, 96)}
    train_voc.main(tiny_config(data_root, tmp_path / "straight", epochs=2, **common))
    with monkeypatch.context() as patched:
        patched.setattr(TrainStep, "forward", signal_on_call([number], call=3))
        with pytest.raises(Stopped) as stop:
            train_voc.main(tiny_config(data_root, tmp_path / "stopped", epochs=2, **common))
    last = tmp_path / "stopped" / "last.pth"
    assert str(stop.value) == (
        f"stopped by {number.name} at step 3 (epoch 1, batch 3 of 4); {last} holds it: to go on, run the same "
        f"command with --resume {last}"
    )
    assert stop.value.status == 128 + number and load(last)["state"]["batches_done"] == 3
    assert (
        signal.getsignal(number) is not None
        and signal.getsignal(number) == signal.default_int_handler
        or (number == signal.SIGTERM and signal.getsignal(number) == signal.SIG_DFL)
    )  # the handlers before the run are back
    capsys.readouterr()
    train_voc.main(tiny_config(data_root, tmp_path / "stopped", epochs=2, resume=str(last), **common))
    assert "resuming at step 3 (epoch 1); the schedule ends at step 8" in capsys.readouterr().out
    a, b = load(tmp_path / "straight" / "last.pth"), load(last)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert (tmp_path / "straight" / "log.csv").read_text().count("\n") == (
        tmp_path / "stopped" / "log.csv"
    ).read_text().count("\n")


@pytest.mark.usefixtures("python_signal_handlers")
@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_stops_at_once(data_root, tmp_path, monkeypatch, number):
    """A second SIGTERM once ended the run as Ctrl-C does, with Ctrl-C's exit status."""
    monkeypatch.setattr(TrainStep, "forward", signal_on_call([number, number], call=2))
    with pytest.raises(KeyboardInterrupt) as stopped:
        train_voc.main(tiny_config(data_root, tmp_path, epochs=2))
    assert interruption(stopped.value)[1] == 128 + number


@pytest.mark.usefixtures("python_signal_handlers")
def test_a_signal_ignored_before_the_run_stays_ignored(data_root, tmp_path, monkeypatch):
    """Started as a shell script's background job, whose SIGINT is ignored, the run once took a Ctrl-C meant for
    the script as its own and stopped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    monkeypatch.setattr(TrainStep, "forward", signal_on_call([signal.SIGINT], call=2))
    summary = train_voc.main(tiny_config(data_root, tmp_path))
    assert summary["state"].step == 4 and signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_sigterm_on_the_command_line_writes_last_pth_and_says_how_to_resume(data_root, tmp_path):
    argv = [sys.executable, "train_voc.py", "--data-root", str(data_root), "--output-dir", str(tmp_path)]
    argv += ["--backbone", "resnet18", "--fpn-channels", "32", "--head-convs", "1", "--resize", "128x224"]
    argv += ["--epochs", "500", "--workers", "0", "--no-final-eval", "--save-every", "0"]
    process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "log.csv"
    deadline = time.monotonic() + 300
    while not (log.is_file() and log.read_text().count("\n") > 1) and process.poll() is None:
        assert time.monotonic() < deadline, "no step logged"
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, err
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith("train_voc.py: stopped by SIGTERM at step ") and "--resume" in last_line
    assert "Traceback" not in err and load(tmp_path / "last.pth")["step"] >= 1


def ended(pid: int) -> None:
    """Wait until process ``pid`` has ended, without reaping it (its parent's SIGCHLD handler sees it as it is)."""
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z":
        assert time.monotonic() < deadline, f"process {pid} did not end"
        time.sleep(0.01)


def sigterm_to_the_group(workers: list) -> None:
    """SIGTERM to this process and to ``workers`` from another process, as a service manager sends it (a worker
    takes its parent's SIGTERM for a quiet shutdown); returns once the workers have ended."""
    os.kill(os.getpid(), signal.SIGTERM)
    for worker in workers:
        subprocess.run(["kill", "-TERM", str(worker.pid)], check=True)
        ended(worker.pid)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table of Linux")
@pytest.mark.usefixtures("python_signal_handlers")
@pytest.mark.parametrize("during", ["step", "wait for a batch"])
def test_a_sigterm_to_the_run_and_its_workers_stops_after_the_step(data_root, tmp_path, monkeypatch, during):
    """A service manager or a scheduler signals the whole process group: PyTorch reported the DataLoader workers
    the SIGTERM ended with an exception raised mid-step, or the batch awaited never came, and the run ended with a
    traceback, its steps since the last checkpoint lost."""
    calls = {"n": 0}
    if during == "step":
        real_forward = TrainStep.forward

        def forward(self, *args):
            calls["n"] += 1
            if calls["n"] == 2:
                sigterm_to_the_group(multiprocessing.active_children())
            return real_forward(self, *args)

        monkeypatch.setattr(TrainStep, "forward", forward)
    else:
        iterator = torch.utils.data.dataloader._MultiProcessingDataLoaderIter
        real_next = iterator._next_data

        def next_data(self):
            calls["n"] += 1
            if calls["n"] == 3:  # awaiting the third batch from workers the signal ended, as PyTorch says it
                sigterm_to_the_group(self._workers)
                raise RuntimeError(f"DataLoader worker (pid(s) {[w.pid for w in self._workers]}) exited unexpectedly")
            return real_next(self)

        monkeypatch.setattr(iterator, "_next_data", next_data)
    with pytest.raises(Stopped) as stop:
        train_voc.main(tiny_config(data_root, tmp_path, epochs=2, workers=2))
    assert str(stop.value).startswith("stopped by SIGTERM at step 2 (epoch 1, batch 2 of 4)")
    assert load(tmp_path / "last.pth")["state"]["batches_done"] == 2


# ---------------------------------------------------------------------------------------------- bad input


def test_missing_data_root_and_empty_split_are_clear(tmp_path, data_root):
    with pytest.raises(FileNotFoundError, match="nowhere: data set folder not found"):
        train_voc.main(tiny_config(tmp_path / "nowhere", tmp_path / "out"))
    (data_root / "ImageSets" / "Main" / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="split 'empty' lists no pictures"):
        train_voc.main(tiny_config(data_root, tmp_path / "out", train_split="empty"))


def test_a_broken_val_split_stops_the_run_before_training(data_root, tmp_path):
    (data_root / "ImageSets" / "Main" / "broken.txt").write_text("val_00000\nval_missing\n")
    with pytest.raises(FileNotFoundError, match="val_missing"):
        train_voc.main(tiny_config(data_root, tmp_path, val_split="broken"))
    assert not (tmp_path / "last.pth").exists()


def test_a_val_split_sharing_pictures_with_the_training_split_is_called_a_sanity_check(data_root, capsys):
    main = data_root / "ImageSets" / "Main"
    (main / "trainval.txt").write_text(main.joinpath("train.txt").read_text() + main.joinpath("val.txt").read_text())
    load_data(tiny_config(data_root, "unused", train_split="trainval"), FOD, "imagenet")
    assert "--val-split val: 2 of its 2 pictures are in --train-split trainval too" in capsys.readouterr().out
    load_data(tiny_config(data_root, "unused"), FOD, "imagenet")
    assert "sanity check" not in capsys.readouterr().out


def test_output_dir_that_is_a_file_is_refused(data_root, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        train_voc.main(tiny_config(data_root, tmp_path / "file"))


def test_the_demo_never_writes_into_a_users_folder(tmp_path):
    users = tmp_path / "mine"
    (users / "ImageSets" / "Main").mkdir(parents=True)
    (users / "train_00000.jpg").write_bytes(b"precious")
    (users / "ImageSets" / "Main" / "val.txt").write_text("a\n")
    with pytest.raises(FileExistsError, match="not a synthetic data set"):
        train_voc.main(
            train_voc.parse_config(
                ["--preset", "demo", "--data-root", str(users), "--output-dir", str(tmp_path / "out")]
            )
        )
    assert (users / "train_00000.jpg").read_bytes() == b"precious"
    assert sorted(p.name for p in users.rglob("*")) == ["ImageSets", "Main", "train_00000.jpg", "val.txt"]


# ---------------------------------------------------------------------------------------------- non-finite guard


def inf_on_call(n):
    calls = {"n": 0}
    real_forward = TrainStep.forward

    def forward(self, *args):
        sums = real_forward(self, *args)
        calls["n"] += 1
        return {k: v * float("inf") for k, v in sums.items()} if calls["n"] in n else sums

    return forward


def test_non_finite_loss_is_skipped_and_counted(data_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(TrainStep, "forward", inf_on_call({2}))
    summary = train_voc.main(tiny_config(data_root, tmp_path))
    assert summary["state"].skipped_steps == 1 and summary["state"].step == 3
    assert all(math.isfinite(v) for v in weights(tmp_path / "last.pth")["head.cls_logits.weight"].flatten().tolist())
    assert "step 1: non-finite loss" in capsys.readouterr().out


def test_only_the_main_process_reports_skipped_steps(data_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(TrainStep, "forward", inf_on_call(set(range(100))))
    monkeypatch.setattr(engine_train, "is_main_process", lambda: False)
    with pytest.raises(NonFiniteLossError):
        train_voc.main(tiny_config(data_root, tmp_path, max_bad_steps=2))
    assert "non-finite loss" not in capsys.readouterr().out


def test_non_finite_losses_in_a_row_are_counted_across_epochs(data_root, tmp_path, monkeypatch):
    """An epoch whose 4 steps were all skipped is not an epoch that ran out of time: the count goes on. The clock
    stands still, so that the budget never runs out however slowly the machine runs the test."""
    monkeypatch.setattr(TrainStep, "forward", inf_on_call(set(range(100))))
    with pytest.raises(NonFiniteLossError, match="6 non-finite losses in a row at step 0"):
        train_voc.main(tiny_config(data_root, tmp_path, epochs=3, max_bad_steps=6, time_budget=10), lambda: 0.0)


def test_non_finite_loss_leaves_weights_and_batchnorm_untouched(data_root):
    model = tiny_model(data_root)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trainer = Trainer(
        step_model=TrainStep(model),
        optimizer=optimizer,
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        base_lr=0.1,
        warmup_steps=1,
        schedule="cosine",
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.full((2, 3, 128, 128), float("nan"))
    losses, applied = trainer.step(
        images, torch.tensor([[[4.0, 4.0, 30.0, 30.0]], [[8.0, 8.0, 60.0, 40.0]]]), torch.tensor([[1], [2]])
    )
    assert not applied and not math.isfinite(losses["total_loss"])
    after = model.state_dict()
    assert any(k.endswith("running_mean") for k in before)
    for k, v in before.items():
        assert torch.equal(v, after[k]), k


def test_repeated_non_finite_losses_stop_training_and_keep_the_good_checkpoint(data_root, tmp_path, monkeypatch):
    train_voc.main(tiny_config(data_root, tmp_path))
    good = weights(tmp_path / "last.pth")
    monkeypatch.setattr(TrainStep, "forward", inf_on_call(set(range(100))))
    with pytest.raises(NonFiniteLossError, match="2 non-finite losses in a row") as err:
        train_voc.main(tiny_config(data_root, tmp_path, epochs=2, max_bad_steps=2, resume=str(tmp_path / "last.pth")))
    assert str(err.value).endswith(f"{tmp_path / 'last.pth'} holds step 4, written before the non-finite losses.")
    kept = weights(tmp_path / "last.pth")
    assert all(torch.equal(good[k], kept[k]) for k in good)
    with pytest.raises(NonFiniteLossError, match="No checkpoint was written.$"):  # it once claimed one intact
        train_voc.main(tiny_config(data_root, tmp_path / "new", max_bad_steps=2))


def test_an_update_that_makes_the_weights_non_finite_never_reaches_a_checkpoint(data_root, tmp_path, monkeypatch):
    """A NaN learning rate once overwrote a good last.pth with NaN weights, the message saying it was intact."""
    train_voc.main(tiny_config(data_root, tmp_path))
    good = weights(tmp_path / "last.pth")
    real_step = torch.optim.SGD.step

    def ruinous_step(self, *args, **kwargs):
        real_step(self, *args, **kwargs)
        self.param_groups[0]["params"][-1].data.fill_(math.nan)

    monkeypatch.setattr(torch.optim.SGD, "step", ruinous_step)
    with pytest.raises(CheckpointError, match=r"last.pth: not written: \d+ tensors hold NaN or infinite values"):
        train_voc.main(tiny_config(data_root, tmp_path, epochs=2, resume=str(tmp_path / "last.pth")))
    kept = weights(tmp_path / "last.pth")
    assert all(torch.equal(good[k], kept[k]) for k in good)


# ---------------------------------------------------------------------------------------------- several devices


def test_data_parallel_step_equals_the_direct_loss(data_root):
    model = tiny_model(data_root).train()
    images, targets = batch()
    boxes, labels = pad_targets(targets)
    assert boxes.shape == (2, 2, 4) and labels.tolist() == [[2, 0], [1, 4]]
    direct = model(images, targets)
    through = reduce_losses(torch.nn.DataParallel(TrainStep(model))(images, boxes, labels))
    for key in direct:
        torch.testing.assert_close(through[key], direct[key])


@pytest.mark.parametrize("reg_weighting", ["none", "centerness"])
def test_positives_are_counted_over_the_whole_batch_not_per_replica(data_root, reg_weighting):
    """Two replicas, one with 1 positive-rich picture and one with an empty one: each must divide by all
    positives of the batch (as one device would), not by its own count (or by 1 when it has none); the box
    loss likewise by the weights of the whole batch."""
    model = tiny_model(data_root).eval()  # BatchNorm as a constant: one picture or two give the same features
    model.config.reg_weighting = reg_weighting
    images, targets = batch()
    targets[1] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    step = TrainStep(model)
    parts = [step(images[i : i + 1], *pad_targets(targets[i : i + 1])) for i in range(2)]
    gathered = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}  # what DataParallel's gather does
    assert gathered["num_positive"][1] == 0 and gathered["num_positive"][0] > 1
    sums = model.loss_sums(images, targets)
    whole = normalise_losses(sums, sums["num_positive"], sums["reg_weight"])
    combined = reduce_losses(gathered)
    for key in whole:
        torch.testing.assert_close(combined[key], whole[key])
    per_replica = sum(p["cls_loss"][0] / p["num_positive"][0].clamp(min=1) for p in parts)
    assert not torch.isclose(per_replica, combined["cls_loss"])


def test_distillation_is_normalised_over_the_whole_batch_as_one_device_would(data_root):
    """As above, with a teacher's outputs scattered with the batch: the replicas' distillation sums and the
    teacher's score weights reduce to what one device computes on the whole batch."""
    model, teacher = tiny_model(data_root).eval(), tiny_model(data_root).eval()
    images, targets = batch()
    outputs = teacher.network(images)
    step = TrainStep(model)
    halves = [(images[i : i + 1], *pad_targets(targets[i : i + 1]), *(o[i : i + 1] for o in outputs)) for i in (0, 1)]
    parts = [step(*half) for half in halves]
    gathered = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    combined = reduce_losses(gathered, distill_weight=0.5)
    sums = model.loss_sums(images, targets, outputs)
    whole = normalise_distillation(sums, sums["num_positive"], sums["teacher_score"])
    assert sums["teacher_score"] > 0 and not torch.isclose(gathered["teacher_score"][0], sums["teacher_score"])
    torch.testing.assert_close(combined["distill_loss"], whole)
    plain = normalise_losses(sums, sums["num_positive"], sums["reg_weight"])
    torch.testing.assert_close(combined["total_loss"], plain["total_loss"] + 0.5 * whole)


def test_distillation_at_weight_0_trains_exactly_as_without_a_teacher(data_root, tmp_path):
    teacher = tmp_path / "teacher"
    train_voc.main(tiny_config(data_root, teacher, seed=5))
    train_voc.main(tiny_config(data_root, tmp_path / "alone"))
    train_voc.main(tiny_config(data_root, tmp_path / "w0", distill_from=str(teacher / "last.pth"), distill_weight=0.0))
    train_voc.main(tiny_config(data_root, tmp_path / "w1", distill_from=str(teacher / "last.pth")))
    alone, w0, w1 = (weights(tmp_path / run / "last.pth") for run in ("alone", "w0", "w1"))
    assert all(torch.equal(alone[k], w0[k]) for k in alone)
    assert not all(torch.equal(alone[k], w1[k]) for k in alone)
    header = (tmp_path / "alone" / "log.csv").read_text().splitlines()[0]
    assert header == "step,epoch,cls_loss,cnt_loss,reg_loss,total_loss,lr,time"
    with open(tmp_path / "w1" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(0 < float(r["distill_loss"]) < math.inf for r in rows)
    assert load(tmp_path / "w1" / "last.pth")["train_config"]["distill_from"] == str(teacher / "last.pth")


def test_a_run_resumed_with_a_teacher_and_resumed_again_keeps_its_log(data_root, tmp_path):
    """The rows written before the teacher joined have no distill_loss; resuming reads them back all the same."""
    train_voc.main(tiny_config(data_root, tmp_path))
    teacher = tmp_path / "teacher.pth"
    teacher.write_bytes((tmp_path / "last.pth").read_bytes())
    for epochs in (2, 3):
        resumed = tiny_config(data_root, tmp_path, epochs=epochs, resume=str(tmp_path / "last.pth"))
        train_voc.main(replace(resumed, distill_from=str(teacher)))
    with open(tmp_path / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(1, 13))
    assert [r["distill_loss"] == "" for r in rows] == [True] * 4 + [False] * 8
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_teacher_that_does_not_fit_is_a_usage_error(data_root, tmp_path, capsys):
    train_voc.main(tiny_config(data_root, tmp_path))
    other = load(tmp_path / "last.pth")
    other["config"]["classes"] = other["classes"] = ["nail", "clip_B", "clip_Y", "wrench"]
    torch.save(other, tmp_path / "other.pth")
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    for teacher, message in (
        (tmp_path / "missing.pth", "missing.pth: checkpoint not found"),
        (tmp_path / "notes.pth", "--distill-from: .*notes.pth: "),
        (
            tmp_path / "other.pth",
            "--distill-from .*other.pth: its classes: .*'wrench'.*, the model's: .*'L_stick'",
        ),
    ):
        with pytest.raises(SystemExit):
            train_voc.parse_config(["--data-root", str(data_root), "--distill-from", str(teacher)])
        assert re.search(message, capsys.readouterr().err)


def test_each_replica_thread_computes_in_the_chosen_dtype(data_root):
    """DataParallel runs replicas in threads and re-enters autocast with `enabled` only; the thread's
    default dtype (float16 on CUDA; here set to float16 for the CPU) must not replace the one chosen."""
    model = tiny_model(data_root).train()
    images, targets = batch()
    boxes, labels = pad_targets(targets)
    seen = []
    model.head.cls_logits.register_forward_hook(lambda m, i, out: seen.append(out.dtype))

    def replica(step):
        torch.set_autocast_dtype("cpu", torch.float16)  # the thread's default, as CUDA's is
        with torch.autocast("cpu", enabled=True):  # what parallel_apply does in each replica thread
            step(images, boxes, labels)

    for amp, expected in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        seen.clear()
        thread = threading.Thread(target=replica, args=(TrainStep(model, amp),))
        thread.start()
        thread.join()
        assert seen and all(dtype == expected for dtype in seen), (amp, seen)


def test_ddp_ranks_draw_their_own_augmentation(data_root):
    """Shuffling is shared by the processes (each takes its share); the augmentation each draws is its own."""
    dataset = VOCDataset(
        data_root, "train", FOD, train=True, resize_size=(128, 224), crop_size=(64, 64), augment=("flip", "photo")
    )
    draws = {}
    for rank in (0, 1):
        loader = make_train_loader(dataset, 2, workers=1, seed=0, rank=rank, world_size=2)
        start_epoch(loader, 0, epoch=1, rank=rank)
        draws[rank] = torch.initial_seed(), next(iter(loader))[0]
        start_epoch(loader, 0, epoch=1, rank=rank)
        assert torch.equal(next(iter(loader))[0], draws[rank][1])  # the same epoch draws the same again
    assert draws[0][0] != draws[1][0]
    assert sorted(loader.sampler) != sorted(
        make_train_loader(dataset, 2, workers=1, seed=0, rank=0, world_size=2).sampler
    )  # disjoint shares


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world_size, port, data_root, output_dir, teacher):
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    summary = train_voc.main(tiny_config(data_root, output_dir, batch_size=2, distill_from=teacher))
    sums = {
        "cls_loss": torch.tensor([3.0 * (rank + 1)]),
        "cnt_loss": torch.tensor([1.0]),
        "reg_loss": torch.tensor([2.0]),
        "num_positive": torch.tensor([4.0 if rank == 0 else 0.0]),
        "reg_weight": torch.tensor([1.0 if rank == 0 else 5.0]),
        "distill_cls": torch.tensor([2.0 * (rank + 1)]),
        "distill_cnt": torch.tensor([1.0]),
        "distill_reg": torch.tensor([3.0]),
        "teacher_score": torch.tensor([0.5 if rank == 0 else 1.5]),
    }
    torch.save(
        {"params": dict(summary["model"].named_parameters()), "losses": reduce_losses(sums, distill_weight=2.0)},
        os.path.join(output_dir, f"rank{rank}.pt"),
    )
    torch.distributed.destroy_process_group()


def test_ddp_two_processes_end_with_equal_weights(data_root, tmp_path):
    """Two processes learning from a teacher too (each runs its own on its share of the batch)."""
    teacher = tmp_path / "teacher"
    train_voc.main(tiny_config(data_root, teacher, seed=5))
    args = (2, _free_port(), str(data_root), str(tmp_path), str(teacher / "last.pth"))
    mp.spawn(_ddp_worker, args=args, nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    initial = dict(tiny_model(data_root).named_parameters())
    assert not torch.equal(a["params"]["head.cls_logits.weight"], initial["head.cls_logits.weight"])
    assert all(torch.equal(a["params"][k], b["params"][k]) for k in a["params"])
    checkpoint = load(tmp_path / "last.pth")
    assert checkpoint["step"] == 2  # 8 pictures, 2 processes x 2 a step
    assert all(torch.equal(a["params"][k], checkpoint["model"][k]) for k in a["params"])
    # 4 positives in all, 2 a process: DDP's mean of the gradients is then the sum over processes / 4
    assert a["losses"]["cls_loss"].item() == pytest.approx(3.0 / 2) and b["losses"]["cls_loss"].item() == pytest.approx(
        6.0 / 2
    )
    # the box loss by the GIoU losses' weights over both processes, 6 in all: 3 a process
    assert a["losses"]["reg_loss"].item() == pytest.approx(2.0 / 3) == b["losses"]["reg_loss"].item()
    # distillation: classification by the positives (2 a process), centerness and boxes by the teacher's score
    # weights over both processes (2 in all: 1 a process), the sum into the total at weight 2
    assert a["losses"]["distill_loss"].item() == pytest.approx(2.0 / 2 + 4.0 / 1)
    assert b["losses"]["distill_loss"].item() == pytest.approx(4.0 / 2 + 4.0 / 1)
    total = a["losses"]["cls_loss"] + a["losses"]["cnt_loss"] + a["losses"]["reg_loss"] + 2.0 * 5.0
    assert a["losses"]["total_loss"].item() == pytest.approx(total.item())
    assert "distill_loss" in (tmp_path / "log.csv").read_text().splitlines()[0]


# ---------------------------------------------------------------------------------------------- evaluation


def test_crop_training_checkpoint_evaluates_full_pictures(data_root, tmp_path):
    """Trained on 64x64 crops of 128x224 pictures; the checkpoint says both, and evaluation sees whole pictures."""
    from engine.checkpoint import load_detector
    from engine.inference import eval_loader

    train_voc.main(tiny_config(data_root, tmp_path, crop=(64, 64)))
    model, checkpoint = load_detector(tmp_path / "last.pth")
    assert checkpoint["train_config"]["crop"] == [64, 64] and tuple(checkpoint["config"]["resize_size"]) == (128, 224)
    dataset = VOCDataset(data_root, "val", model.config.classes, resize_size=model.config.resize_size)
    images, targets = next(iter(eval_loader(dataset, 2, 0, "cpu")))
    assert images.shape[-2:] == (128, 224) and all(t["offset"].tolist() == [0.0, 0.0] for t in targets)


def test_periodic_validation_keeps_best_and_the_final_thresholds_are_stored(data_root, tmp_path, capsys):
    args = tiny_config(data_root, tmp_path, epochs=2, val_every=1, ema=True, final_eval=True)
    summary = train_voc.main(args)
    header, *rows = (tmp_path / "val_log.csv").read_text().splitlines()
    assert header == "epoch,step,map,nail,clip_B,clip_Y,L_stick"
    assert [row.split(",")[:2] for row in rows] == [["1", "4"], ["2", "8"]]
    assert load(tmp_path / "best.pth")["state"]["best_map"] == max(float(row.split(",")[2]) for row in rows)
    assert "epoch 2: val mAP" in capsys.readouterr().out
    stored = load(tmp_path / "last.pth")["thresholds"]
    assert stored == summary["thresholds"] and set(stored) == set(FOD)
    assert (tmp_path / "val.png").stat().st_size > 0 and summary["stopped"] is None
    written = json.loads((tmp_path / "detections.json").read_text())  # the final evaluation's detections
    rescored = evaluate_detections(written, load_ground_truth(data_root, "val", FOD), FOD)
    assert rescored["ap"] == pytest.approx(summary["result"]["ap"], nan_ok=True)


def scored(maps):
    """A Run.evaluate that gives these mAPs in turn (the rest of the result as a real one would be)."""
    real, calls = Run.evaluate, iter(maps)

    def evaluate(self, progress=True):
        result, detections = real(self, progress)
        return {**result, "map": next(calls)}, detections

    return evaluate


def test_patience_stops_after_validations_without_a_better_map(data_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(Run, "evaluate", scored([0.5, 0.6, 0.55, 0.6, 0.9, 0.9]))
    summary = train_voc.main(tiny_config(data_root, tmp_path, epochs=6, val_every=1, patience=2))
    assert summary["stopped"] == "stopped early: 2 validations without a better mAP than 0.6000 (best.pth)"
    assert (summary["state"].epoch, summary["state"].step) == (4, 16)
    assert load(tmp_path / "best.pth")["step"] == 8 and load(tmp_path / "last.pth")["state"]["total_steps"] == 16
    assert summary["stopped"] in capsys.readouterr().out
    last = str(tmp_path / "last.pth")
    again = train_voc.main(tiny_config(data_root, tmp_path, epochs=6, val_every=1, patience=2, resume=last))
    assert again["state"].step == 16 and "To go on, pass a larger --patience" in capsys.readouterr().out
    scored_now = train_voc.main(  # with the final evaluation it had not had: scored, and still stopped early
        tiny_config(data_root, tmp_path, epochs=6, val_every=1, patience=2, resume=last, final_eval=True)
    )
    assert scored_now["stopped"] == summary["stopped"] == json.loads((tmp_path / "results.json").read_text())["stopped"]


def test_tensorboard_events_read_back(data_root, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_voc.main(tiny_config(data_root, tmp_path, epochs=2, val_every=1, tensorboard=True))
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"loss/total_loss", "loss/cls_loss", "lr", "pictures_per_second", "val/mAP", "val/AP/nail"} <= set(
        tags["scalars"]
    )
    assert [e.step for e in events.Scalars("loss/total_loss")] == list(range(1, 9))
    logged = [round(e.value, 4) for e in events.Scalars("loss/total_loss")]
    csv_rows = (tmp_path / "log.csv").read_text().splitlines()[1:]
    assert logged == [round(float(row.split(",")[5]), 4) for row in csv_rows]
    assert [e.step for e in events.Scalars("val/mAP")] == [4, 8]
    pictures = [tag for tag in tags["images"] if tag.startswith("val/")]
    assert len(pictures) == 2 and events.Images(pictures[0])[0].width == 640


def test_tensorboard_missing_says_how_to_install(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(SystemExit):
        train_voc.parse_config(["--tensorboard"])
    assert "--tensorboard needs the tensorboard package: pip install -r requirements-tensorboard.txt" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        train_voc.parse_config(["--patience", "3"])
    assert "--patience counts validations: it needs --val-every N" in capsys.readouterr().err


def test_ema_averages_with_a_ramped_decay(data_root):
    model = tiny_model(data_root)
    ema = make_ema(model, decay=0.999)
    first = {k: v.clone() for k, v in model.state_dict().items()}
    ema.update_parameters(model)  # the first update copies
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update_parameters(model)  # n = 1: decay min(0.999, 2 / 11)
    name = "head.cls_logits.weight"
    expected = first[name] + (1 - 2 / 11)
    torch.testing.assert_close(ema.module.state_dict()[name], expected)


def test_the_average_leaves_the_trained_weights_as_they_are_without_it(data_root, tmp_path):
    """So a run with --ema scored with eval_voc.py --no-ema is the run without --ema, and the two are paired."""
    common = {"augment": ("flip", "color"), "scale_jitter": 1.3}
    train_voc.main(tiny_config(data_root, tmp_path / "plain", **common))
    train_voc.main(tiny_config(data_root, tmp_path / "averaged", ema=True, **common))
    plain, averaged = load(tmp_path / "plain" / "last.pth"), load(tmp_path / "averaged" / "last.pth")
    assert all(torch.equal(plain["model"][k], averaged["model"][k]) for k in plain["model"])
    assert not torch.equal(averaged["ema"]["head.cls_logits.weight"], averaged["model"]["head.cls_logits.weight"])
    scored = {
        flag: load_detector(tmp_path / "averaged" / "last.pth", averaged=flag)[0].state_dict() for flag in (True, False)
    }
    assert all(torch.equal(scored[False][k], plain["model"][k]) for k in plain["model"])
    assert all(torch.equal(scored[True][k], averaged["ema"][k]) for k in averaged["ema"])
    argv = ["--detections", str(tmp_path / "d.json"), "--data-root", str(data_root), "--no-ema"]
    with pytest.raises(ValueError, match="--no-ema picks the weights of a checkpoint .*: it needs --checkpoint"):
        eval_voc.main(eval_voc.get_args_parser().parse_args(argv))


def test_amp_auto_on_a_cpu_follows_amx_or_a_timed_probe(monkeypatch):
    from engine import amp

    monkeypatch.setattr(amp, "cpu_has_amx", lambda: True)
    amx = ("bf16", "the CPU has AMX tiles, which compute bfloat16 natively")
    assert amp.resolve_amp("auto", "cpu", "resnet50") == amx
    monkeypatch.setattr(amp, "cpu_has_amx", lambda: False)
    monkeypatch.setattr(amp, "cpu_bf16_speedup", lambda: 1.8)
    picked, why = amp.resolve_amp("auto", "cpu", "resnet50")
    assert picked == "bf16" and "1.80x as fast" in why
    monkeypatch.setattr(amp, "cpu_bf16_speedup", lambda: 0.81)  # a Xeon without AMX: bfloat16 is slower
    assert amp.resolve_amp("auto", "cpu", "resnet50")[0] == "off"
    assert amp.resolve_amp("fp16", "cpu", "resnet50") == ("fp16", "as asked")
    with pytest.raises(ValueError, match="--amp must be one of"):
        amp.resolve_amp("half", "cpu", "resnet50")


def test_amp_auto_keeps_efficientnet_trunks_in_float32_on_every_cpu(monkeypatch):
    """Their depthwise convolutions ran slower in bfloat16 where the probe's plain convolution ran 1.83x faster."""
    from engine import amp

    monkeypatch.setattr(amp, "cpu_bf16_speedup", lambda: 1.83)
    for has_amx in (False, True):
        monkeypatch.setattr(amp, "cpu_has_amx", lambda has_amx=has_amx: has_amx)
        for trunk in ("efficientnet_lite0", "efficientnet_lite2"):
            assert amp.resolve_amp("auto", "cpu", trunk)[0] == "off"
        assert amp.resolve_amp("auto", "cpu", "resnet18")[0] == "bf16"
    assert amp.resolve_amp("bf16", "cpu", "efficientnet_lite0") == ("bf16", "as asked")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert amp.resolve_amp("auto", "cuda", "efficientnet_lite0")[0] == "bf16"


def test_training_resolves_amp_auto_for_the_trunk_it_trains(data_root, tmp_path, monkeypatch, capsys):
    from engine import amp

    monkeypatch.setattr(amp, "cpu_bf16_speedup", lambda: 1.83)
    train_voc.main(tiny_config(data_root, tmp_path, steps=1, save_every=0, amp="auto", **LITE0))
    assert "amp off (bfloat16 was not faster than float32 for every EfficientNet-Lite trunk" in " ".join(
        capsys.readouterr().out.split()
    )


def test_the_bf16_probe_times_both_precisions():
    from engine import amp

    amp.cpu_bf16_speedup.cache_clear()
    speedup = amp.cpu_bf16_speedup()
    assert 0.05 < speedup < 20 and amp.cpu_bf16_speedup() == speedup  # measured once a process


def test_the_teacher_runs_in_the_precision_and_memory_format_of_its_own_trunk(data_root, tmp_path, monkeypatch):
    """A ResNet18 teacher of a Lite0 model, on a CPU made to look as if it had AMX and AVX2 only: under --amp auto
    and --channels-last auto the teacher runs in bfloat16 and channels-first, as a ResNet trains there, where the
    Lite0 model stays in float32 and channels-last; a choice asked for holds for both."""
    train_voc.main(tiny_config(data_root, tmp_path))
    monkeypatch.setattr(amp_policy, "cpu_has_amx", lambda: True)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    student_config = tiny_config(data_root, "unused", backbone="efficientnet_lite0", pretrained="none")
    student = build_model(student_config, FOD)
    config = replace(student_config, distill_from=str(tmp_path / "last.pth"))
    assert resolve_amp("auto", "cpu", "efficientnet_lite0")[0] == "off"
    assert resolve_channels_last("auto", "cpu", "efficientnet_lite0")[0]
    teacher = teacher_of(replace(config, amp="auto", channels_last="auto"), student)
    assert teacher.model.config.backbone == "resnet18"
    assert (teacher.amp, teacher.model.channels_last) == ("bf16", False)
    teacher = teacher_of(replace(config, amp="off", channels_last="on"), student)
    assert (teacher.amp, teacher.model.channels_last) == ("off", True)
