"""benchmarks/gpu_fod.py end to end on the CPU with --tiny: the report a GPU run writes, from the fod-gpu recipe."""

import json
import subprocess
import sys
from pathlib import Path

from dataset.synthetic import generate
from engine.recipes import PRESETS

REPO = Path(__file__).resolve().parents[1]


def test_the_gpu_recipe_trains_from_scratch_scaled_from_the_cpu_one():
    args = PRESETS["fod-gpu"]
    assert (args.pretrained, args.crop, args.schedule, args.amp, args.cache) == (
        "none",
        (512, 512),
        "cosine",
        "auto",
        True,
    )
    assert args.learning_rate(args.batch_size) == 0.08  # the CPU recipe's 0.02 at 8 pictures, linearly


def test_tiny_run_writes_the_report(tmp_path):
    generate(tmp_path / "data", {"train": 4, "val": 2}, seed=5, size=(144, 256))
    out = tmp_path / "out"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.gpu_fod",
            "--tiny",
            "--data-root",
            str(tmp_path / "data"),
            "--out",
            str(out),
            "--train-minutes",
            "0.1",
            "--workers",
            "0",
            "--full-res-steps",
            "1",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    results = json.loads((out / "results.json").read_text())
    fod = results["fod-gpu"]
    assert set(fod["ap"]) == {"nail", "clip_B", "clip_Y", "L_stick"} and 0.0 <= fod["map"] <= 1.0
    assert fod["train_steps"] >= 1 and fod["val_images"] == 2 and fod["inference_images_per_second"] > 0
    assert results["full_res"]["size"] == [144, 256] and results["full_res"]["images_per_second"] > 0
    assert "**mAP**" in (out / "results.md").read_text()
    assert sorted(p.name for p in (out / "checkpoint").glob("*.pth")) == ["last.pth"]
