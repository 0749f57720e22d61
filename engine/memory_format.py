"""The memory format of the network's tensors, chosen for the device and the trunk as ``--amp auto`` chooses
the precision.

Channels-last (NHWC) lets oneDNN run its fastest convolutions on CPUs with AVX-512, and feeds tensor cores on
GPUs. On CPUs with AVX2 only, channels-first (NCHW) was faster for the ResNet-50 step (docs/speed.md), but not
for EfficientNet-Lite, whose depthwise convolutions have fast oneDNN kernels in NHWC only, with AVX2 kernels
too. The choice goes by the trunk and the CPU's vector unit
(``torch.backends.cpu.get_cpu_capability()``), not by a timed probe, so that a machine always makes the same one.
"""

from __future__ import annotations

import torch

CHANNELS_LAST_CHOICES = ("auto", "on", "off")


def resolve_channels_last(choice: str, device: torch.device | str, backbone: str = "resnet50") -> tuple[bool, str]:
    """(whether to run channels-last, why) for the ``--channels-last`` choice, a ``backbone`` and ``device``."""
    if choice not in CHANNELS_LAST_CHOICES:
        raise ValueError(f"--channels-last must be one of {', '.join(CHANNELS_LAST_CHOICES)}, got {choice!r}")
    if choice != "auto":
        return choice == "on", "as asked"
    device = torch.device(device)
    if device.type == "cuda":
        return True, "GPUs run channels-last convolutions fastest"
    if backbone.startswith("efficientnet"):
        return True, f"{backbone}'s depthwise convolutions run fastest channels-last on CPUs"
    capability = torch.backends.cpu.get_cpu_capability()
    if capability.startswith("AVX512"):
        return True, f"the CPU has {capability}, where channels-last convolutions are faster"
    return False, f"the CPU has {capability}, where channels-first convolutions are faster"


def describe(channels_last: bool) -> str:
    return "channels-last (NHWC)" if channels_last else "channels-first (NCHW)"
