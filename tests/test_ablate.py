"""The ablation table: means, spreads and differences paired by seed, from the runs' results.json; cross-validation
over folds with pooled figures and their intervals, end to end with training and scoring stubbed."""

import argparse
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from benchmarks import ablate
from benchmarks.ablate import table
from cli import Stopped, Terminated, run
from dataset import FOD_CLASSES, load_ground_truth, read_split
from dataset.synthetic import generate
from engine.metrics import evaluate_detections


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
    assert (run.augment, run.crop, run.lr) == (("flip",), (320, 320), 0.01)  # the preset's, as they are


def test_every_run_takes_the_presets_steps_unless_told(tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(ablate.train_voc, "main", lambda config: trained.append(config))
    args = argparse.Namespace(out=str(tmp_path), preset="fod-cpu", data_root="data", split="val", steps=None, extra=[])
    ablate.run_variant("baseline", 0, args)
    ablate.run_variant("baseline", 1, argparse.Namespace(**{**vars(args), "extra": ["--steps", "500"]}))
    ablate.run_variant("baseline", 2, argparse.Namespace(**{**vars(args), "steps": 300, "extra": ["--steps", "500"]}))
    assert [config.steps for config in trained] == [1000, 500, 300]
    with pytest.raises(ValueError, match="--steps must be"):  # 0 once meant the preset's
        ablate.run_variant("baseline", 3, argparse.Namespace(**{**vars(args), "steps": 0}))
    with pytest.raises(ValueError, match="--steps: --preset fod-cpu-scratch trains for epochs or minutes"):
        ablate.run_variant("baseline", 0, argparse.Namespace(**{**vars(args), "preset": "fod-cpu-scratch"}))


def write_checkpoint(config) -> None:
    """The last.pth of a run of ``config``, without weights."""
    torch.save({"model": {}, "config": {}, "train_config": config.to_dict()}, Path(config.output_dir) / "last.pth")


def stub_training(trained: list) -> Callable:
    """train_voc.main that trains nothing: it writes the results.json and last.pth a run leaves."""

    def train(config):
        trained.append(config)
        out = Path(config.output_dir)
        write_checkpoint(config)
        results = {"map": 0.0, "ap": {}, "steps": config.steps, "train_minutes": 1.5, "seconds_per_step": 0.5}
        results["tta"] = config.tta
        (out / "results.json").write_text(json.dumps({**results, "train_config": config.to_dict()}))

    return train


def test_a_signal_ends_the_sweep_and_the_same_command_resumes_the_stopped_run(tmp_path, monkeypatch, capsys):
    """A SIGTERM once stopped only the run in progress: the sweep counted it as failed and started the next."""
    trained = []
    finish = stub_training(trained)

    def stopped_once(config):
        if trained:
            return finish(config)
        trained.append(config)
        print("step 1 of 2")
        write_checkpoint(config)
        raise Stopped("stopped by SIGTERM at step 1; to go on, run the same command with --resume it", status=143)

    monkeypatch.setattr(ablate.train_voc, "main", stopped_once)
    argv = ["--data-root", "data", "--out", str(tmp_path), "--steps", "2", "--seeds", "0", "--only", "baseline,ema"]
    with pytest.raises(SystemExit) as stop:
        run(ablate.main, ablate.get_args_parser().parse_args(argv), "benchmarks/ablate.py")
    assert stop.value.code == 143 and len(trained) == 1  # ema did not start
    resumes = f"the same command resumes it from {tmp_path / 'baseline' / 'seed0' / 'last.pth'}"
    assert f"benchmarks/ablate.py: baseline seed 0 stopped by SIGTERM at step 1; {resumes}" in capsys.readouterr().err

    ablate.main(ablate.get_args_parser().parse_args(argv))
    first, resumed, ema = trained
    assert (first.resume, resumed.resume, ema.resume) == (None, str(tmp_path / "baseline" / "seed0" / "last.pth"), None)
    assert "step 1 of 2" in (tmp_path / "baseline" / "seed0.log").read_text()  # the resumed run's log appends


@pytest.mark.parametrize("checkpointed", [False, True])
def test_a_sigterm_outside_the_training_steps_names_the_run(tmp_path, monkeypatch, capsys, checkpointed):
    """A SIGTERM while a run read its pictures, or scored its last checkpoint, once ended the sweep with no word."""

    def terminated(config):
        if checkpointed:
            write_checkpoint(config)
        raise Terminated("SIGTERM")

    monkeypatch.setattr(ablate.train_voc, "main", terminated)
    argv = ["--data-root", "data", "--out", str(tmp_path), "--steps", "2", "--seeds", "0", "--only", "baseline"]
    with pytest.raises(SystemExit) as stop:
        run(ablate.main, ablate.get_args_parser().parse_args(argv), "benchmarks/ablate.py")
    again = f"resumes it from {tmp_path / 'baseline' / 'seed0' / 'last.pth'}" if checkpointed else "runs it again"
    message = f"benchmarks/ablate.py: baseline seed 0 stopped by SIGTERM; the same command {again}"
    assert stop.value.code == 143 and capsys.readouterr().err.strip().splitlines()[-1] == message


def test_runs_made_by_other_settings_are_refused_not_taken_for_the_variants(tmp_path, monkeypatch):
    """Once a preset changed, its old runs in an --out would have been read back as runs of the new recipe:
    finished or stopped, a run is reused only when it was made as the variant is now."""
    trained = []
    monkeypatch.setattr(ablate.train_voc, "main", stub_training(trained))
    argv = ["--data-root", "data", "--out", str(tmp_path), "--steps", "2", "--seeds", "0", "--only", "baseline"]
    ablate.main(ablate.get_args_parser().parse_args(argv))
    ablate.main(ablate.get_args_parser().parse_args([*argv, "--", "--tensorboard", "--channels-last", "off"]))
    assert len(trained) == 1  # what is logged and how the arithmetic is laid out change nothing it learnt
    refused = f"{tmp_path / 'baseline' / 'seed0'} was made with other settings: augment flip \\(now flip,paste\\)"
    with pytest.raises(ValueError, match=refused):
        ablate.main(ablate.get_args_parser().parse_args([*argv, "--", "--augment", "flip,paste"]))
    with pytest.raises(ValueError, match=refused):  # nor shown as the variant's in the table
        ablate.main(ablate.get_args_parser().parse_args([*argv, "--table", "--", "--augment", "flip,paste"]))
    other_seed = ["--data-root", "data", "--out", str(tmp_path), "--steps", "2", "--seeds", "1", "--only", "baseline"]
    with pytest.raises(ValueError, match=refused):  # refused before another seed trains, not after
        ablate.main(ablate.get_args_parser().parse_args([*other_seed, "--", "--augment", "flip,paste"]))
    assert len(trained) == 1
    (tmp_path / "baseline" / "seed0" / "results.json").unlink()  # as if stopped: only last.pth is left
    with pytest.raises(ValueError, match="seed0/last.pth was made with other settings: steps 2 \\(now 3\\)"):
        ablate.main(ablate.get_args_parser().parse_args([*argv, "--steps", "3"]))
    assert len(trained) == 1
    # a variant that scores the baseline's models another way: its scoring flags are part of what made it
    scored = tmp_path / "no-tta" / "seed0" / "results.json"
    made = {"train_config": trained[0].to_dict(), "eval_flags": ["--no-tta"]}
    scored.parent.mkdir(parents=True)
    scored.write_text(json.dumps(made))
    assert ablate.reused(scored, trained[0], ["--no-tta"]) == made
    with pytest.raises(ValueError, match="was scored with --no-tta \\(now --no-tta --nms-iou 0.5\\)"):
        ablate.reused(scored, trained[0], ["--no-tta", "--nms-iou", "0.5"])


def stub_scoring(scored: list) -> Callable:
    """eval_voc.main that detects every object exactly, except the ``ema`` models' weight averages, which miss those
    of the first picture of each fold."""

    def score(args):
        scored.append(args)
        ground_truth = load_ground_truth(args.data_root, args.split, "fod")
        missed = next(iter(ground_truth)) if "/ema/" in args.checkpoint and args.ema else None
        detections = [
            {"image_id": image, "category": FOD_CLASSES[label - 1], "score": 0.9, "bbox": box.tolist()}
            for image, g in ground_truth.items()
            if image != missed
            for box, label in zip(g["boxes"], g["labels"])
        ]
        Path(args.save_detections).write_text(json.dumps(detections))
        return evaluate_detections(detections, ground_truth, FOD_CLASSES)

    return score


def stubbed_cross_validation(tmp_path: Path, monkeypatch) -> tuple[list, list, dict, Path, list[str]]:
    """Training and scoring stubbed (the configs trained and the scorings' arguments collected in the first two
    lists), a synthetic data set of 9 pictures (its ids by split), the sweep's --out and its flags for 3 folds."""
    trained, scored = [], []
    monkeypatch.setattr(ablate.train_voc, "main", stub_training(trained))
    monkeypatch.setattr(ablate.eval_voc, "main", stub_scoring(scored))
    data = tmp_path / "data"
    ids = generate(data, {"train": 7, "val": 2})
    out = tmp_path / "runs"
    argv = ["--data-root", str(data), "--out", str(out), "--folds", "3", "--seeds", "0", "--steps", "2"]
    return trained, scored, ids, out, argv


def test_cross_validation_trains_each_fold_and_pools_their_detections(tmp_path, monkeypatch, capsys):
    trained, scored, ids, out, argv = stubbed_cross_validation(tmp_path, monkeypatch)
    ablate.main(ablate.get_args_parser().parse_args([*argv, "--only", "baseline,ema,no-tta"]))
    text = capsys.readouterr().out

    assert [(c.train_split, c.val_split, c.steps, c.seed) for c in trained[:3]] == [
        (f"cv3_{i}_train", f"cv3_{i}_test", 2, 0) for i in range(3)
    ]
    assert len(trained) == 6 and {c.data_root for c in trained} == {str(out / "cv3")}  # baseline and ema
    tested = [read_split(out / "cv3", f"cv3_{i}_test") for i in range(3)]
    assert sorted(sum(tested, [])) == sorted(ids["train"] + ids["val"])
    assert "fold 0: 3 test pictures in 3 clusters; val pictures with a near-duplicate in train: 0 of 3" in text
    assert scored[-1].checkpoint == str(out / "baseline" / "cv3" / "seed0" / "fold2" / "last.pth")
    assert not scored[-1].tta and scored[0].tta  # no-tta scores the baseline's models again, without the flip

    assert row(text, "baseline")[1:4] == ["1", "1.000 [1.000, 1.000]", "+0.000 [+0.000, +0.000]"]
    assert row(text, "baseline")[-3:] == ["1.000 1.000 1.000", "2", "4.5"]
    ema = row(text, "ema")
    pooled, low, high = (float(v) for v in ema[2].replace("[", "").replace(",", "").replace("]", "").split())
    difference = float(ema[3].split()[0])
    assert low < pooled < 1.0 and pooled <= high <= 1.0 and difference == pytest.approx(pooled - 1.0)
    assert float(ema[3].split()[-1].rstrip("]")) <= 0.0  # never better than the baseline in any resample
    assert "1000 resamples of the 9 clusters of 9 pictures, 3 folds" in text
    # the paired differences class by class: the baseline scored 1 on every class, so each is the AP less 1
    by_class = text[text.index("Paired differences to baseline, class by class:") :]
    assert row(by_class, "ema")[1] == ema[3] and "| baseline |" not in by_class
    for ap, change in zip(ema[4:8], row(by_class, "ema")[2:6], strict=True):
        assert float(change.split()[0]) == pytest.approx(float(ap.split()[0]) - 1.0, abs=1.5e-3)
    # All folds' detections in one file, which scored on every picture gives the pooled figure.
    assert sorted(read_split(out / "cv3", "cv3_all")) == sorted(ids["train"] + ids["val"])
    pooled_detections = json.loads((out / "ema" / "cv3" / "seed0" / "detections.json").read_text())
    assert len({d["image_id"] for d in pooled_detections}) == 9 - 3  # each fold's first picture missed
    ground_truth = load_ground_truth(out / "cv3", "cv3_all", "fod")
    assert evaluate_detections(pooled_detections, ground_truth, FOD_CLASSES)["map"] == pytest.approx(pooled, abs=5e-4)
    assert "--split cv3_all --analysis DIR --ci" in text

    ablate.main(ablate.get_args_parser().parse_args([*argv, "--only", "baseline,ema,no-tta"]))
    assert len(trained) == 6 and len(scored) == 9  # what has run is not run again
    ablate.main(ablate.get_args_parser().parse_args([*argv, "--table"]))
    assert row(capsys.readouterr().out, "ema")[:4] == ema[:4]
    refused = "baseline/cv3/seed0/fold0 was made with other settings: steps 2 \\(now 3\\)"
    with pytest.raises(ValueError, match=refused):  # a table shows only what the command would run
        ablate.main(ablate.get_args_parser().parse_args([*argv, "--table", "--only", "ema", "--steps", "3"]))
    # paired with the baseline of another --out made with the same folds: the same difference
    other = tmp_path / "other"
    shutil.copytree(out / "cv3", other / "cv3", symlinks=True)
    shutil.copytree(out / "baseline", other / "baseline")
    shutil.rmtree(out / "baseline")
    ablate.main(ablate.get_args_parser().parse_args([*argv, "--table", "--only", "ema", "--baseline-out", str(other)]))
    text = capsys.readouterr().out
    assert row(text, "ema")[:4] == ema[:4] and f"vs baseline of {other}, same seeds" in text
    for fold in range(3):  # the other --out's baseline may have been made with other steps, not other settings
        made = other / "baseline" / "cv3" / "seed0" / f"fold{fold}" / "results.json"
        results = json.loads(made.read_text())
        made.write_text(json.dumps({**results, "train_config": {**results["train_config"], "steps": 5, "lr": 0.02}}))
    with pytest.raises(ValueError, match=f"{other}/baseline/cv3/seed0/fold0 was made with other settings: lr 0.02 "):
        ablate.main(ablate.get_args_parser().parse_args([*argv, "--table", "--baseline-out", str(other)]))
    shutil.copytree(out / "ema" / "cv3" / "seed0", out / "ema" / "cv3" / "seed0-old")  # a folder put aside
    ablate.main(ablate.get_args_parser().parse_args([*argv, "--table", "--only", "ema"]))
    assert row(capsys.readouterr().out, "ema")[:2] == ["ema", "1"]
    folds = json.loads((other / "cv3" / "folds.json").read_text())
    (other / "cv3" / "folds.json").write_text(json.dumps({**folds, "fold": [(f + 1) % 3 for f in folds["fold"]]}))
    with pytest.raises(ValueError, match=f"--baseline-out {other}: its folds are not those of --out {out}"):
        ablate.main(ablate.get_args_parser().parse_args([*argv, "--table", "--baseline-out", str(other)]))
    with pytest.raises(ValueError, match="it needs --folds"):
        ablate.main(ablate.get_args_parser().parse_args(["--out", str(out), "--table", "--baseline-out", str(other)]))
    with pytest.raises(ValueError, match="folds made with another seed"):
        ablate.main(ablate.get_args_parser().parse_args([*argv, "--fold-seed", "1"]))


def test_the_folds_finished_so_far_are_pooled_and_paired_on_their_own_pictures(tmp_path, monkeypatch, capsys):
    trained, _, _, out, argv = stubbed_cross_validation(tmp_path, monkeypatch)
    ablate.main(ablate.get_args_parser().parse_args([*argv, "--only", "baseline,ema"]))
    capsys.readouterr()
    (out / "ema" / "cv3" / "seed0" / "fold1" / "results.json").unlink()  # its second fold still training

    ablate.main(ablate.get_args_parser().parse_args([*argv, "--table"]))
    assert "| ema |" not in capsys.readouterr().out
    ablate.main(ablate.get_args_parser().parse_args([*argv, "--table", "--test-folds", "2", "0"]))
    text = capsys.readouterr().out
    folds = ablate.read_folds(out / "cv3")
    kept = folds.test_ids(0) + folds.test_ids(2)
    assert f"resamples of the {len(kept)} clusters of {len(kept)} pictures, folds 0 2 of 3" in text
    ground_truth = {i: g for i, g in load_ground_truth(out / "cv3", "cv3_all", "fod").items() if i in kept}
    detections = [
        d
        for fold in (0, 2)
        for d in json.loads((out / "ema" / "cv3" / "seed0" / f"fold{fold}" / "detections.json").read_text())
    ]
    ema = row(text, "ema")
    expected = evaluate_detections(detections, ground_truth, FOD_CLASSES)["map"]
    assert float(ema[2].split()[0]) == pytest.approx(expected, abs=5e-4) and expected < 1.0
    assert float(ema[3].split()[0]) == pytest.approx(expected - 1.0, abs=5e-4)  # the baseline scores 1 there
    assert len(ema[-3].split()) == 2 and "minutes, these folds" in text
    ablate.main(ablate.get_args_parser().parse_args([*argv, "--only", "ema", "--seeds", "1", "--test-folds", "1"]))
    assert [(c.seed, c.train_split) for c in trained[6:]] == [(1, "cv3_1_train")]  # only the folds named run
    assert not (out / "ema" / "cv3" / "seed0" / "fold1" / "results.json").is_file()
    with pytest.raises(ValueError, match="--test-folds 3: the folds of --folds 3 are 0 to 2"):
        ablate.main(ablate.get_args_parser().parse_args([*argv, "--table", "--test-folds", "3"]))
    with pytest.raises(
        ValueError, match="--test-folds chooses among the folds of a cross-validation: it needs --folds"
    ):
        ablate.main(ablate.get_args_parser().parse_args(["--out", str(out), "--table", "--test-folds", "0"]))


def test_the_average_is_paired_with_the_weights_it_averaged_without_training_a_baseline(tmp_path, monkeypatch, capsys):
    trained, scored, _, out, argv = stubbed_cross_validation(tmp_path, monkeypatch)
    ablate.main(ablate.get_args_parser().parse_args([*argv, "--only", "ema,ema-trained", "--versus", "ema-trained"]))
    text = capsys.readouterr().out

    assert len(trained) == 3 and all(config.ema for config in trained)  # ema's folds only: no baseline trained
    again = [args for args in scored if not args.ema]
    assert [args.checkpoint for args in again] == [
        str(out / "ema" / "cv3" / "seed0" / f"fold{i}" / "last.pth") for i in range(3)
    ]
    assert row(text, "ema-trained")[2:4] == ["1.000 [1.000, 1.000]", "+0.000 [+0.000, +0.000]"]
    ema = row(text, "ema")
    assert float(ema[3].split()[0]) == pytest.approx(float(ema[2].split()[0]) - 1.0)
    assert "vs ema-trained, same seeds" in text and "Paired differences to ema-trained, class by class:" in text
    assert ablate.scores_models_of("ema-trained") == "ema" and ablate.scores_models_of("no-tta") == "baseline"
    assert ablate.scores_models_of("ema") is None
    assert all(ablate.scores_models_of(name) for name, (_, flags) in ablate.VARIANTS.items() if flags)
    with pytest.raises(ValueError, match="unknown variants \\['emma'\\]"):
        ablate.main(ablate.get_args_parser().parse_args([*argv, "--table", "--only", "ema", "--versus", "emma"]))


def test_each_fold_learns_from_the_teacher_trained_without_its_test_pictures(tmp_path, monkeypatch):
    trained, scored = [], []
    monkeypatch.setattr(ablate.train_voc, "main", stub_training(trained))
    monkeypatch.setattr(ablate.eval_voc, "main", stub_scoring(scored))
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    generate(data, {"train": 7, "val": 2})
    common = ["--data-root", str(data), "--folds", "3", "--seeds", "0", "1", "--steps", "2"]
    teachers, students = tmp_path / "teachers", tmp_path / "students"
    student = [*common, "--out", str(students), "--only", "distill", "--preset", "fod-edge"]
    with pytest.raises(ValueError, match="a variant that distils needs --teacher-out"):
        ablate.main(ablate.get_args_parser().parse_args(student))
    with pytest.raises(FileNotFoundError, match="teachers/cv3/folds.json: no folds there"):
        ablate.main(ablate.get_args_parser().parse_args([*student, "--teacher-out", str(teachers)]))
    ablate.main(ablate.get_args_parser().parse_args([*common, "--out", str(teachers), "--only", "baseline"]))
    teacher = teachers / "baseline" / "cv3" / "seed0" / "fold0" / "last.pth"
    teacher.rename(teacher.with_suffix(".kept"))
    with pytest.raises(FileNotFoundError, match="fold0/last.pth: no teacher there; with --teacher-out, run its"):
        ablate.main(ablate.get_args_parser().parse_args([*student, "--teacher-out", str(teachers)]))
    teacher.with_suffix(".kept").rename(teacher)
    ablate.main(ablate.get_args_parser().parse_args([*student, "--teacher-out", str(teachers)]))
    taught = trained[6:]
    assert [(c.seed, c.train_split, c.backbone, c.distill_from) for c in taught] == [
        (
            seed,
            f"cv3_{i}_train",
            "efficientnet_lite1",
            str(teachers / "baseline" / "cv3" / f"seed{seed}" / f"fold{i}" / "last.pth"),
        )
        for seed in (0, 1)
        for i in range(3)
    ]
    ablate.main(ablate.get_args_parser().parse_args([*student, "--teacher-out", "teachers"]))  # spelled otherwise
    assert len(trained) == 12  # the same teachers: what has run is not run again
    folds = json.loads((teachers / "cv3" / "folds.json").read_text())
    (teachers / "cv3" / "folds.json").write_text(json.dumps({**folds, "fold": [(f + 1) % 3 for f in folds["fold"]]}))
    with pytest.raises(ValueError, match=f"--teacher-out {teachers}: its folds are not those of --out {students}"):
        ablate.main(ablate.get_args_parser().parse_args([*student, "--teacher-out", str(teachers)]))


def test_without_folds_a_teacher_that_learnt_from_other_pictures_is_refused(tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(ablate.train_voc, "main", stub_training(trained))
    common = ["--data-root", str(tmp_path / "data"), "--seeds", "0", "--steps", "2"]
    teachers = tmp_path / "teachers"
    ablate.main(ablate.get_args_parser().parse_args([*common, "--out", str(teachers), "--only", "baseline"]))
    student = [*common, "--out", str(tmp_path / "students"), "--only", "distill", "--teacher-out", str(teachers)]
    ablate.main(ablate.get_args_parser().parse_args(student))
    assert trained[-1].distill_from == str(teachers / "baseline" / "seed0" / "last.pth")
    ablate.main(
        ablate.get_args_parser().parse_args(
            [*common, "--out", str(tmp_path / "t2"), "--only", "baseline", "--", "--train-split", "val"]
        )
    )
    student[student.index("--teacher-out") + 1] = str(tmp_path / "t2")
    with pytest.raises(ValueError, match="students/distill/seed0 was made with other settings: distill_from"):
        ablate.main(ablate.get_args_parser().parse_args(student))  # another teacher: not the run that is there
    student[student.index("--out") + 1] = str(tmp_path / "students2")
    with pytest.raises(
        ValueError,
        match="t2/baseline/seed0/last.pth learnt from .*data val, the model would learn from .*data train: a teacher",
    ):
        ablate.main(ablate.get_args_parser().parse_args(student))
    assert len(trained) == 3
