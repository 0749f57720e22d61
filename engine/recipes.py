"""Training recipes (``train_voc.py --preset``): each is what it changes in the flags' defaults, which are the
original run's; any flag typed on the command line still wins. Measurements behind the choices: docs/."""

from __future__ import annotations

from typing import Any

# The original run: ImageNet ResNet50 at 922x1640, 2 pictures per GPU on two GPUs, 100 epochs, manual LR steps.
FOD = dict(pretrained="imagenet", lr_batch=4)

# PASCAL VOC07+12 trainval, scored on VOC07 test: the official FCOS's 0.01 at 16 pictures a step.
VOC = dict(
    FOD,
    data_root="VOCdevkit/VOC0712",
    classes="voc",
    resize="800x1333",
    lr=1e-2,
    lr_batch=16,
    epochs=30,
    lr_steps=[20, 27],
    train_split="trainval",
    val_split="test",
)

# What the CPU recipes share: a small head, object-centred crops of cached pictures cut in the training process
# itself (on two cores a loader worker takes its time from the step's threads), one cosine.
CPU = dict(
    fpn_channels=128,
    head_convs=2,
    resize="720x1280",
    crop="320x320",
    batch_size=8,
    lr_batch=8,
    epochs=1000,
    schedule="cosine",
    warmup_steps=100,
    augment="flip",
    cache=True,
    workers=0,
    save_every=0,
)

# From scratch on a 2-core CPU: ResNet18 in bfloat16 where faster, sized to a 30-minute budget.
FOD_CPU_SCRATCH = dict(CPU, backbone="resnet18", lr=0.02, time_budget=30.0, amp="auto", tta=True)

PRESETS: dict[str, dict[str, Any]] = {
    "fod": FOD,
    "fod-288": dict(FOD, resize="288x512"),
    "voc": VOC,
    # An ImageNet EfficientNet-Lite2 from its pip wheel (offline), fine-tuned as the original fine-tuned its
    # ResNet50 (BatchNorm, the stem and the first stage frozen), in float32 for a fixed number of steps, with
    # objects pasted against objects (copy-paste gained on both seeds: docs/cpu_recipe.md).
    "fod-cpu": dict(
        CPU, backbone="efficientnet_lite2", pretrained="imagenet", lr=0.01, steps=1000, augment="flip,paste", tta=True
    ),
    "fod-cpu-scratch": FOD_CPU_SCRATCH,
    # From scratch on one GPU: the CPU recipe scaled up (ResNet50, larger crops and batch, bf16).
    "fod-gpu": dict(
        crop="512x512",
        batch_size=32,
        lr=0.02,
        lr_batch=8,
        epochs=1000,
        schedule="cosine",
        warmup_steps=300,
        augment="flip",
        time_budget=5.0,
        cache=True,
        workers=8,
        amp="auto",
        save_every=0,
    ),
    # The first command: synthetic pictures, a fixed number of steps (the same model on any machine), from the
    # ImageNet EfficientNet-Lite0 of its wheel: few steps suffice, so it fits five minutes on a laptop CPU.
    "demo": dict(
        CPU,
        data_root="data/synthetic",
        backbone="efficientnet_lite0",
        pretrained="imagenet",
        fpn_channels=64,
        resize="360x640",
        crop="160x160",
        lr=0.01,
        steps=200,
        warmup_steps=50,
        val_split="test",
        synthetic=dict(train=400, val=50, test=100, seed=0),
    ),
}

# The flags that set a run's length: one typed on the command line replaces the preset's length.
LENGTH_FLAGS = ("epochs", "steps", "time_budget")
