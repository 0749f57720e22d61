"""train_voc.py: one step, exact resume, the non-finite guard, DataParallel and DDP on the CPU, the schedule."""
import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

import train_voc
from dataset.synthetic import generate


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, {"train": 8, "val": 2}, seed=3, size=(128, 224))
    return root


def tiny_args(data_root, output_dir, *extra):
    return train_voc.get_args_parser().parse_args([
        "--data-root", str(data_root), "--output-dir", str(output_dir), "--backbone", "resnet18",
        "--fpn-channels", "32", "--head-convs", "1", "--resize", "128,224", "--batch-size", "2", "--epochs", "1",
        "--lr", "0.01", "--warmup-steps", "2", "--workers", "0", "--no-final-eval", *extra])


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def test_schedule_values():
    lr = train_voc.learning_rate
    assert lr(0, 1e-3, 500, 10_000, "step", (7000, 9000)) == pytest.approx(1e-3 / 500)
    assert lr(249, 1e-3, 500, 10_000, "step", (7000, 9000)) == pytest.approx(0.5e-3)
    assert lr(500, 1e-3, 500, 10_000, "step", (7000, 9000)) == pytest.approx(1e-3)
    assert lr(6999, 1e-3, 500, 10_000, "step", (7000, 9000)) == pytest.approx(1e-3)
    assert lr(7000, 1e-3, 500, 10_000, "step", (7000, 9000)) == pytest.approx(1e-4)
    assert lr(9000, 1e-3, 500, 10_000, "step", (7000, 9000)) == pytest.approx(1e-5)
    assert lr(100, 0.02, 100, 1100, "cosine") == pytest.approx(0.02)
    assert lr(600, 0.02, 100, 1100, "cosine") == pytest.approx(0.01)
    assert lr(1100, 0.02, 100, 1100, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr(350, 0.02, 100, 1100, "cosine") == pytest.approx(0.01 * (1 + math.cos(math.pi / 4)))


def test_presets_fill_unset_flags_and_flags_win():
    args = train_voc.apply_preset(train_voc.get_args_parser().parse_args(["--preset", "fod", "--lr", "0.005"]))
    assert (args.backbone, args.resize, args.batch_size, args.epochs, args.lr) == ("resnet50", (922, 1640), 2, 100, 0.005)
    assert args.augment == "flip,color,rotate" and args.pretrained == "imagenet" and args.momentum == 0.9
    args = train_voc.apply_preset(train_voc.get_args_parser().parse_args(["--preset", "fod-288"]))
    assert args.resize == (288, 512) and args.save_every == 1
    args = train_voc.apply_preset(train_voc.get_args_parser().parse_args(["--preset", "demo", "--save-every", "5"]))
    assert args.save_every == 5


def test_save_every_zero_keeps_only_last(data_root, tmp_path):
    train_voc.main(tiny_args(data_root, tmp_path, "--epochs", "2", "--save-every", "0"))
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["last.pth"]
    train_voc.main(tiny_args(data_root, tmp_path / "every", "--epochs", "2"))
    assert sorted(p.name for p in (tmp_path / "every").glob("*.pth")) == ["last.pth", "model_1.pth", "model_2.pth"]


def test_one_cpu_step_writes_checkpoints_and_logs(data_root, tmp_path):
    args = tiny_args(data_root, tmp_path, "--epochs", "1")
    summary = train_voc.main(args)
    assert summary["step"] == 4 and summary["skipped_steps"] == 0
    checkpoint = torch.load(tmp_path / "last.pth", map_location="cpu", weights_only=False)
    assert {"model", "optimizer", "scaler", "config", "classes", "epoch", "step"} <= set(checkpoint)
    assert checkpoint["epoch"] == 1 and checkpoint["step"] == 4
    assert checkpoint["classes"] == ["nail", "clip_B", "clip_Y", "L_stick"]
    assert (tmp_path / "model_1.pth").is_file() and (tmp_path / "loss.png").is_file()
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,cls_loss,cnt_loss,reg_loss,total_loss,lr,time" and len(rows) == 5
    assert not list(tmp_path.glob("*.tmp"))


def test_resume_is_exact(data_root, tmp_path):
    straight = tiny_args(data_root, tmp_path / "straight", "--epochs", "2", "--augment", "flip,color,rotate")
    train_voc.main(straight)
    first = tiny_args(data_root, tmp_path / "resumed", "--epochs", "1", "--augment", "flip,color,rotate")
    train_voc.main(first)
    torch.manual_seed(12345)  # whatever happened in between must not matter
    second = tiny_args(data_root, tmp_path / "resumed", "--epochs", "2", "--augment", "flip,color,rotate",
                       "--resume", str(tmp_path / "resumed" / "last.pth"))
    train_voc.main(second)
    a, b = weights(tmp_path / "straight" / "last.pth"), weights(tmp_path / "resumed" / "last.pth")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["head.cls_logits.weight"], weights(tmp_path / "resumed" / "model_1.pth")["head.cls_logits.weight"])


