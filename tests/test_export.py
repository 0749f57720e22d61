"""ONNX export: dynamic sizes, the same detections as PyTorch, self-describing metadata, clear errors."""

import errno
import importlib.util
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import cli
import detect
import eval_voc
import export_onnx
from dataset.pictures import PictureDataset, collate_pictures
from dataset.synthetic import generate
from engine.checkpoint import save_checkpoint
from engine.export import FORMAT, load_onnx_detector, model_inputs
from model import FCOSConfig, FCOSDetector

REPO = Path(__file__).resolve().parents[1]
WITHOUT_OPENVINO = importlib.util.find_spec("openvino") is None
RUNTIMES = [
    "onnxruntime",
    pytest.param("openvino", marks=pytest.mark.skipif(WITHOUT_OPENVINO, reason="no openvino installed")),
]
THRESHOLDS = {
    name: {"best_f1": {"threshold": t, "precision": 1.0, "recall": 1.0, "f1": 1.0}}
    for name, t in zip(("nail", "clip_B", "clip_Y", "L_stick"), (0.2, 0.25, 0.3, 0.35))
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small random detector whose GroupNorm affine weights and per-level scales are all different (so a
    wrong GroupNorm export or a mixed-up level shows), its checkpoint and its export."""
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model = FCOSDetector(
        FCOSConfig(
            backbone="resnet18",
            fpn_channels=32,
            head_convs=2,
            gn_groups=8,
            resize_size=(128, 224),
            score_threshold=0.02,
        )
    ).eval()
    with torch.no_grad():
        for module in model.head.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
        for k, scale in enumerate(model.head.scales):
            scale.scale.fill_(0.5 + k)
        model.head.cls_logits.bias.fill_(-1.0)  # many detections above the threshold
    checkpoint = {
        "model": model.state_dict(),
        "config": model.config.to_dict(),
        "classes": list(model.config.classes),
        "epoch": 1,
        "thresholds": THRESHOLDS,
    }
    save_checkpoint(checkpoint, root / "model.pth")
    pictures = root / "pictures"
    pictures.mkdir()
    rng = np.random.default_rng(0)
    for name, (w, h) in {"wide.jpg": (300, 200), "tall.png": (150, 260), "odd.jpg": (333, 97)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(pictures / name)
    export_onnx.main(
        export_onnx.get_args_parser().parse_args(
            ["--checkpoint", str(root / "model.pth"), "--output", str(root / "model.onnx"), "--check", str(pictures)]
        )
    )
    return model, root


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_graph_is_valid_and_describes_itself(exported, runtime):
    model, root = exported
    graph = onnx.load(str(root / "model.onnx"))
    onnx.checker.check_model(graph, full_check=True)
    metadata = {p.key: p.value for p in graph.metadata_props}
    assert metadata["format"] == FORMAT and json.loads(metadata["classes"]) == list(model.config.classes)
    assert json.loads(metadata["resize_size"]) == [128, 224] and json.loads(metadata["thresholds"]) == THRESHOLDS
    shape = graph.graph.input[0].type.tensor_type.shape.dim
    assert all(d.dim_param for d in shape[:1] + shape[2:])  # batch, height and width are free
    detector = load_onnx_detector(root / "model.onnx", runtime=runtime)
    assert detector.config == model.config and detector.thresholds == THRESHOLDS


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("shape", [(1, 3, 128, 224), (3, 3, 96, 160), (2, 3, 224, 96), (1, 3, 352, 544)])
def test_dense_outputs_match_pytorch_at_every_size(exported, shape, runtime):
    """Sizes whose P6 and P7 have odd sides too: the pyramid's ceil-halving must export as it computes."""
    model, root = exported
    images = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        scores, boxes = model.dense(images)
    onnx_scores, onnx_boxes = load_onnx_detector(root / "model.onnx", runtime=runtime).dense(images)
    assert onnx_scores.shape == scores.shape and onnx_boxes.shape == boxes.shape
    torch.testing.assert_close(onnx_scores, scores, atol=1e-4, rtol=0)
    torch.testing.assert_close(onnx_boxes, boxes, atol=0.05, rtol=0)


@pytest.mark.skipif(WITHOUT_OPENVINO, reason="no openvino installed")
def test_openvino_keeps_the_models_of_the_latest_shapes_only(exported, monkeypatch):
    from engine import openvino_session

    monkeypatch.setattr(openvino_session, "COMPILED_SHAPES", 2)
    detector = load_onnx_detector(exported[1] / "model.onnx", runtime="openvino")
    for size in ((64, 96), (96, 64), (64, 96), (128, 128)):
        detector.dense(torch.zeros(1, 3, *size))
    assert [dict(shapes)["images"][2:] for shapes in detector.session.compiled] == [(64, 96), (128, 128)]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_batch_of_different_pictures_gives_the_same_detections(exported, runtime):
    model, root = exported
    paths = sorted((root / "pictures").iterdir())
    images, _, _ = collate_pictures([PictureDataset(paths, model.config.resize_size)[i] for i in range(len(paths))])
    detector = load_onnx_detector(root / "model.onnx", runtime=runtime)
    with torch.inference_mode():
        expected = model.select(*model.dense(images), tuple(images.shape[-2:]))
    found = detector.select(*detector.dense(images), tuple(images.shape[-2:]))
    for a, b in zip(expected, found):
        assert len(a["scores"]) == len(b["scores"]) > 0
        assert torch.equal(a["labels"], b["labels"])
        assert (a["boxes"] - b["boxes"]).abs().max() <= 0.5 and (a["scores"] - b["scores"]).abs().max() <= 1e-3


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_detect_writes_the_same_json_through_an_onnx_runtime(exported, tmp_path, runtime):
    _, root = exported
    common = ["--input", str(root / "pictures"), "--workers", "0", "--score-threshold", "auto"]
    torch_run = detect.main(
        detect.get_args_parser().parse_args(
            ["--checkpoint", str(root / "model.pth"), "--output-dir", str(tmp_path / "pt"), *common]
        )
    )
    onnx_run = detect.main(
        detect.get_args_parser().parse_args(
            ["--onnx", str(root / "model.onnx"), "--runtime", runtime, "--output-dir", str(tmp_path / "onnx"), *common]
        )
    )
    assert onnx_run["threshold"] == torch_run["threshold"] == [0.2, 0.25, 0.3, 0.35]
    a = json.loads((tmp_path / "pt" / "detections.json").read_text())
    b = json.loads((tmp_path / "onnx" / "detections.json").read_text())
    assert len(a) == len(b) > 0 and len(onnx_run["outputs"]) == 3
    for x, y in zip(a, b):
        assert (x["image_id"], x["category"]) == (y["image_id"], y["category"])
        assert abs(x["score"] - y["score"]) <= 1e-3 and max(abs(p - q) for p, q in zip(x["bbox"], y["bbox"])) <= 0.5


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_bad_onnx_files_are_named(tmp_path, runtime):
    with pytest.raises(FileNotFoundError, match="absent.onnx: ONNX model not found"):
        load_onnx_detector(tmp_path / "absent.onnx", runtime=runtime)
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x01garbage" * 50)
    with pytest.raises(ValueError, match="junk.onnx: not a readable ONNX model"):
        load_onnx_detector(tmp_path / "junk.onnx", runtime=runtime)
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 4, 3).eval(), (torch.zeros(1, 3, 8, 8),), str(plain), dynamo=True)
    with pytest.raises(ValueError, match="plain.onnx: an ONNX model without this project's metadata"):
        load_onnx_detector(plain, runtime=runtime)


