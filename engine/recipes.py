"""Training recipes (``train_voc.py --preset``): each is a set of flag defaults, and any flag still wins."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # The original run: ImageNet ResNet50 at 922x1640, 2 pictures per GPU on two GPUs, 100 epochs, manual steps.
    "fod": dict(
        data_root="foreign_object_dataset",
        backbone="resnet50",
        pretrained="imagenet",
        resize="922x1640",
        batch_size=2,
        lr=1e-3,
        lr_batch=4,
        epochs=100,
        lr_steps=[70, 90],
        schedule="step",
        warmup_steps=500,
        augment="flip,color,rotate",
    ),
    "fod-288": dict(
        data_root="foreign_object_dataset",
        backbone="resnet50",
        pretrained="imagenet",
        resize="288x512",
        batch_size=2,
        lr=1e-3,
        lr_batch=4,
        epochs=100,
        lr_steps=[70, 90],
        schedule="step",
        warmup_steps=500,
        augment="flip,color,rotate",
    ),
    # PASCAL VOC07+12 trainval, scored on VOC07 test: the official FCOS's 0.01 at 16 pictures a step.
    "voc": dict(
        data_root="VOCdevkit/VOC0712",
        classes="voc",
        backbone="resnet50",
        pretrained="imagenet",
        resize="800x1333",
        batch_size=2,
        lr=1e-2,
        lr_batch=16,
        epochs=30,
        lr_steps=[20, 27],
        schedule="step",
        warmup_steps=500,
        augment="flip,color,rotate",
        train_split="trainval",
        val_split="test",
    ),
    # From scratch on a 2-core CPU: object-centred crops of pictures at half resolution, sized to 30 minutes.
    # Crops of cached pictures are cut in the training process itself: on two cores a loader worker would
    # take its time from the step's threads (measured: the loop ran at 0.89-0.91 of the step's speed with
    # 1-2 workers, 0.97 with none).
    "fod-cpu": dict(
        data_root="foreign_object_dataset",
        backbone="resnet18",
        pretrained="none",
        fpn_channels=128,
        head_convs=2,
        resize="720x1280",
        crop="320x320",
        batch_size=8,
        lr=0.02,
        lr_batch=8,
        epochs=1000,
        schedule="cosine",
        warmup_steps=100,
        augment="flip",
        time_budget=30.0,
        cache=True,
        workers=0,
        amp="auto",
        save_every=20,
        tta=True,
    ),
    # From scratch on one GPU: the CPU recipe scaled up (ResNet50, larger crops and batch, bf16).
    "fod-gpu": dict(
        data_root="foreign_object_dataset",
        backbone="resnet50",
        pretrained="none",
        resize="922x1640",
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
    # The first command: synthetic pictures, trained for a fixed number of steps (the same model on any
    # machine), scored and shown in a few CPU minutes.
    "demo": dict(
        data_root="data/synthetic",
        backbone="resnet18",
        pretrained="none",
        fpn_channels=64,
        head_convs=2,
        resize="360x640",
        crop="160x160",
        batch_size=8,
        lr=0.02,
        lr_batch=8,
        epochs=1000,
        steps=900,
        schedule="cosine",
        warmup_steps=100,
        augment="flip",
        cache=True,
        workers=0,
        amp="off",
        save_every=0,
        val_split="test",
        synthetic=dict(train=400, val=50, test=100, seed=0),
    ),
}

# A pretrained CPU recipe: ImageNet EfficientNet-Lite0 (from its pip wheel, offline) fine-tuned as the original
# fine-tuned its ResNet50 (BatchNorm, the stem and the first stage frozen), in float32 for a fixed number of steps.
PRESETS["fod-cpu-lite0"] = {
    **PRESETS["fod-cpu"],
    "backbone": "efficientnet_lite0",
    "pretrained": "imagenet",
    "normalization": "tf",
    "lr": 0.01,
    "time_budget": None,
    "steps": 1000,
    "amp": "off",
}

# The clip_Y model of the two-model CPU recipe: fod-cpu on the full 1440x2560 pictures, for 15 minutes beside a
# 15-minute fod-cpu. clip_Y, the smallest object (about 23x27 px at 720x1280), is localised far better at full
# size, while the other classes do better at 720x1280 (docs/cpu_recipe.md); eval_voc.py and detect.py combine the
# two with --class-model clip_Y=checkpoint/fod-cpu-full/last.pth.
PRESETS["fod-cpu-full"] = {**PRESETS["fod-cpu"], "resize": "1440x2560", "time_budget": 15.0}
