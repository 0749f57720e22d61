"""Ablations: one change at a time against a recipe, several seeds each, summarised as mean and spread.

    python -m benchmarks.ablate --data-root ../shared/foreign_object_dataset --steps 600 --seeds 0 1
    python -m benchmarks.ablate --data-root DIR --only baseline,photo,ema --seeds 0 1 2
    python -m benchmarks.ablate --out runs/ablate --table          # the table of what has run so far

Every run is ``train_voc.py --preset <preset> --steps N --seed S`` with the variant's change (run in this
process, its output in ``<out>/<variant>/seed<S>.log``), into
``<out>/<variant>/seed<S>/`` (its ``results.json`` holds mAP, per-class AP, steps and minutes). A run whose
results exist is not run again, so an interrupted sweep continues where it stopped. Variants that only
change the evaluation (no test-time flip) score the ``baseline`` checkpoints again instead of training.
Steps, not minutes, fix each run's length: every variant gets the same number of updates whatever the
machine's speed, and the minutes column says what they cost.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import eval_voc
import train_voc
from engine.recipes import PRESETS

# name -> (the change to the training config, eval_voc.py flags that only change the scoring); one change each
VARIANTS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "baseline": ({}, []),
    "color": ({"augment": ("flip", "color")}, []),
    "photo": ({"augment": ("flip", "photo")}, []),
    "blur-noise": ({"augment": ("flip", "blur", "noise")}, []),
    "rotate": ({"augment": ("flip", "rotate")}, []),
    "paste": ({"augment": ("flip", "paste")}, []),
    "no-paste": ({"augment": ("flip",)}, []),
    "scale-jitter": ({"scale_jitter": 1.25}, []),
    "resize-922": ({"resize": (922, 1640)}, []),
    "resize-1440": ({"resize": (1440, 2560)}, []),
    # the full pictures with every size range doubled: objects stay on the levels they have at 720x1280
    "resize-1440-ranges": ({"resize": (1440, 2560), "size_ranges": (128.0, 256.0, 512.0, 1024.0)}, []),
    "crop-256": ({"crop": (256, 256)}, []),
    "crop-448": ({"crop": (448, 448)}, []),
    "background": ({"background_crops": 0.2}, []),
    "ema": ({"ema": True}, []),
    "no-tta": ({}, ["--no-tta"]),
    "resnet34": ({"backbone": "resnet34"}, []),
    "fpn-64": ({"fpn_channels": 64}, []),
    "fpn-256": ({"fpn_channels": 256}, []),
    # against the pretrained recipe (fod-cpu)
    "lr-0.005": ({"lr": 0.005}, []),
    "lr-0.02": ({"lr": 0.02}, []),
    "lite0": ({"backbone": "efficientnet_lite0"}, []),
    "lite1": ({"backbone": "efficientnet_lite1"}, []),
    "lite2": ({"backbone": "efficientnet_lite2"}, []),
    "frozen-0": ({"frozen_stages": 0}, []),
    "frozen-2": ({"frozen_stages": 2}, []),
    "frozen-3": ({"frozen_stages": 3}, []),
    "norm-imagenet": ({"normalization": "imagenet"}, []),
    "norm-tf": ({"normalization": "tf"}, []),
    "flip-color-rotate": ({"augment": ("flip", "color", "rotate")}, []),
}


def run_variant(name: str, seed: int, args: argparse.Namespace) -> dict | None:
    """The variant's results.json, training (or scoring the baseline's model) first when it has none."""
    changes, eval_flags = VARIANTS[name]
    out = Path(args.out) / name / f"seed{seed}"
    results = out / "results.json"
    if results.is_file():
        return json.loads(results.read_text())
    out.mkdir(parents=True, exist_ok=True)
    if eval_flags and not changes:  # score the baseline's model another way
        base = Path(args.out) / "baseline" / f"seed{seed}"
        if run_variant("baseline", seed, args) is None:
            return None
        argv = ["--checkpoint", str(base / "last.pth"), "--data-root", args.data_root, "--split", args.split]
        with logged(out.parent / f"seed{seed}.log"):
            scored = eval_voc.main(eval_voc.get_args_parser().parse_args([*argv, "--batch-size", "4", *eval_flags]))
        base_results = json.loads((base / "results.json").read_text())
        results.write_text(
            json.dumps({**base_results, "map": scored["map"], "ap": scored["ap"], "eval_flags": eval_flags}, indent=2)
        )
        return json.loads(results.read_text())
    config = train_voc.parse_config(["--preset", args.preset, *args.extra]).override(
        data_root=args.data_root,
        val_split=args.split,
        steps=args.steps,
        seed=seed,
        output_dir=str(out),
        save_every=0,
        **changes,
    )
    print(f"{name} seed {seed}: {config.changes(PRESETS[args.preset])}", flush=True)
    try:
        with logged(out.parent / f"seed{seed}.log"):
            train_voc.main(config)
    except Exception as err:  # one failed run is reported and the sweep goes on
        print(f"{name} seed {seed}: {type(err).__name__}: {err}", flush=True)
    return json.loads(results.read_text()) if results.is_file() else None


@contextlib.contextmanager
def logged(path: Path) -> Iterator[None]:
    """What a run prints, its progress bars included, goes to ``path`` instead of the terminal."""
    with open(path, "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield


def load_runs(out: Path, name: str) -> dict[str, dict]:
    """seed folder name -> results.json of the variant's finished runs."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted((out / name).glob("seed*/results.json"))}


