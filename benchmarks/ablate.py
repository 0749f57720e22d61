r"""Ablations: one change at a time against a recipe, several seeds each, summarised as mean and spread.

    python -m benchmarks.ablate --data-root ../shared/foreign_object_dataset --steps 600 --seeds 0 1
    python -m benchmarks.ablate --data-root DIR --only baseline,photo,ema --seeds 0 1 2    # at the preset's steps
    python -m benchmarks.ablate --out runs/ablate --steps 600 --table      # the table of what has run so far

Every run is ``train_voc.py --preset <preset> --steps N --seed S`` (N the preset's unless given) with the
variant's change (run in this process, its output in ``<out>/<variant>/seed<S>.log``), into
``<out>/<variant>/seed<S>/`` (its ``results.json`` holds mAP, per-class AP, steps and minutes). A run whose
results exist is not run again, so an interrupted sweep continues where it stopped; a run made with other
settings than the variant gives now (a preset changed since) is refused, naming them, not taken for it, and so
is it in ``--table``. A signal (Ctrl-C, ``kill``) stops the run in progress with its ``last.pth`` kept and ends
the sweep; the same command resumes that run from it. Variants that only change the evaluation (no test-time
flip, more scales) score the ``baseline`` checkpoints again instead of training; ``ema-trained`` scores the
``ema`` checkpoints by the weights they trained rather than their average: the average changes no step, so those
are the baseline's (bit for bit where training is deterministic, as on a CPU), and ``--versus ema-trained``
pairs the average with its own weights, and the other variants with the baseline, without training one. Steps,
not minutes, fix each run's length: every variant gets the same number of updates whatever the machine's speed,
and the minutes column says what they cost.

Cross-validation (``--folds K``, ``--folds`` alone is 5) measures on every labelled picture instead of one small
``val``: the pictures of train and val are divided into K folds that keep each cluster of near-duplicates whole
(:mod:`dataset.folds`, written once into ``<out>/cv<K>/`` and checked as ``dataset.voc --check-split`` does),
and every run becomes K runs, each trained on K-1 folds and scored on the one left out, into
``<out>/<variant>/cv<K>/seed<S>/fold<i>/`` with its test pictures' detections in ``detections.json``. The table
scores all folds' detections together (pooled) and gives each figure a 90% interval from a bootstrap over the
clusters (:mod:`engine.bootstrap`); beside a variant's difference to ``baseline``, the interval of the
difference over the same resamples. A difference whose interval excludes 0 is one the data can tell.

    python -m benchmarks.ablate --data-root DIR --folds 5 --steps 500 --seeds 0 --only baseline,ema
    python -m benchmarks.ablate --out runs/ablate --folds 5 --steps 500 --table

The ``distill`` variant learns from a teacher as well (``train_voc.py --distill-from``): the ``baseline`` model of
``--teacher-out`` with the same seed and, with folds, of the same fold, trained without the pictures its student
is scored on. So a small model is cross-validated with the distillation a user would give it:

    python -m benchmarks.ablate --data-root DIR --folds 5 --steps 1000 --preset fod-edge --out runs/cv-edge \
        --only baseline,distill --teacher-out runs/cv-1000      # and the same with --table for the table
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

import eval_voc
import train_voc
from cli import DefaultsFormatter, Stopped, interruption, run
from dataset import resolve_classes
from dataset.annotations import ground_truth_of, read_annotations, write_split
from dataset.folds import Folds, make_folds, read_folds
from engine.annotate import write_json_atomically
from engine.bootstrap import LEVEL, cluster_draws, interval, match_once, mean_ap, resampled_ap
from engine.checkpoint import load_checkpoint
from engine.config import BASE, TrainConfig
from engine.metrics import evaluate_detections
from engine.recipes import PRESETS

# Settings that change neither what a run learns nor how it is scored (where the data lie, what is written
# beside the weights, how the same arithmetic is laid out): a run is reused whatever they were.
NOT_COMPARED = frozenset(
    ("data_root", "cache", "output_dir", "resume", "save_every", "final_eval", "tensorboard")
    + ("channels_last", "compile")
)

# A variant's teacher (``--distill-from``): the ``baseline`` model of ``--teacher-out`` trained with the same seed,
# and with folds on the same fold's training pictures, so that it never saw the pictures its student is scored on.
TEACHER = "<the baseline model of --teacher-out>"

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
    # the ema variant's models scored by the weights they trained, the baseline's bit for bit: paired with them
    # (--versus ema-trained), the average is all that differs
    "ema-trained": ({"ema": True}, ["--no-ema"]),
    "atss": ({"assigner": "atss"}, []),
    "reg-centerness": ({"reg_weighting": "centerness"}, []),
    "no-tta": ({}, ["--no-tta"]),
    "scales-1.25": ({}, ["--tta-scales", "1", "1.25"]),
    "scales-0.8-1.25": ({}, ["--tta-scales", "0.8", "1", "1.25"]),
    "nms-0.5": ({}, ["--nms-iou", "0.5"]),
    "nms-0.4": ({}, ["--nms-iou", "0.4"]),
    "scales-1.25-nms-0.5": ({}, ["--tta-scales", "1", "1.25", "--nms-iou", "0.5"]),
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
    "distill": ({"distill_from": TEACHER}, []),
}


def variant_config(name: str, seed: int, args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any], list[str]]:
    """The variant's run with ``seed`` (into ``<out>/<variant>/seed<S>/``), its changes to the preset (the teacher's
    path filled in) and its scoring flags."""
    changes, eval_flags = VARIANTS[name]
    out = Path(args.out) / name / f"seed{seed}"
    changes = with_teacher(changes, args, lambda teacher_out: Path(teacher_out) / "baseline" / f"seed{seed}")
    config = run_config(args, changes, data_root=args.data_root, val_split=args.split, seed=seed, output_dir=str(out))
    return config, changes, eval_flags


def scores_models_of(name: str) -> str | None:
    """The variant whose trained models ``name`` scores again, when it only changes the scoring: the one trained
    with its changes to the preset (``baseline`` for none). None when ``name`` trains models of its own."""
    changes, eval_flags = VARIANTS[name]
    if not eval_flags:
        return None
    return next(other for other, (trained, flags) in VARIANTS.items() if trained == changes and not flags)


def run_variant(name: str, seed: int, args: argparse.Namespace) -> dict | None:
    """The variant's results.json, training (or scoring the baseline's model) first when it has none."""
    config, changes, eval_flags = variant_config(name, seed, args)
    out = config.output_path
    results = out / "results.json"
    if results.is_file():
        return reused(results, config, eval_flags)
    out.mkdir(parents=True, exist_ok=True)
    if trainer := scores_models_of(name):  # score that variant's model another way
        base = Path(args.out) / trainer / f"seed{seed}"
        if run_variant(trainer, seed, args) is None:
            return None
        argv = ["--checkpoint", str(base / "last.pth"), "--data-root", args.data_root, "--split", args.split]
        with logged(out.parent / f"seed{seed}.log"):
            base_results = json.loads((base / "results.json").read_text())
            flip = "--tta" if base_results["tta"] else "--no-tta"
            scored = eval_voc.main(
                eval_voc.get_args_parser().parse_args([*argv, "--batch-size", "4", flip, *eval_flags])
            )
        results.write_text(
            json.dumps({**base_results, "map": scored["map"], "ap": scored["ap"], "eval_flags": eval_flags}, indent=2)
        )
        return json.loads(results.read_text())
    train(args, config, label=f"{name} seed {seed}", log=out.parent / f"seed{seed}.log")
    return json.loads(results.read_text()) if results.is_file() else None


def with_teacher(changes: dict[str, Any], args: argparse.Namespace, run_of: Callable[[str], Path]) -> dict[str, Any]:
    """``changes`` with :data:`TEACHER` replaced by the ``last.pth`` in ``run_of(args.teacher_out)``, the teacher's
    run folder (checked before training: :func:`check_teacher`); ``ValueError`` without ``--teacher-out``."""
    if changes.get("distill_from") != TEACHER:
        return changes
    if not args.teacher_out:
        raise ValueError("a variant that distils needs --teacher-out: the --out whose baseline models teach")
    return {**changes, "distill_from": str(run_of(args.teacher_out) / "last.pth")}


def check_teacher(config: TrainConfig, args: argparse.Namespace) -> None:
    """Before a run of ``config`` learns from ``config.distill_from``: the teacher is there, and it was trained
    on the same training split (of the same data set, without folds; with folds, ``--teacher-out``'s are checked
    equal), so it never saw the pictures its student is scored on. ``FileNotFoundError`` or ``ValueError``."""
    teacher = Path(config.distill_from)
    if not teacher.is_file():
        raise FileNotFoundError(f"{teacher}: no teacher there; with --teacher-out, run its baseline first")
    taught = load_checkpoint(teacher).get("train_config") or {}
    if taught.get("train_split") != config.train_split or (
        args.folds is None and Path(taught.get("data_root", "")).resolve() != Path(config.data_root).resolve()
    ):
        raise ValueError(
            f"{teacher} learnt from {taught.get('data_root')} {taught.get('train_split')}, the model would learn from "
            f"{config.data_root} {config.train_split}: a teacher must not have seen the pictures its student is "
            "scored on"
        )


def run_config(args: argparse.Namespace, changes: dict[str, Any], **run: Any) -> TrainConfig:
    """A variant's run: ``--preset`` with the changes after ``--``, ``--steps`` (else the preset's), ``run``'s
    settings and the variant's ``changes`` (which win). ``ValueError`` when the run would have no fixed length."""
    recipe = train_voc.parse_config(["--preset", args.preset, *args.extra])
    steps = args.steps if args.steps is not None else recipe.steps
    if steps is None:
        raise ValueError(
            f"--steps: {' '.join(['--preset', args.preset, *args.extra])} trains for epochs or minutes, and every run "
            "of an ablation must make the same number of updates on any machine: give --steps"
        )
    return recipe.override(steps=steps, save_every=0, **run, **changes)