def test_resume_with_other_classes_is_refused(data_root, tmp_path):
    train_voc.main(tiny_args(data_root, tmp_path))
    args = tiny_args(data_root, tmp_path, "--classes", "nail,clip_B,clip_Y,L_stick,foreign", "--resume", str(tmp_path / "last.pth"))
    with pytest.raises(SystemExit, match="trained on classes"):
        train_voc.main(args)


def test_missing_data_root_and_empty_split_are_clear(tmp_path, data_root):
    with pytest.raises(SystemExit, match="does not exist"):
        train_voc.main(tiny_args(tmp_path / "nowhere", tmp_path / "out"))
    (data_root / "ImageSets" / "Main" / "empty.txt").write_text("\n")
    with pytest.raises(SystemExit, match="'empty' .* is empty"):
        train_voc.main(tiny_args(data_root, tmp_path / "out", "--train-split", "empty"))


def test_non_finite_loss_is_skipped_and_counted(data_root, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real_forward = train_voc.TrainStep.forward

    def forward(self, images, boxes, labels):
        losses = real_forward(self, images, boxes, labels)
        calls["n"] += 1
        if calls["n"] == 2:  # the second step's loss is inf
            losses = {k: v * float("inf") for k, v in losses.items()}
        return losses

    monkeypatch.setattr(train_voc.TrainStep, "forward", forward)
    summary = train_voc.main(tiny_args(data_root, tmp_path))
    assert summary["skipped_steps"] == 1 and summary["step"] == 3
    assert all(math.isfinite(v) for v in weights(tmp_path / "last.pth")["head.cls_logits.weight"].flatten().tolist())
    assert "step 1: non-finite loss" in capsys.readouterr().out


def test_only_the_main_process_reports_skipped_steps(data_root, tmp_path, monkeypatch, capsys):
    real_forward = train_voc.TrainStep.forward
    monkeypatch.setattr(train_voc.TrainStep, "forward",
                        lambda self, *a: {k: v * float("inf") for k, v in real_forward(self, *a).items()})
    monkeypatch.setattr(train_voc, "is_main_process", lambda: False)
    with pytest.raises(train_voc.NonFiniteLossError):
        train_voc.main(tiny_args(data_root, tmp_path, "--max-bad-steps", "2"))
    assert "non-finite loss" not in capsys.readouterr().out


def test_non_finite_losses_in_a_row_are_counted_across_epochs(data_root, tmp_path, monkeypatch):
    """An epoch whose 4 steps were all skipped is not an epoch that ran out of time: the count goes on."""
    real_forward = train_voc.TrainStep.forward
    monkeypatch.setattr(train_voc.TrainStep, "forward",
                        lambda self, *a: {k: v * float("nan") for k, v in real_forward(self, *a).items()})
    with pytest.raises(train_voc.NonFiniteLossError, match="6 non-finite losses in a row"):
        train_voc.main(tiny_args(data_root, tmp_path, "--epochs", "3", "--max-bad-steps", "6",
                                 "--time-budget", "10"))


def test_non_finite_loss_leaves_weights_untouched(data_root):
    model = train_voc.build_model(tiny_args(data_root, "unused"), ("nail", "clip_B", "clip_Y", "L_stick"))
    step_model = train_voc.TrainStep(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.full((2, 3, 128, 128), float("nan"))
    losses, applied = train_voc.train_step(step_model, optimizer, scaler, images,
                                           torch.tensor([[[4.0, 4.0, 30.0, 30.0]], [[8.0, 8.0, 60.0, 40.0]]]),
                                           torch.tensor([[1], [2]]), None, None)
    assert not applied and not math.isfinite(losses["total_loss"])
    after = model.state_dict()
    assert any(k.endswith("running_mean") for k in before)  # BatchNorm statistics are restored too
    for k, v in before.items():
        assert torch.equal(v, after[k]), k


def test_repeated_non_finite_losses_stop_training(data_root, tmp_path, monkeypatch):
    train_voc.main(tiny_args(data_root, tmp_path))
    good = weights(tmp_path / "last.pth")
    real_forward = train_voc.TrainStep.forward
    monkeypatch.setattr(train_voc.TrainStep, "forward",
                        lambda self, *a: {k: v * float("nan") for k, v in real_forward(self, *a).items()})
    with pytest.raises(train_voc.NonFiniteLossError, match="2 non-finite losses in a row"):
        train_voc.main(tiny_args(data_root, tmp_path, "--epochs", "2", "--max-bad-steps", "2",
                                 "--resume", str(tmp_path / "last.pth")))
    kept = weights(tmp_path / "last.pth")
    assert all(torch.equal(good[k], kept[k]) for k in good)


def test_data_parallel_path_on_cpu(data_root):
    model = train_voc.build_model(tiny_args(data_root, "unused"), ("nail", "clip_B", "clip_Y", "L_stick"))
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 40.0, 50.0]]), "labels": torch.tensor([2])},
               {"boxes": torch.tensor([[5.0, 5.0, 20.0, 20.0], [50.0, 60.0, 90.0, 100.0]]), "labels": torch.tensor([1, 4])}]
    boxes, labels = train_voc.pad_targets(targets)
    assert boxes.shape == (2, 2, 4) and labels.tolist() == [[2, 0], [1, 4]]
    images = torch.randn(2, 3, 128, 128)
    model.train()
    torch.manual_seed(0)
    direct = model(images, targets)
    torch.manual_seed(0)
    parallel = torch.nn.DataParallel(train_voc.TrainStep(model))(images, boxes, labels)
    for key in direct:
        torch.testing.assert_close(parallel[key].float().mean(), direct[key])
    assert train_voc.unwrap(torch.nn.DataParallel(train_voc.TrainStep(model))) is model


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world_size, port, data_root, output_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    summary = train_voc.main(tiny_args(data_root, output_dir, "--batch-size", "2"))
    torch.save(dict(summary["model"].named_parameters()), os.path.join(output_dir, f"rank{rank}.pt"))


