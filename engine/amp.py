"""Mixed precision: one policy for training, evaluation, detection and the benchmarks.

``auto`` picks bfloat16 where it is faster than float32: on GPUs that compute it natively (float16 with a
gradient scaler on older ones). On CPUs the rule follows the trunk, as ``--channels-last auto`` does:
EfficientNet-Lite trunks stay in float32, as their depthwise convolutions ran slower in bfloat16 even where a
plain convolution ran 1.8x as fast; ResNets take bfloat16 on CPUs with AMX tiles, and on other CPUs when a
short timed probe of convolutions like theirs says so: without native bfloat16 the conversions at every layer
can cost more than they save (measurements: docs/speed.md).
"""

from __future__ import annotations

import contextlib
import functools
import time
from contextlib import AbstractContextManager

import torch
from torch import nn

AMP_CHOICES = ("auto", "bf16", "fp16", "off")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
PROBE_GAIN = 1.1  # bfloat16 must be at least this much faster to be chosen


def cpu_has_amx() -> bool:
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


@functools.lru_cache(maxsize=1)
def cpu_bf16_speedup() -> float:
    """float32 time / bfloat16 time of a small convolution training step (3x3, 64 channels, NHWC, batch 8 of
    64x64), the kind of work that dominates a detector's step; best of three each, alternated. About a second."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1))
    net = net.to(memory_format=torch.channels_last)
    x = torch.randn(8, 64, 64, 64).contiguous(memory_format=torch.channels_last)

    def step(amp: str) -> float:
        tic = time.perf_counter()
        with autocast("cpu", amp):
            y = net(x)
        y.float().square().mean().backward()
        return time.perf_counter() - tic

    times: dict[str, list[float]] = {"off": [], "bf16": []}
    for _ in range(4):
        for amp in times:
            times[amp].append(step(amp))
    return min(times["off"][1:]) / min(times["bf16"][1:])  # the first round warms up


def resolve_amp(amp: str, device: torch.device | str, backbone: str) -> tuple[str, str]:
    """(``bf16`` | ``fp16`` | ``off``, why) for the ``--amp`` choice, a network of trunk ``backbone`` and ``device``."""
    device = torch.device(device)
    if amp not in AMP_CHOICES:
        raise ValueError(f"--amp must be one of {', '.join(AMP_CHOICES)}, got {amp!r}")
    if amp != "auto":
        return amp, "as asked"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "the GPU computes bfloat16 natively"
        return "fp16", "the GPU has no bfloat16; float16 with a gradient scaler"
    if device.type != "cpu":
        return "off", f"no mixed precision policy for {device.type}"
    if backbone.startswith("efficientnet"):
        return "off", f"bfloat16 was not faster than float32 for every EfficientNet-Lite trunk on CPUs ({backbone})"
    if cpu_has_amx():
        return "bf16", "the CPU has AMX tiles, which compute bfloat16 natively"
    speedup = cpu_bf16_speedup()
    verdict = "bf16" if speedup >= PROBE_GAIN else "off"
    return verdict, f"timed at start-up, a bfloat16 convolution step ran {speedup:.2f}x as fast as float32 here"


def autocast(device: torch.device | str, amp: str) -> AbstractContextManager:
    """``torch.autocast`` in the dtype of a resolved ``amp`` (``bf16`` / ``fp16``); nothing for ``off``."""
    if amp not in DTYPES:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=DTYPES[amp])
