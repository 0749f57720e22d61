"""OpenVINO as the runtime of an exported model: the ONNX file run by OpenVINO's CPU plugin, called as an
onnxruntime session is called.

Why: on 2 cores of an AMD EPYC (AVX-512, no AMX) OpenVINO ran the statically quantised ``fod-cpu`` model at
about 0.6x onnxruntime's time, the same file and the same int8 convolutions (docs/speed.md). Float layers stay in
float32: OpenVINO would compute them in bfloat16 by default on CPUs with avx512_bf16, which is faster but moves
boxes by pixels (13 px on one input), where float32 agrees with onnxruntime within 1e-3 px. Each input shape is
compiled once, on first sight: a model compiled for one static shape ran in 0.6x the time of the same model
compiled for dynamic shapes. The last :data:`COMPILED_SHAPES` shapes are kept (a camera or a data set at one size
uses one; pictures of many sizes recompile rather than hold a model each).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

INSTALL = "pip install -r requirements-openvino.txt"
COMPILED_SHAPES = 4


class OpenVinoSession:
    """``run(output_names, {input_name: array})`` -> the outputs as numpy arrays, as ``onnxruntime``'s
    ``InferenceSession.run``; ``metadata``: the ONNX file's metadata properties (``{key: value}``)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise ValueError(f"--runtime openvino needs OpenVINO: {INSTALL}") from None
        self.path = Path(path)
        self.core = ov.Core()
        try:
            self.model = self.core.read_model(str(self.path))
        except RuntimeError as err:
            raise ValueError(f"{self.path}: not a readable ONNX model ({str(err).strip().splitlines()[0]})") from None
        info = self.model.get_rt_info()
        framework = info["framework"] if "framework" in info else {}  # the ONNX file's metadata properties
        self.metadata = {key: value.astype(str) for key, value in framework.items()}
        self.properties: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            self.properties["INFERENCE_NUM_THREADS"] = threads
        self.compiled: OrderedDict[tuple, Any] = OrderedDict()  # by the inputs' names and shapes, newest last

    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        shapes = tuple((name, tuple(array.shape)) for name, array in feeds.items())
        if shapes not in self.compiled:
            model = self.model.clone()
            model.reshape({name: list(shape) for name, shape in shapes})
            self.compiled[shapes] = self.core.compile_model(model, "CPU", self.properties)
            if len(self.compiled) > COMPILED_SHAPES:
                self.compiled.popitem(last=False)
        self.compiled.move_to_end(shapes)
        compiled = self.compiled[shapes]
        outputs = compiled(feeds)
        return [outputs[compiled.output(name)] for name in output_names]
