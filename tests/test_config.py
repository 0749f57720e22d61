"""engine/config.py and train_voc.py's flags: every value checked when the arguments are parsed, the flag named."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import train_voc
from engine.checkpoint import save_checkpoint
from engine.config import BASE, TrainConfig, flag_fields
from engine.recipes import PRESETS
from model import FCOSConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "nan"], "--lr must be a finite number above 0, got nan"),
        (["--lr", "-0.01"], "--lr must be a finite number above 0, got -0.01"),  # not the scaled -0.0025
        (["--preset", "fod", "--lr", "inf"], "--lr must be a finite number above 0, got inf"),
        (["--steps", "0"], "--steps must be a whole number of at least 1, got 0"),  # once trained --epochs
        (["--steps", "-1"], "--steps must be a whole number of at least 1, got -1"),  # once exited 0
        (["--epochs", "0"], "--epochs must be a whole number of at least 1, got 0"),
        (["--batch-size", "0"], "--batch-size must be a whole number of at least 1, got 0"),
        (["--workers", "-2"], "--workers must be a whole number of at least 0, got -2"),
        (["--time-budget", "-5"], "--time-budget must be a finite number in [0, inf], got -5.0"),
        (["--momentum", "1.5"], "--momentum must be a finite number in [0, 1], got 1.5"),
        (["--clip-grad-norm", "0"], "--clip-grad-norm must be a finite number above 0, got 0.0"),
        (["--augment", "flip,sharpen"], "--augment: unknown sharpen"),
        (["--fpn-channels", "100"], "--fpn-channels must be a multiple of 32 (the head's GroupNorm groups), got 100"),
        (["--lr-steps", "90", "70"], "--lr-steps must be increasing epochs of at least 1, got [90, 70]"),
        (["--size-ranges", "64", "32", "256", "512"], "--size-ranges must be 4 increasing positive numbers"),
        (
            ["--preset", "demo", "--crop", "480x480"],
            "--crop 480x480 does not fit in a picture resized to --resize 360x640",
        ),
    ],
)
def test_bad_values_are_refused_at_parse_time_naming_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        train_voc.parse_config(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_the_command_line_says_it_in_one_line_before_loading_anything(tmp_path):
    """``--lr nan`` once trained and overwrote a good last.pth with NaN weights."""
    done = subprocess.run(
        [sys.executable, "train_voc.py", "--data-root", str(tmp_path / "nowhere"), "--lr", "nan"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines()[-1] == "train_voc.py: error: --lr must be a finite number above 0, got nan"


def test_configs_made_in_code_are_checked_too():
    with pytest.raises(ValueError, match="--batch-size must be a whole number of at least 1, got 0"):
        replace(BASE, batch_size=0)
    with pytest.raises(ValueError, match="--backbone must be one of"):
        TrainConfig(backbone="resnet5")
    with pytest.raises(ValueError, match="--steps must be a whole number"):
        TrainConfig(steps=2.5)


def test_every_preset_is_valid_and_every_flag_is_a_field():
    assert all(isinstance(p, TrainConfig) for p in PRESETS.values())
    parser = train_voc.get_args_parser()
    flags = {o for action in parser._actions for o in action.option_strings}
    for field in flag_fields():
        assert "--" + field.name.replace("_", "-") in flags, field.name


def test_the_length_rule_in_the_configs_terms():
    fod_cpu = PRESETS["fod-cpu"]
    assert fod_cpu.override(epochs=5).steps is None  # a typed length replaces the preset's
    assert fod_cpu.override(lr=0.02).steps == 1000
    budgeted = PRESETS["fod-cpu-scratch"].override(time_budget=10.0)
    assert (budgeted.epochs, budgeted.time_budget) == (1000, 10.0)
    assert fod_cpu.planned_steps(34) == 1000 and PRESETS["fod"].planned_steps(34) == 3400


def test_model_flags_beside_resume_must_match_the_checkpoint(tmp_path, capsys):
    """``--resume r18/last.pth --backbone efficientnet_lite0 --fpn-channels 128`` once trained the ResNet18."""
    checkpoint = tmp_path / "last.pth"
    stored = FCOSConfig(backbone="resnet18", fpn_channels=32, head_convs=1)
    save_checkpoint({"model": {}, "config": stored.to_dict()}, checkpoint)
    with pytest.raises(SystemExit):
        train_voc.parse_config(
            ["--resume", str(checkpoint), "--backbone", "efficientnet_lite0", "--fpn-channels", "128", "--lr", "0.1"]
        )
    assert (
        "--backbone efficientnet_lite0 (the checkpoint's: resnet18); --fpn-channels 128 (the checkpoint's: 32): "
        f"a resumed run trains the model of {checkpoint}" in capsys.readouterr().err
    )
    same = ["--resume", str(checkpoint), "--backbone", "resnet18", "--fpn-channels", "32", "--head-convs", "1"]
    assert train_voc.parse_config(same).backbone == "resnet18"  # the command repeated with --resume
    assert train_voc.parse_config(["--resume", str(checkpoint), "--steps", "5"]).steps == 5  # untyped: no word
    with pytest.raises(SystemExit):
        train_voc.parse_config(["--resume", str(tmp_path / "none.pth"), "--backbone", "resnet18"])
    assert "none.pth: checkpoint not found" in capsys.readouterr().err