def test_a_runtime_is_for_onnx_models_only(exported, tmp_path):
    """``--runtime openvino`` beside a checkpoint would be ignored: it is refused, in one line, by the real command
    lines, and by FrameDetector.load; an unknown runtime is refused by OnnxDetector itself."""
    from engine.export import OnnxDetector
    from engine.frame_detector import FrameDetector

    checkpoint = exported[1] / "model.pth"
    for script, argv in {
        "detect.py": ["--input", str(exported[1] / "pictures"), "--output-dir", str(tmp_path / "out")],
        "eval_voc.py": ["--data-root", str(tmp_path / "nowhere")],
    }.items():
        done = subprocess.run(
            [sys.executable, script, "--checkpoint", str(checkpoint), "--runtime", "openvino", *argv],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 2 and not (tmp_path / "out").exists()
        assert done.stderr.splitlines() == [
            f"{script}: error: --runtime openvino runs --onnx models; a --checkpoint runs in PyTorch"
        ]
    with pytest.raises(ValueError, match="model.pth: runtime 'openvino' runs ONNX exports"):
        FrameDetector.load(checkpoint, runtime="openvino")
    with pytest.raises(ValueError, match="--runtime must be one of onnxruntime, openvino, got 'tensorrt'"):
        OnnxDetector(exported[1] / "model.onnx", runtime="tensorrt")


def test_openvino_missing_says_how_to_install(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    with pytest.raises(ValueError, match="--runtime openvino needs OpenVINO: pip install -r requirements-openvino.txt"):
        load_onnx_detector(exported[1] / "model.onnx", runtime="openvino")


def test_export_needs_a_writable_place_and_a_checkpoint(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        export_onnx.main(
            export_onnx.get_args_parser().parse_args(
                ["--checkpoint", "x.pth", "--output", str(tmp_path / "file" / "m.onnx")]
            )
        )
    with pytest.raises(FileNotFoundError, match="x.pth: checkpoint not found"):
        export_onnx.main(
            export_onnx.get_args_parser().parse_args(
                ["--checkpoint", str(tmp_path / "x.pth"), "--output", str(tmp_path / "m.onnx")]
            )
        )


@pytest.mark.parametrize("flag", ["--check", "--int8"])
def test_unreadable_pictures_are_named_before_the_export(exported, tmp_path, monkeypatch, capsys, flag):
    _, root = exported
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "broken.jpg").write_bytes(b"not a picture")
    (tmp_path / "pictures" / "empty.png").write_bytes(b"")

    def export_onnx_(*args, **kwargs):
        raise AssertionError("exported before the pictures were read")

    monkeypatch.setattr(export_onnx, "export_onnx", export_onnx_)
    monkeypatch.delenv("FCOS_DEBUG", raising=False)
    argv = ["--checkpoint", str(root / "model.pth"), "--output", str(tmp_path / "m.onnx"), "--check", ""]
    args = export_onnx.get_args_parser().parse_args([*argv, flag, str(tmp_path / "pictures")])
    with pytest.raises(SystemExit) as err:
        cli.run(export_onnx.main, args, "export_onnx.py")
    printed = capsys.readouterr().err.strip()
    assert err.value.code == 2 and printed.startswith(f"export_onnx.py: error: {flag} {tmp_path / 'pictures'}: ")
    assert "broken.jpg" in printed and "empty.png" in printed and "\n" not in printed
    assert list(tmp_path.iterdir()) == [tmp_path / "pictures"]


def test_a_full_disk_names_the_output(exported, tmp_path, monkeypatch, capsys):
    """The export writes to a temporary file, with onnx.save, whose error on a full disk names no file."""
    _, root = exported

    def export_onnx_(detector, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_onnx, "export_onnx", export_onnx_)
    monkeypatch.delenv("FCOS_DEBUG", raising=False)
    argv = ["--checkpoint", str(root / "model.pth"), "--output", str(tmp_path / "m.onnx"), "--check", ""]
    with pytest.raises(SystemExit) as err:
        cli.run(export_onnx.main, export_onnx.get_args_parser().parse_args(argv), "export_onnx.py")
    printed = capsys.readouterr().err.strip()
    assert err.value.code == 2 and printed == f"export_onnx.py: error: {tmp_path / 'm.onnx'}: no space left on the disk"
    assert list(tmp_path.iterdir()) == []


def test_int8_export_quantises_the_convolutions_only_and_keeps_the_metadata(exported, tmp_path, monkeypatch):
    """``--int8``: every convolution in int8 but the head's last ones, so scores and box sides are not rounded to
    8 bits; the scores stay near float32's. Run from another folder: the default ``--check`` is the project's
    sample pictures wherever it runs."""
    model, root = exported
    monkeypatch.chdir(tmp_path)
    result = export_onnx.main(
        export_onnx.get_args_parser().parse_args(
            ["--checkpoint", str(root / "model.pth"), "--output", "m.onnx", "--int8", str(root / "pictures")]
        )
    )
    assert result["difference"]["scores"] < 1e-4
    assert result["int8"] == Path("m_int8.onnx") and sorted(p.name for p in tmp_path.iterdir()) == [
        "m.onnx",
        "m_int8.onnx",
    ]
    graph = onnx.load(str(tmp_path / "m_int8.onnx")).graph
    consumers = defaultdict(set)
    for node in graph.node:
        for name in node.input:
            consumers[name].add(node.op_type)
    producers = {name: node.op_type for node in graph.node for name in node.output}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    last = [node for node in convs if any(k in node.input[1] for k in ("cls_logits", "bbox_pred", "centerness"))]
    assert sum(producers.get(node.input[1]) == "DequantizeLinear" for node in convs) == len(convs) - len(last) > 0
    for node in last:  # scores and box sides stay float
        assert producers.get(node.input[1]) != "DequantizeLinear" and "QuantizeLinear" not in consumers[node.output[0]]
    detector = load_onnx_detector(tmp_path / "m_int8.onnx")
    assert detector.config == model.config and detector.thresholds == THRESHOLDS
    images = model_inputs(sorted((root / "pictures").iterdir()), model.config)[0]
    with torch.inference_mode():
        scores, _ = model.dense(images)
    int8_scores, _ = detector.dense(images)
    assert int8_scores.shape == scores.shape and not torch.equal(int8_scores, scores)
    assert (int8_scores - scores).abs().mean() < 0.005
    if not WITHOUT_OPENVINO:  # OpenVINO runs the same int8 convolutions with its own kernels
        openvino_scores, _ = load_onnx_detector(tmp_path / "m_int8.onnx", runtime="openvino").dense(images)
        assert (openvino_scores - scores).abs().mean() < 0.005


def close(a, b):
    """Two detections lists the same up to onnxruntime's rounding (same order, classes, pictures)."""
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert (x["image_id"], x["category"]) == (y["image_id"], y["category"])
        assert abs(x["score"] - y["score"]) <= 1e-3 and max(abs(p - q) for p, q in zip(x["bbox"], y["bbox"])) <= 0.5


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_eval_voc_scores_the_onnx_model_as_the_checkpoint(exported, tmp_path, runtime):
    _, root = exported
    generate(tmp_path / "voc", {"val": 3}, seed=0, size=(96, 160))
    found = {}
    onnx_model = ["--onnx", str(root / "model.onnx"), "--runtime", runtime]
    for model in (["--checkpoint", str(root / "model.pth")], onnx_model):
        saved = tmp_path / f"{model[0][2:]}.json"
        argv = [*model, "--data-root", str(tmp_path / "voc"), "--workers", "0", "--save-detections", str(saved)]
        eval_voc.main(eval_voc.get_args_parser().parse_args(argv))
        found[model[0]] = json.loads(saved.read_text())
    close(found["--checkpoint"], found["--onnx"])


@pytest.mark.parametrize("script", [eval_voc, detect])
def test_compile_refuses_an_onnx_model_by_name(exported, tmp_path, script):
    _, root = exported
    generate(tmp_path / "voc", {"val": 1}, seed=0, size=(96, 160))
    place = {
        eval_voc: ["--data-root", str(tmp_path / "voc")],
        detect: ["--input", str(root / "pictures"), "--output-dir", str(tmp_path / "out")],
    }[script]
    args = script.get_args_parser().parse_args(["--onnx", str(root / "model.onnx"), *place, "--compile"])
    with pytest.raises(ValueError, match="--compile is for checkpoints; .*model.onnx is run by an ONNX runtime"):
        script.main(args)


def test_a_read_only_folder_is_named(tmp_path, monkeypatch):
    """On a read-only file system even removing a missing file fails; the message still names the folder,
    not the hidden file that proved it."""

    def refuse(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "write_bytes", refuse)
    monkeypatch.setattr(Path, "unlink", refuse)
    args = export_onnx.get_args_parser().parse_args(["--checkpoint", "x.pth", "--output", str(tmp_path / "m.onnx")])
    with pytest.raises(OSError, match=rf"^{re.escape(str(tmp_path))}: cannot write there \(Read-only file system\)$"):
        export_onnx.main(args)
