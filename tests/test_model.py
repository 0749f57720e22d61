"""FCOSDetector construction, pretrained loading, shapes and checkpoints."""

import math
import urllib.error

import pytest
import torch
from torchvision.ops import FrozenBatchNorm2d

from engine.checkpoint import detector_from_checkpoint
from model import FCOSConfig, FCOSDetector


def small_config(**kwargs):
    return FCOSConfig(backbone="resnet18", fpn_channels=32, head_convs=1, gn_groups=8, **kwargs)


def test_defaults_are_the_original_run():
    config = FCOSConfig()
    assert config.classes == ("nail", "clip_B", "clip_Y", "L_stick") and config.num_classes == 4
    assert config.backbone == "resnet50" and config.head_convs == 4 and config.fpn_channels == 256
    assert config.strides == (8, 16, 32, 64, 128) and config.center_sampling_radius == 1.5
    assert config.size_ranges[0] == (-1.0, 64.0) and config.size_ranges[-1] == (512.0, float("inf"))
    assert (config.score_threshold, config.nms_iou, config.pre_nms_top_k, config.max_detections) == (
        0.05,
        0.6,
        1000,
        100,
    )
    assert FCOSConfig(num_classes=20).classes[-1] == "class_20"
    with pytest.raises(ValueError, match="num_classes=3"):
        FCOSConfig(num_classes=3, classes=("a", "b"))


@pytest.mark.parametrize(
    "ranges, problem",
    [
        (((-1, 64), (64, 128), (128, 256), (256, 512)), "5 strides but 4 size ranges"),
        (((-1, 64), (32, 128), (128, 256), (256, 512), (512, math.inf)), "meet end to end"),  # overlap
        (((-1, 64), (96, 128), (128, 256), (256, 512), (512, math.inf)), "meet end to end"),  # a gap
        (((-1, 64), (64, 64), (64, 256), (256, 512), (512, math.inf)), "increasing"),  # an empty level
    ],
)
def test_size_ranges_that_would_leave_objects_unassigned_or_doubly_assigned_are_refused(ranges, problem):
    with pytest.raises(ValueError, match=problem):
        FCOSConfig(size_ranges=ranges)


def test_from_scratch_uses_trainable_batchnorm():
    model = FCOSDetector(small_config())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())


def test_local_pretrained_weights_freeze_stem_and_layer1(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = FCOSDetector(small_config(pretrained=str(path)))
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.backbone.modules())
    assert torch.equal(model.backbone.layer3[0].conv1.weight, reference.layer3[0].conv1.weight)
    assert not any(p.requires_grad for p in model.backbone.stem.parameters())
    assert not any(p.requires_grad for p in model.backbone.layer1.parameters())
    assert all(p.requires_grad for p in model.backbone.layer2.parameters())


def test_imagenet_weights_offline_say_how_to_pass_a_file(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match="pretrained='/path/to/resnet18.pth'"):
        FCOSDetector(small_config(pretrained=True))


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        FCOSDetector(small_config(pretrained=str(tmp_path / "nowhere.pth")))


def test_eval_output_format_and_checkpoint_round_trip():
    torch.manual_seed(0)
    model = FCOSDetector(small_config()).eval()
    images = torch.randn(2, 3, 96, 160)
    with torch.no_grad():
        dets = model(images)
    assert len(dets) == 2
    for d in dets:
        assert d["boxes"].shape[1] == 4 and d["scores"].shape == d["labels"].shape == d["boxes"].shape[:1]
        assert ((d["labels"] >= 1) & (d["labels"] <= 4)).all()
        assert (d["boxes"][:, 2] <= 160).all() and (d["boxes"][:, 3] <= 96).all() and (d["boxes"] >= 0).all()
    checkpoint = {
        "model": model.state_dict(),
        "config": model.config.to_dict(),
        "classes": list(model.config.classes),
        "epoch": 0,
    }
    restored = detector_from_checkpoint(checkpoint)
    with torch.no_grad():
        again = restored(images)
    for a, b in zip(dets, again):
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])


def test_the_atss_assigner_trains_and_is_kept_in_checkpoints():
    torch.manual_seed(0)
    model = FCOSDetector(small_config(assigner="atss")).train()
    targets = [{"boxes": torch.tensor([[20.0, 30.0, 44.0, 50.0]]), "labels": torch.tensor([2])}]
    sums = model.loss_sums(torch.randn(1, 3, 96, 160), targets)
    assert sums["num_positive"] > 0 and all(torch.isfinite(v) for v in sums.values())
    assert FCOSConfig.from_dict(model.config.to_dict()).assigner == "atss"
    with pytest.raises(ValueError, match="assigner must be one of fcos, atss"):
        small_config(assigner="atts")
    with pytest.raises(ValueError, match="atss_top_k must be at least 1"):
        small_config(assigner="atss", atss_top_k=0)
    stored = small_config().to_dict()
    del stored["assigner"], stored["atss_top_k"]  # a checkpoint from before the choice: FCOS's rule
    assert FCOSConfig.from_dict(stored).assigner == "fcos"