def check_settings(config: TrainConfig, made: dict[str, Any], where: Path) -> None:
    """``ValueError`` naming the settings when the run in ``where``, whose results or checkpoint ``made`` holds
    its ``train_config``, was not made as ``config`` says: after a preset changes, its old runs would otherwise
    be taken for its new ones. Settings a run predates count as their defaults; :data:`NOT_COMPARED` are not
    compared."""
    stored = made.get("train_config")
    if not isinstance(stored, dict):
        raise ValueError(f"{where}: no train_config, so what made it cannot be told; pass another --out")
    wanted, defaults = config.to_dict(), BASE.to_dict()

    def shown(value: Any) -> str:
        return ",".join(map(str, value)) if isinstance(value, list) else str(value)

    def same(name: str, value: Any) -> bool:
        made_with = stored.get(name, defaults[name])
        if name == "distill_from" and value and made_with:  # one teacher, however its path is spelled
            return Path(made_with).resolve() == Path(value).resolve()
        return made_with == value

    differ = [
        f"{name} {shown(stored.get(name, defaults[name]))} (now {shown(value)})"
        for name, value in wanted.items()
        if name not in NOT_COMPARED and not same(name, value)
    ]
    if differ:
        raise ValueError(
            f"{where} was made with other settings: {'; '.join(differ)}. Pass another --out, or after -- the "
            "flags that make those runs again"
        )


