"""Mixed precision: one policy for training, evaluation, detection and the benchmarks.

``auto`` picks bfloat16 only where the hardware computes it natively: GPUs with bfloat16 (float16
with a gradient scaler on older ones) and CPUs with AMX tiles. A CPU without AMX emulates bfloat16
through float32 and converts at every layer: a training step measured 1.2-1.3x slower there, so
``auto`` stays in float32.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import torch

AMP_CHOICES = ("auto", "bf16", "fp16", "off")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_amx() -> bool:
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def resolve_amp(amp: str, device: torch.device) -> tuple[str, str]:
    """(``bf16`` | ``fp16`` | ``off``, why) for the ``--amp`` choice on ``device``."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"--amp must be one of {', '.join(AMP_CHOICES)}, got {amp!r}")
    if amp != "auto":
        return amp, "as asked"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "the GPU computes bfloat16 natively"
        return "fp16", "the GPU has no bfloat16; float16 with a gradient scaler"
    if device.type == "cpu":
        if cpu_has_amx():
            return "bf16", "the CPU has AMX tiles, which compute bfloat16 natively"
        return "off", "the CPU has no AMX, where bfloat16 is slower than float32"
    return "off", f"no mixed precision policy for {device.type}"


def autocast(device: torch.device | str, amp: str) -> AbstractContextManager:
    """``torch.autocast`` in the dtype of a resolved ``amp`` (``bf16`` / ``fp16``); nothing for ``off``."""
    if amp not in DTYPES:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=DTYPES[amp])