def test_the_centerness_weighted_box_loss_is_the_models_and_kept_in_checkpoints():
    """The model's box loss with reg_weighting centerness is its sums' weighted mean; the classification and
    centerness losses are those of the plain weighting."""
    torch.manual_seed(0)
    model = FCOSDetector(small_config()).train()
    images = torch.randn(1, 3, 96, 160)
    targets = [{"boxes": torch.tensor([[20.0, 30.0, 60.0, 70.0]]), "labels": torch.tensor([2])}]
    plain = model(images, targets)
    model.config.reg_weighting = "centerness"
    sums = model.loss_sums(images, targets)
    weighted = model(images, targets)
    assert 1 < sums["reg_weight"] < sums["num_positive"]
    assert weighted["reg_loss"] == sums["reg_loss"] / sums["reg_weight"]
    assert weighted["cls_loss"] == plain["cls_loss"] and weighted["reg_loss"] != plain["reg_loss"]
    assert FCOSConfig.from_dict(model.config.to_dict()).reg_weighting == "centerness"
    with pytest.raises(ValueError, match="reg_weighting must be one of none, centerness"):
        small_config(reg_weighting="center")
    stored = small_config().to_dict()
    del stored["reg_weighting"]  # a checkpoint from before the choice
    assert FCOSConfig.from_dict(stored).reg_weighting == "none"


def test_training_needs_targets():
    model = FCOSDetector(small_config()).train()
    with pytest.raises(ValueError, match="targets"):
        model(torch.randn(1, 3, 64, 64))


def test_pretrained_checkpoint_restores_without_the_weights_file(tmp_path, monkeypatch):
    """A model trained from a pretrained trunk (FrozenBatchNorm) comes back from its checkpoint exactly,
    without the weights file and without any download."""
    import torchvision

    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    model = FCOSDetector(small_config(pretrained=str(path))).eval()
    checkpoint = {"model": model.state_dict(), "config": model.config.to_dict(), "classes": list(model.config.classes)}
    path.unlink()
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", lambda *a, **k: 1 / 0)
    restored = detector_from_checkpoint(checkpoint)
    assert any(isinstance(m, FrozenBatchNorm2d) for m in restored.modules())
    assert not any(p.requires_grad for p in restored.backbone.layer1.parameters())
    state = restored.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_compiling_keeps_outputs_and_the_state_dict():
    """torch.compile (traced here with the eager backend, which compiles no code) wraps the network only: the
    same losses and detections, the same state dict keys, at two picture sizes."""
    torch.manual_seed(0)
    model = FCOSDetector(small_config()).eval()
    compiled = FCOSDetector(small_config()).eval()
    compiled.load_state_dict(model.state_dict())
    compiled.compile(backend="eager")
    assert compiled.state_dict().keys() == model.state_dict().keys()
    for size in ((96, 160), (128, 96)):
        images = torch.randn(2, 3, *size)
        with torch.no_grad():
            for a, b in zip(model(images), compiled(images)):
                assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 40.0, 50.0]]), "labels": torch.tensor([2])}] * 2
    images = torch.randn(2, 3, 96, 160)
    torch.testing.assert_close(compiled.train()(images, targets), model.train()(images, targets))


def test_compile_falls_back_to_eager_with_the_reason(monkeypatch):
    from engine import compiling

    compiling.compile_unavailable.cache_clear()
    monkeypatch.setattr(torch, "compile", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no C++ compiler found")))
    model = FCOSDetector(small_config())
    assert compiling.compile_detector(model) == "eager: torch.compile is unavailable here (no C++ compiler found)"
    assert model.network == model._network
    compiling.compile_unavailable.cache_clear()


def test_the_memory_format_follows_the_cpu_and_leaves_the_results(monkeypatch):
    from engine.memory_format import resolve_channels_last

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert resolve_channels_last("auto", "cpu")[0] is False and resolve_channels_last("on", "cpu")[0] is True
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert resolve_channels_last("auto", "cpu") == (
        True,
        "the CPU has AVX512, where channels-last convolutions are faster",
    )
    assert resolve_channels_last("off", "cpu")[0] is False and resolve_channels_last("auto", "cuda")[0] is True
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert resolve_channels_last("auto", "cpu", "resnet18")[0] is False
    assert resolve_channels_last("auto", "cpu", "efficientnet_lite2") == (
        True,
        "efficientnet_lite2's depthwise convolutions run fastest channels-last on CPUs",
    )
    assert resolve_channels_last("off", "cpu", "efficientnet_lite0")[0] is False
    torch.manual_seed(0)
    model = FCOSDetector(small_config()).eval()
    images = torch.randn(1, 3, 96, 160)
    with torch.no_grad():
        nhwc = model.dense(images)
        model.set_channels_last(False)
        assert model.backbone.stem[0].weight.is_contiguous() and not model.channels_last
        nchw = model.dense(images)
    for a, b in zip(nhwc, nchw):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_the_memory_format_is_the_detectors_state_not_a_setting():
    """It was a config field, changed at run time and written into every checkpoint."""
    model = FCOSDetector(small_config())
    model.set_channels_last(False)
    assert "channels_last" not in model.config.to_dict()
    old = {**model.config.to_dict(), "channels_last": True}  # a checkpoint written when it was one
    assert FCOSConfig.from_dict(old) == model.config