def reused(results: Path, config: TrainConfig, eval_flags: list[str]) -> dict[str, Any]:
    """The finished run's ``results`` (results.json), once its settings and its scoring's flags are checked
    against ``config`` and ``eval_flags``."""
    found = json.loads(results.read_text())
    check_settings(config, found, results.parent)
    if found.get("eval_flags", []) != eval_flags:
        raise ValueError(
            f"{results.parent} was scored with {' '.join(found.get('eval_flags', [])) or 'no flags'} (now "
            f"{' '.join(eval_flags) or 'none'}). Pass another --out"
        )
    return found


def check_shown(
    names: list[str], args: argparse.Namespace, folds: Folds | None = None, shown: tuple[int, ...] | None = None
) -> None:
    """Every finished run the table of ``names`` shows, those of ``--versus`` included, is checked as a sweep
    checks the runs it reuses (:func:`reused`): a table of an ``--out`` made by another preset would otherwise show
    its runs as today's variants. The ``--versus`` runs of ``--baseline-out`` may have been made with other
    steps. With ``shown``, only those folds' runs are checked."""
    for name in dict.fromkeys(names if args.baseline_out else [args.versus, *names]):
        check_finished(name, args, folds, shown)
    if args.baseline_out:
        other = argparse.Namespace(**{**vars(args), "out": args.baseline_out})
        check_finished(args.versus, other, folds, shown, any_steps=True)


