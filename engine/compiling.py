"""torch.compile where it works, eager where it does not, saying which."""

from __future__ import annotations

import functools
from typing import Any

import torch

from model import FCOSDetector


@functools.lru_cache(maxsize=1)
def compile_unavailable() -> str | None:
    """Why ``torch.compile`` cannot run here (no C++ compiler, an unsupported Python, ...), or None when it can."""
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.zeros(4))
    except Exception as err:  # inductor reports a missing toolchain in many ways
        return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return None


def compile_detector(model: FCOSDetector, **options: Any) -> str:
    """Compile ``model``'s network (backbone, FPN, head) if torch.compile works here; returns what was done."""
    reason = compile_unavailable()
    if reason is not None:
        return f"eager: torch.compile is unavailable here ({reason})"
    model.compile(**options)
    return "compiled with torch.compile (the first steps include the compilation)"