def test_ddp_two_processes_end_with_equal_weights(data_root, tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(data_root), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    initial = train_voc.build_model(tiny_args(data_root, "unused"), ("nail", "clip_B", "clip_Y", "L_stick"))
    assert not torch.equal(a["head.cls_logits.weight"], dict(initial.named_parameters())["head.cls_logits.weight"])
    assert all(torch.equal(a[k], b[k]) for k in a)  # BatchNorm running statistics stay per process
    checkpoint = torch.load(tmp_path / "last.pth", map_location="cpu", weights_only=False)
    assert checkpoint["step"] == 2  # 8 pictures, 2 processes x 2 a step
    assert all(torch.equal(a[k], checkpoint["model"][k]) for k in a)


def test_schedule_is_sized_to_the_time_budget(monkeypatch):
    monkeypatch.setattr(train_voc.time, "time", lambda: 1000.0)
    state = {"step": 100, "total_steps": 1000, "milestones": (700, 900)}
    train_voc.fit_schedule_to_budget(state, deadline=1060.0, seconds_per_step=0.5)
    assert state["total_steps"] == 100 + int(0.98 * 60 / 0.5)
    assert state["milestones"] == (int(700 * 0.217), int(900 * 0.217))


def test_time_budget_stops_training(data_root, tmp_path):
    summary = train_voc.main(tiny_args(data_root, tmp_path, "--epochs", "50", "--time-budget", "0.15"))
    assert 0 < summary["step"] < 50 * 4 and summary["train_seconds"] < 60
    assert (tmp_path / "last.pth").is_file()


def test_epoch_cut_off_before_its_first_step_is_not_saved(data_root, tmp_path, monkeypatch, capsys):
    """The budget running out while epoch 2 loads its first batch must leave epoch 1 as the last one."""
    train_one_epoch = train_voc.train_one_epoch

    def out_of_time_in_epoch_2(*args):
        *args, deadline = args
        return train_one_epoch(*args, 0.0 if args[4] == 2 else deadline)

    monkeypatch.setattr(train_voc, "train_one_epoch", out_of_time_in_epoch_2)
    summary = train_voc.main(tiny_args(data_root, tmp_path, "--epochs", "3", "--time-budget", "10"))
    assert (summary["epoch"], summary["step"]) == (1, 4)
    checkpoint = torch.load(tmp_path / "last.pth", map_location="cpu", weights_only=False)
    assert (checkpoint["epoch"], checkpoint["step"]) == (1, 4)
    assert not (tmp_path / "model_2.pth").exists() and "epoch 2:" not in capsys.readouterr().out


def test_no_step_is_granted_when_no_time_is_left(monkeypatch):
    monkeypatch.setattr(train_voc.time, "time", lambda: 1000.0)
    state = {"step": 100, "total_steps": 1000, "milestones": (700, 900)}
    train_voc.fit_schedule_to_budget(state, deadline=1000.2, seconds_per_step=0.5)
    assert state["total_steps"] == 100


def test_crop_training_checkpoint_evaluates_full_pictures(data_root, tmp_path):
    """Trained on 64x64 crops of 128x224 pictures; the checkpoint says both, and evaluation sees whole pictures."""
    train_voc.main(tiny_args(data_root, tmp_path, "--crop", "64,64"))
    checkpoint = torch.load(tmp_path / "last.pth", map_location="cpu", weights_only=False)
    assert checkpoint["args"]["crop"] == [64, 64] and checkpoint["config"]["resize_size"] == (128, 224)
    from eval_voc import make_loader

    model = train_voc.FCOSDetector.from_checkpoint(checkpoint)
    loader = make_loader(data_root, "val", model.config.classes, model.config.resize_size, 2, 0, "cpu")
    images, targets = next(iter(loader))
    assert images.shape[-2:] == (128, 224) and all(t["offset"].tolist() == [0.0, 0.0] for t in targets)


def test_periodic_validation_keeps_best(data_root, tmp_path, capsys):
    train_voc.main(tiny_args(data_root, tmp_path, "--epochs", "2", "--val-every", "1"))
    header, *rows = (tmp_path / "val_log.csv").read_text().splitlines()
    assert header == "epoch,step,map"
    assert [row.split(",")[:2] for row in rows] == [["1", "4"], ["2", "8"]]
    best = torch.load(tmp_path / "best.pth", map_location="cpu", weights_only=False)
    assert best["best_map"] == max(float(row.split(",")[2]) for row in rows)
    assert "epoch 2: val mAP" in capsys.readouterr().out