def check_finished(
    name: str,
    args: argparse.Namespace,
    folds: Folds | None,
    shown: tuple[int, ...] | None = None,
    any_steps: bool = False,
) -> None:
    """The variant's finished runs in ``args.out`` (each fold's, with ``folds``; of the folds ``shown`` when
    given), each checked as :func:`reused` checks it; with ``any_steps``, against the steps it was made with."""
    out = Path(args.out)
    if folds is None:
        runs = [(int(seed.removeprefix("seed")), None) for seed in load_runs(out, name)]
    else:
        finished = load_fold_runs(out, name, folds, shown)
        runs = [(int(seed.removeprefix("seed")), fold) for seed in finished for fold in shown or range(folds.count)]
    for seed, fold in runs:
        config, _, eval_flags = (
            variant_config(name, seed, args) if fold is None else fold_config(name, seed, fold, folds, args)
        )
        results = config.output_path / "results.json"
        if any_steps:
            made = json.loads(results.read_text()).get("train_config") or {}
            config = config.override(steps=made.get("steps", config.steps))
        reused(results, config, eval_flags)


def train(args: argparse.Namespace, config: TrainConfig, *, label: str, log: Path) -> None:
    """``train_voc.py`` with ``config``, its output in ``log``; a failure is reported and the sweep goes on. A
    run stopped by a signal ends the sweep (:class:`cli.Stopped`, naming the run), and the same command resumes
    it from the ``last.pth`` it kept, once that checkpoint's settings are checked against ``config``."""
    if config.distill_from:
        check_teacher(config, args)
    stopped = config.output_path / "last.pth"
    if stopped.is_file():
        check_settings(config, load_checkpoint(stopped), stopped)
        config = config.override(resume=str(stopped))
    print(f"{label}: {config.changes(PRESETS[args.preset])}", flush=True)
    try:
        with logged(log, mode="a" if config.resume else "w"):
            train_voc.main(config)
    except Stopped as stop:  # train_voc.py's advice (--resume) is not this command's: it resumes by itself
        what = str(stop).split(";")[0]
        raise Stopped(f"{label} {what}; the same command resumes it from {stopped}", stop.status) from None
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM outside the training steps: reading pictures, scoring
        what, status = interruption(err)
        again = f"resumes it from {stopped}" if stopped.is_file() else "runs it again"
        raise Stopped(f"{label} {what}; the same command {again}", status) from None
    except Exception as err:  # one failed run is reported and the sweep goes on
        print(f"{label}: {type(err).__name__}: {err}", flush=True)


def fold_dir(out: str | Path, name: str, folds: Folds, seed: int) -> Path:
    """Where a variant's cross-validation with one seed keeps its folds' runs, ``fold<i>/`` each."""
    return Path(out) / name / f"cv{folds.count}" / f"seed{seed}"


def fold_config(
    name: str, seed: int, fold: int, folds: Folds, args: argparse.Namespace
) -> tuple[TrainConfig, dict[str, Any], list[str]]:
    """The variant's run with ``seed`` on the fold's training pictures (into its :func:`fold_dir`), its changes to
    the preset (the teacher's path filled in) and its scoring flags."""
    changes, eval_flags = VARIANTS[name]
    changes = with_teacher(
        changes, args, lambda teacher_out: fold_dir(teacher_out, "baseline", folds, seed) / f"fold{fold}"
    )
    config = run_config(
        args,
        changes,
        data_root=str(Path(args.out) / f"cv{folds.count}"),
        train_split=folds.train_split(fold),
        val_split=folds.test_split(fold),
        seed=seed,
        output_dir=str(fold_dir(args.out, name, folds, seed) / f"fold{fold}"),
    )
    return config, changes, eval_flags