def table(out: Path, names: list[str]) -> str:
    """Markdown: per variant the mean mAP over seeds, its spread (max - min), the mean difference to ``baseline``
    run with the same seeds (same initialisation and picture order, "-" without one), per-class mean AP, steps
    and minutes. The pairing holds only for runs with the same loader workers: each worker draws its own crops."""
    runs = {name: load_runs(out, name) for name in names}
    base = load_runs(out, "baseline")
    rows = [
        "| variant | runs | mAP mean | spread | vs baseline, same seeds | nail | clip_B | clip_Y | L_stick | steps "
        "| minutes | s/step |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, found in runs.items():
        if not found:
            continue
        maps = [r["map"] for r in found.values()]
        paired = [r["map"] - base[seed]["map"] for seed, r in found.items() if seed in base]
        per_class = {c: statistics.fmean(r["ap"][c] for r in found.values()) for c in next(iter(found.values()))["ap"]}
        rows.append(
            f"| {name} | {len(found)} | {statistics.fmean(maps):.3f} | {max(maps) - min(maps):.3f} | "
            + (f"{statistics.fmean(paired):+.3f} | " if paired else "- | ")
            + " | ".join(f"{v:.3f}" for v in per_class.values())
            + f" | {statistics.fmean(r['steps'] for r in found.values()):.0f}"
            f" | {statistics.fmean(r['train_minutes'] for r in found.values()):.1f}"
            f" | {statistics.fmean(r['seconds_per_step'] for r in found.values()):.2f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--data-root", default="foreign_object_dataset", help="VOC-layout data set")
    parser.add_argument("--split", default="val", help="the split every run is scored on")
    parser.add_argument("--preset", default="fod-cpu", help="the recipe the variants change")
    parser.add_argument("--steps", type=int, default=600, help="optimizer steps of every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one run per seed and variant")
    parser.add_argument("--only", help="comma list of variants (default: all, in the order of the table)")
    parser.add_argument("--out", default="runs/ablate", help="one folder per variant and seed")
    parser.add_argument("--table", action="store_true", help="only print the table of the runs done")
    parser.add_argument("extra", nargs="*", help="changes to the preset for every run, after --; a variant's flags win")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if not args.table:
        for name in names:  # each variant's seeds together, so that an interrupted sweep leaves whole rows
            for seed in args.seeds:
                if run_variant(name, seed, args) is None:
                    print(f"{name} seed {seed}: failed, see {Path(args.out) / name / f'seed{seed}.log'}", flush=True)
    print(table(Path(args.out), names))


if __name__ == "__main__":
    main()
