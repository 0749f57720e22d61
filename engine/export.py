"""ONNX: export the dense network (backbone, FPN, head, decoding) with its metadata, and run it with onnxruntime
or OpenVINO.

The graph takes ``images [B,3,H,W]`` (normalised, padded to multiples of 32; B, H and W free) and returns
``scores [B,N,C]`` and ``boxes [B,N,4]``. Thresholding, top-k and NMS stay outside it, in the one
implementation PyTorch uses too (:func:`model.fcos.select_for_config`). The file describes itself: its
metadata holds the model settings (classes, the resize rule, score threshold, NMS), the normalisation and
the per-class thresholds of the final evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dataset.pictures import PictureDataset, collate_pictures
from model import FCOSConfig, FCOSDetector
from model.fcos import select_for_config

FORMAT = "fcos-foreign-objects/1"
INPUT, OUTPUTS = "images", ("scores", "boxes")


class DenseNetwork(nn.Module):
    """``FCOSDetector.dense`` as a module, the part that is exported."""

    def __init__(self, detector: FCOSDetector):
        super().__init__()
        self.detector = detector

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.detector.dense(images)


def _json(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


def export_onnx(
    detector: FCOSDetector,
    path: str | Path,
    opset: int = 18,
    thresholds: dict[str, Any] | None = None,
    sample_size: tuple[int, int] = (320, 512),
) -> Path:
    """Write ``detector``'s dense network to ``path`` (dynamic batch, height and width), with metadata, checked
    by ``onnx.checker``."""
    import onnx

    path = Path(path)
    network = DenseNetwork(detector.float().eval()).eval()
    sample = torch.zeros(2, 3, *sample_size)
    batch, height, width = (
        torch.export.Dim("batch", min=1),
        torch.export.Dim("height32", min=1),
        torch.export.Dim("width32", min=1),
    )
    program = torch.onnx.export(
        network,
        (sample,),
        dynamo=True,
        opset_version=opset,
        input_names=[INPUT],
        output_names=list(OUTPUTS),
        dynamic_shapes={"images": {0: batch, 2: 32 * height, 3: 32 * width}},
    )
    program.optimize()
    program.save(str(path))
    graph = onnx.load(str(path))
    config = detector.config.to_dict()
    metadata = {
        "format": FORMAT,
        "config": _json(config),
        "classes": _json(list(detector.config.classes)),
        "resize_size": _json(list(detector.config.resize_size)),
        "mean": _json(detector.config.mean_std[0]),
        "std": _json(detector.config.mean_std[1]),
        "score_threshold": str(detector.config.score_threshold),
        "thresholds": _json(thresholds or {}),
        "input": "RGB, /255, normalised with mean and std, padded right/bottom to multiples of 32",
    }
    del graph.metadata_props[:]
    for key, value in metadata.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(graph, full_check=True)
    onnx.save(graph, str(path))
    return path


RUNTIMES = ("onnxruntime", "openvino")


def onnxruntime_session(path: Path, threads: int | None, optimization: str) -> Any:
    """An onnxruntime CPU session of ``path`` at graph ``optimization`` (none, basic, extended, all)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for unreadable models
        raise ValueError(f"{path}: not a readable ONNX model ({str(err).splitlines()[0]})") from None