def run_fold(name: str, seed: int, fold: int, folds: Folds, args: argparse.Namespace) -> dict | None:
    """The variant's results.json on the fold's test pictures, with their detections in ``detections.json``
    beside it: trained on the fold's training pictures first (or, for a change of the scoring only, the model of
    the fold that :func:`scores_models_of` names scored again) when it has none."""
    config, changes, eval_flags = fold_config(name, seed, fold, folds, args)
    out = config.output_path
    results, detections = out / "results.json", out / "detections.json"
    if results.is_file() and (found := reused(results, config, eval_flags)) and detections.is_file():
        return found
    out.mkdir(parents=True, exist_ok=True)
    model = out
    if trainer := scores_models_of(name):
        model = fold_dir(args.out, trainer, folds, seed) / f"fold{fold}"
        if run_fold(trainer, seed, fold, folds, args) is None:
            return None
    elif not results.is_file():
        train(args, config, label=f"{name} seed {seed} fold {fold}", log=out.parent / f"fold{fold}.log")
        if not results.is_file():
            return None
        if detections.is_file():  # the training's final evaluation scored the fold's test pictures: done
            return json.loads(results.read_text())
    trained = json.loads((model / "results.json").read_text())
    argv = [
        *("--checkpoint", str(model / "last.pth"), "--data-root", str(Path(args.out) / f"cv{folds.count}")),
        *("--split", folds.test_split(fold), "--batch-size", "4", "--save-detections", str(detections)),
        "--tta" if trained["tta"] else "--no-tta",
        *eval_flags,
    ]
    with logged(out.parent / f"fold{fold}.log", mode="a"):
        scored = eval_voc.main(eval_voc.get_args_parser().parse_args(argv))
    results.write_text(
        json.dumps({**trained, "map": scored["map"], "ap": scored["ap"], "eval_flags": eval_flags}, indent=2)
    )
    return json.loads(results.read_text())


@contextlib.contextmanager
def logged(path: Path, mode: str = "w") -> Iterator[None]:
    """What a run prints, its progress bars included, goes to ``path`` instead of the terminal."""
    with open(path, mode) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield


def load_runs(out: Path, name: str) -> dict[str, dict]:
    """seed folder name -> results.json of the variant's finished runs."""
    return {
        p.parent.name: json.loads(p.read_text())
        for p in sorted((out / name).glob("seed*/results.json"))
        if p.parent.name.removeprefix("seed").isdigit()
    }


