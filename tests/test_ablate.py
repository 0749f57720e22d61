"""The ablation table: means, spreads and differences paired by seed, from the runs' results.json."""

import json
from pathlib import Path

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