class OnnxDetector:
    """An exported model run on the CPU by onnxruntime or OpenVINO (``runtime``), used like an FCOSDetector by the
    inference code."""

    def __init__(
        self, path: str | Path, threads: int | None = None, optimization: str = "all", runtime: str = "onnxruntime"
    ):
        self.path = Path(path)
        if runtime not in RUNTIMES:
            raise ValueError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        if runtime == "openvino":
            from .openvino_session import OpenVinoSession

            self.session = OpenVinoSession(self.path, threads)
            metadata = self.session.metadata
        else:
            self.session = onnxruntime_session(self.path, threads, optimization)
            metadata = self.session.get_modelmeta().custom_metadata_map
        if metadata.get("format") != FORMAT:
            raise ValueError(
                f"{self.path}: an ONNX model without this project's metadata (format "
                f"{metadata.get('format')!r}, expected {FORMAT!r}); export it with export_onnx.py"
            )
        self.config = FCOSConfig.from_dict(json.loads(metadata["config"]))
        self.thresholds = json.loads(metadata.get("thresholds", "{}")) or None

    def dense(self, images: Tensor) -> tuple[Tensor, Tensor]:
        scores, boxes = self.session.run(list(OUTPUTS), {INPUT: images.detach().float().cpu().contiguous().numpy()})
        return torch.from_numpy(scores), torch.from_numpy(boxes)

    def select(
        self,
        scores: Tensor,
        boxes: Tensor,
        image_size: tuple[int, int],
        score_threshold: float | Tensor | None = None,
        pass_sizes: list[tuple[int, int]] | None = None,
    ) -> list[dict[str, Tensor]]:
        return select_for_config(self.config, scores, boxes, image_size, score_threshold, pass_sizes)

    def to(self, device: Any) -> OnnxDetector:
        return self


def model_inputs(pictures: list[Path], config: FCOSConfig) -> list[Tensor]:
    """Each readable picture as the model of ``config`` sees it, one at a time: ``[1, 3, H, W]``, resized,
    normalised and padded to multiples of 32 (calibration pictures for :func:`quantize_int8`). A ``ValueError``
    naming the pictures when none can be read."""
    dataset = PictureDataset(pictures, config.resize_size, config.normalization)
    images, unreadable = [], []
    for i in range(len(dataset)):
        image, _, failed = collate_pictures([dataset[i]])
        images += [] if image is None else [image]
        unreadable += [f"{target['path']} ({target['error']})" for target in failed]
    if not images:
        raise ValueError(f"no readable picture: {', '.join(unreadable)}")
    return images


def quantize_int8(path: str | Path, output: str | Path, calibration: list[Tensor]) -> Path:
    """Static int8 quantisation of the convolutions (QDQ; per-channel int8 weights, uint8 inputs whose ranges come
    from running ``calibration``, a few normalised pictures ``[1,3,H,W]`` like those the model will see). The
    metadata is kept.

    Only the convolutions, and not the head's last three, whose outputs become scores and box sides: quantising
    the decoding too rounds box corners to 1/256 of their range, several pixels at 720x1280, as large as the
    smallest objects' margin (docs/speed.md has the mAP of each choice)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Pictures(CalibrationDataReader):
        def __init__(self) -> None:
            self.pending = iter(calibration)

        def get_next(self) -> dict | None:
            image = next(self.pending, None)
            return None if image is None else {INPUT: image.float().numpy()}

    path, output = Path(path), Path(output)
    prepared = output.with_name(output.stem + ".prepared.onnx")
    quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True)
    outputs = ("cls_logits", "bbox_pred", "centerness")
    last = [
        node.name
        for node in onnx.load(str(prepared)).graph.node
        if node.op_type == "Conv" and any(name in node.input[1] for name in outputs)
    ]
    quantize_static(
        str(prepared),
        str(output),
        Pictures(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["Conv"],
        nodes_to_exclude=last,
    )
    prepared.unlink()
    graph, source = onnx.load(str(output)), onnx.load(str(path), load_external_data=False)
    del graph.metadata_props[:]
    graph.metadata_props.extend(source.metadata_props)
    onnx.save(graph, str(output))
    return output


def load_onnx_detector(
    path: str | Path, threads: int | None = None, optimization: str = "all", runtime: str = "onnxruntime"
) -> OnnxDetector:
    """An :class:`OnnxDetector`; ``FileNotFoundError`` or ``ValueError`` naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ONNX model not found")
    return OnnxDetector(path, threads, optimization, runtime)