def table(out: Path, names: list[str], versus: str = "baseline") -> str:
    """Markdown: per variant the mean mAP over seeds, its spread (max - min), the mean difference to ``versus``
    run with the same seeds (same initialisation and picture order, "-" without one), per-class mean AP, steps
    and minutes. The pairing holds only for runs with the same loader workers: each worker draws its own crops."""
    runs = {name: load_runs(out, name) for name in names}
    base = load_runs(out, versus)
    rows = [
        f"| variant | runs | mAP mean | spread | vs {versus}, same seeds | nail | clip_B | clip_Y | L_stick | steps "
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


def load_fold_runs(out: Path, name: str, folds: Folds, shown: tuple[int, ...] | None = None) -> dict[str, list[dict]]:
    """seed folder name -> each fold's results.json, its detections under ``"detections"``, for the seeds whose
    every fold (of ``shown``, when given: those folds only) has finished."""
    found = {}
    for seed in sorted((out / name / f"cv{folds.count}").glob("seed*")):
        if not seed.name.removeprefix("seed").isdigit():
            continue
        runs = [seed / f"fold{i}" for i in (range(folds.count) if shown is None else shown)]
        if all((run / "results.json").is_file() and (run / "detections.json").is_file() for run in runs):
            found[seed.name] = [
                {
                    **json.loads((run / "results.json").read_text()),
                    "detections": json.loads((run / "detections.json").read_text()),
                }
                for run in runs
            ]
    return found


def write_pooled(out: Path, names: list[str], folds: Folds) -> list[Path]:
    """Each finished cross-validation's detections of all folds together, ``detections.json`` beside its
    ``fold<i>/`` folders: ``eval_voc.py --detections`` scores and analyses them on the folds' ``cv<K>_all``."""
    written = []
    for name in names:
        for seed, fold_runs in load_fold_runs(out, name, folds).items():
            path = out / name / f"cv{folds.count}" / seed / "detections.json"
            write_json_atomically([d for run in fold_runs for d in run["detections"]], path)
            written.append(path)
    split = out / f"cv{folds.count}" / "ImageSets" / "Main" / f"{folds.all_split}.txt"
    if written and not split.is_file():  # folds made before that split was
        write_split(out / f"cv{folds.count}", folds.all_split, list(folds.ids))
    return written


def pooled(runs: list[dict], ground_truth: dict, classes: tuple[str, ...], draws: np.ndarray) -> dict[str, Any]:
    """All folds' detections (``runs``, one a fold) scored together on every labelled picture: ``map`` and ``ap``
    [C], and both over the resamples ``draws`` [R, N]: ``map_samples`` [R], ``ap_samples`` [R, C]."""
    detections = [d for run in runs for d in run["detections"]]
    result = evaluate_detections(detections, ground_truth, classes)
    samples = resampled_ap(match_once(detections, ground_truth, classes), draws)
    return {
        "map": result["map"],
        "ap": np.array(list(result["ap"].values())),
        "map_samples": mean_ap(samples),
        "ap_samples": samples,
    }


def with_interval(value: float, samples: np.ndarray, signed: bool = False) -> str:
    """``0.912 [0.884, 0.936]``: a figure and its interval over the resamples ``samples`` [R]."""
    low, high = interval(samples)
    form = "+.3f" if signed else ".3f"
    return f"{value:{form}} [{low:{form}}, {high:{form}}]"


def check_same_folds(folds: Folds, other_out: Path, flag: str, out: Path) -> None:
    """``ValueError`` unless the cross-validation of ``other_out`` (given by ``flag``) was made with ``folds``."""
    theirs = read_folds(other_out / f"cv{folds.count}")
    if (theirs.ids, theirs.cluster, theirs.fold) != (folds.ids, folds.cluster, folds.fold):
        raise ValueError(f"{flag} {other_out}: its folds are not those of --out {out}")


def cv_table(
    out: Path,
    names: list[str],
    folds: Folds,
    baseline_out: Path | None = None,
    versus: str = "baseline",
    shown: tuple[int, ...] | None = None,
) -> str:
    """Markdown: per variant its pooled mAP and each class's pooled AP (all folds' detections scored together on
    every labelled picture), the mean over its seeds, each with its 90% interval over the same resamples of the
    clusters; its difference to the variant ``versus`` (of ``baseline_out`` when given, made with the same folds, as
    :func:`main` checks) on the seeds both ran, with the interval of that paired difference; each fold's own mAP;
    the steps of a fold's run and the minutes of all folds. A second table gives the paired differences class by
    class. With ``shown``, only those folds count: their test pictures, and the runs that have finished them."""
    runs = {name: load_fold_runs(out, name, folds, shown) for name in names}
    base_runs = load_fold_runs(baseline_out or out, versus, folds, shown)
    finished = [fold_runs for found in [base_runs, *runs.values()] for fold_runs in found.values()]
    which = f"{folds.count} folds"
    if shown:
        which = f"fold{'s' * (len(shown) > 1)} {' '.join(map(str, shown))} of {folds.count}"
    if not finished:
        return f"no cross-validation over {which} has finished in {out}"
    classes = resolve_classes(finished[0][0]["train_config"]["classes"])
    kept = [i for i, fold in enumerate(folds.fold) if shown is None or fold in shown]
    ids = [folds.ids[i] for i in kept]
    ground_truth = ground_truth_of(ids, read_annotations(out / f"cv{folds.count}", ids, classes))
    draws = cluster_draws(np.array([folds.cluster[i] for i in kept]))
    base = {seed: pooled(fold_runs, ground_truth, classes, draws) for seed, fold_runs in base_runs.items()}
    scores = {
        name: base
        if name == versus and baseline_out is None
        else {seed: pooled(fold_runs, ground_truth, classes, draws) for seed, fold_runs in found.items()}
        for name, found in runs.items()
    }
    rows = [
        f"{LEVEL:.0%} intervals: {len(draws)} resamples of the {len({folds.cluster[i] for i in kept})} clusters of "
        f"{len(ids)} pictures, {which}",
        "",
        f"| variant | seeds | pooled mAP | vs {versus}{f' of {baseline_out}' if baseline_out else ''}, same seeds | "
        + " | ".join(classes)
        + f" | mAP of each fold | steps | minutes, {'these' if shown else 'all'} folds |",
        "|---|---:|---:|---:|" + "---:|" * len(classes) + "---|---:|---:|",
    ]
    by_class = []
    for name in names:
        found = scores[name]
        if not found:
            continue
        seeds = list(found.values())
        paired = [(found[seed], base[seed]) for seed in found if seed in base]
        difference = "-"
        if paired:
            change = {key: np.mean([v[key] - b[key] for v, b in paired], axis=0) for key in seeds[0]}
            difference = with_interval(float(change["map"]), change["map_samples"], signed=True)
        if paired and found is not base:
            by_class.append(
                f"| {name} | {difference} | "
                + " | ".join(
                    with_interval(float(change["ap"][c]), change["ap_samples"][:, c], signed=True)
                    for c in range(len(classes))
                )
                + " |"
            )
        ap = np.mean([s["ap"] for s in seeds], axis=0)
        ap_samples = np.mean([s["ap_samples"] for s in seeds], axis=0)
        fold_runs = list(runs[name].values())
        fold_maps = np.mean([[run["map"] for run in seed_runs] for seed_runs in fold_runs], axis=0)
        rows.append(
            f"| {name} | {len(seeds)} | "
            + with_interval(
                float(np.mean([s["map"] for s in seeds])), np.mean([s["map_samples"] for s in seeds], axis=0)
            )
            + f" | {difference} | "
            + " | ".join(with_interval(float(ap[c]), ap_samples[:, c]) for c in range(len(classes)))
            + f" | {' '.join(f'{m:.3f}' for m in fold_maps)}"
            + f" | {np.mean([run['steps'] for seed_runs in fold_runs for run in seed_runs]):.0f}"
            + f" | {np.mean([sum(run['train_minutes'] for run in seed_runs) for seed_runs in fold_runs]):.1f} |"
        )
    if by_class:
        rows += ["", f"Paired differences to {versus}, class by class:", ""]
        rows += ["| variant | mAP | " + " | ".join(classes) + " |", "|---|---:|" + "---:|" * len(classes), *by_class]
    return "\n".join(rows)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=DefaultsFormatter)
    parser.add_argument("--data-root", default="foreign_object_dataset", help="VOC-layout data set")
    parser.add_argument("--split", default="val", help="the split every run is scored on (without --folds)")
    parser.add_argument("--preset", default="fod-cpu", help="the recipe the variants change")
    parser.add_argument(
        "--steps", type=int, help="optimizer steps of every run (default: the preset's; with --table, of those shown)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one run per seed and variant")
    parser.add_argument("--only", help="comma list of variants (default: all, in the order of the table)")
    parser.add_argument("--out", default="runs/ablate", help="one folder per variant and seed")
    parser.add_argument(
        "--table",
        action="store_true",
        help="only print the table of the runs done (and pool their folds' detections), each checked as a sweep "
        "checks the runs it reuses: made with the settings its variant gives now",
    )
    parser.add_argument(
        "--baseline-out",
        metavar="OUT",
        help="with --folds: pair the variants with the --versus runs of this --out instead (the same folds, e.g. "
        "other --steps)",
    )
    parser.add_argument(
        "--versus",
        default="baseline",
        metavar="VARIANT",
        help="the variant every difference in the table is paired with, seed for seed (e.g. ema-trained for ema)",
    )
    parser.add_argument(
        "--teacher-out",
        metavar="OUT",
        help="the distill variant learns from the baseline model of this --out with the same seed (and with --folds, "
        "the same fold's, trained without the pictures its student is scored on), e.g. fod-cpu's for --preset fod-edge",
    )
    parser.add_argument(
        "--folds",
        type=int,
        nargs="?",
        const=5,
        metavar="K",
        help="cross-validate: K folds of the --pictures, each cluster of near-duplicates whole in one fold, every run "
        "trained K times and scored on the fold left out; --folds alone is 5",
    )
    parser.add_argument(
        "--test-folds",
        type=int,
        nargs="+",
        metavar="I",
        help="with --folds: only these folds are run, and the table pools only their test pictures, paired over the "
        "runs that have finished them (a screen on fewer folds, or a look before the last folds have run)",
    )
    parser.add_argument(
        "--pictures", default="train,val", help="with --folds: the splits whose pictures make the folds (each once)"
    )
    parser.add_argument("--fold-seed", type=int, default=0, help="with --folds: the order clusters are dealt in")
    parser.add_argument(
        "--group-by",
        metavar="PATTERN",
        help="with --folds: also keep the pictures whose file names share a key in one fold (a regular expression, "
        "as for dataset.convert --group-by)",
    )
    parser.add_argument("extra", nargs="*", help="changes to the preset for every run, after --; a variant's flags win")
    return parser


