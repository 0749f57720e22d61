"""The ablation table: means, spreads and differences paired by seed, from the runs' results.json."""

import argparse
import json
from pathlib import Path

from benchmarks import ablate
from benchmarks.ablate import table


def write_run(out: Path, variant: str, seed: int, mean_ap: float, clip_y: float) -> None:
    folder = out / variant / f"seed{seed}"
    folder.mkdir(parents=True)
    results = {
        "map": mean_ap,
        "ap": {"nail": 0.5, "clip_Y": clip_y},
        "steps": 100,
        "train_minutes": 2.0,
        "seconds_per_step": 1.2,
    }
    (folder / "results.json").write_text(json.dumps(results))


def row(text: str, variant: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {variant} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_table_pairs_runs_by_seed(tmp_path):
    write_run(tmp_path, "baseline", 0, 0.80, 0.6)
    write_run(tmp_path, "baseline", 1, 0.70, 0.4)
    write_run(tmp_path, "ema", 0, 0.75, 0.5)
    write_run(tmp_path, "ema", 1, 0.72, 0.3)
    text = table(tmp_path, ["baseline", "ema"])
    assert row(text, "ema") == ["ema", "2", "0.735", "0.030", "-0.015", "0.500", "0.400", "100", "2.0", "1.20"]
    assert row(text, "baseline")[:5] == ["baseline", "2", "0.750", "0.100", "+0.000"]


def test_table_without_a_baseline_leaves_the_difference_out(tmp_path):
    write_run(tmp_path, "ema", 0, 0.75, 0.5)
    text = table(tmp_path, ["baseline", "ema"])
    assert row(text, "ema")[:5] == ["ema", "1", "0.750", "0.000", "-"]
    assert "| baseline |" not in text


def test_a_variants_flag_wins_over_the_changes_made_to_every_run(tmp_path, monkeypatch):
    """``-- --backbone efficientnet_lite0`` once replaced the ``lite1`` variant's own --backbone."""
    trained = []
    monkeypatch.setattr(ablate.train_voc, "main", lambda args: trained.append(args))
    extra = ["--backbone", "efficientnet_lite0", "--normalization", "tf"]
    args = argparse.Namespace(out=str(tmp_path), preset="fod-cpu", data_root="data", split="val", steps=3, extra=extra)
    assert ablate.run_variant("lite1", 0, args) is None  # no results.json: the stub trained nothing
    (run,) = trained
    assert (run.backbone, run.normalization, run.steps, run.seed) == ("efficientnet_lite1", "tf", 3, 0)
    assert (run.augment, run.crop, run.lr) == (("flip", "paste"), (320, 320), 0.01)  # the preset's, as they are