def main(args: argparse.Namespace) -> None:
    # all variants by default, those that distil only with a teacher to learn from
    names = args.only.split(",") if args.only else [n for n in VARIANTS if args.teacher_out or n != "distill"]
    unknown = [n for n in [*names, args.versus] if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    out = Path(args.out)
    if args.baseline_out and args.folds is None:
        raise ValueError("--baseline-out pairs cross-validations: it needs --folds")
    if args.test_folds and args.folds is None:
        raise ValueError("--test-folds chooses among the folds of a cross-validation: it needs --folds")
    if args.test_folds and not set(args.test_folds) <= set(range(args.folds)):
        raise ValueError(
            f"--test-folds {' '.join(map(str, args.test_folds))}: the folds of --folds {args.folds} are "
            f"0 to {args.folds - 1}"
        )
    shown = tuple(sorted(set(args.test_folds))) if args.test_folds else None
    if args.folds is None:
        check_shown(names, args)  # before any training: a sweep that ends in a refused table is hours lost
        if not args.table:
            for name in names:  # each variant's seeds together, so that an interrupted sweep leaves whole rows
                for seed in args.seeds:
                    if run_variant(name, seed, args) is None:
                        print(f"{name} seed {seed}: failed, see {out / name / f'seed{seed}.log'}", flush=True)
        print(table(out, names, args.versus))
        return
    if args.table:
        folds = read_folds(out / f"cv{args.folds}")
    else:
        folds = make_folds(
            args.data_root,
            out / f"cv{args.folds}",
            count=args.folds,
            splits=args.pictures.split(","),
            seed=args.fold_seed,
            group_by=args.group_by,
        )
        if args.teacher_out:
            check_same_folds(folds, Path(args.teacher_out), "--teacher-out", out)
    if args.baseline_out:
        check_same_folds(folds, Path(args.baseline_out), "--baseline-out", out)
    check_shown(names, args, folds, shown)
    if not args.table:
        print(folds.summary(), flush=True)
        for name in names:
            for seed in args.seeds:
                for fold in shown or range(folds.count):
                    found = run_fold(name, seed, fold, folds, args)
                    log = fold_dir(out, name, folds, seed) / f"fold{fold}.log"
                    state = f"mAP {found['map']:.3f}" if found else f"failed, see {log}"
                    print(f"{name} seed {seed} fold {fold}: {state}", flush=True)
    print(cv_table(out, names, folds, Path(args.baseline_out) if args.baseline_out else None, args.versus, shown))
    pooled_files = write_pooled(out, names, folds)
    if pooled_files:
        classes = json.loads((pooled_files[0].parent / "fold0" / "results.json").read_text())["train_config"]["classes"]
        print(
            f"\nAll folds' detections: {pooled_files[0]} and the like; errors and operating points: python eval_voc.py "
            f"--detections FILE --data-root {out / f'cv{folds.count}'} --split {folds.all_split} --analysis DIR --ci"
            + ("" if classes == "fod" else f" --classes {classes}")
        )


if __name__ == "__main__":
    run(main, get_args_parser().parse_args(), "benchmarks/ablate.py")
