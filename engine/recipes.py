"""Training recipes (``train_voc.py --preset``): each is a set of flag defaults, and any flag still wins."""
from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # The original run: ImageNet ResNet50 at 922x1640, 2 pictures per GPU on two GPUs, 100 epochs, manual steps.
    "fod": dict(data_root="foreign_object_dataset", backbone="resnet50", pretrained="imagenet", resize="922x1640",
                batch_size=2, lr=1e-3, lr_batch=4, epochs=100, lr_steps=[70, 90], schedule="step",
                warmup_steps=500, augment="flip,color,rotate"),
    "fod-288": dict(data_root="foreign_object_dataset", backbone="resnet50", pretrained="imagenet", resize="288x512",
                    batch_size=2, lr=1e-3, lr_batch=4, epochs=100, lr_steps=[70, 90], schedule="step",
                    warmup_steps=500, augment="flip,color,rotate"),
    # PASCAL VOC07+12 trainval, scored on VOC07 test: the official FCOS's 0.01 at 16 pictures a step.
    "voc": dict(data_root="VOCdevkit/VOC0712", classes="voc", backbone="resnet50", pretrained="imagenet",
                resize="800x1333", batch_size=2, lr=1e-2, lr_batch=16, epochs=30, lr_steps=[20, 27],
                schedule="step", warmup_steps=500, augment="flip,color,rotate", train_split="trainval",
                val_split="test"),
    # From scratch on a 2-core CPU: object-centred crops of pictures at half resolution, sized to 30 minutes.
    "fod-cpu": dict(data_root="foreign_object_dataset", backbone="resnet18", pretrained="none", fpn_channels=128,
                    head_convs=2, resize="720x1280", crop="320x320", batch_size=8, lr=0.02, lr_batch=8,
                    epochs=1000, schedule="cosine", warmup_steps=100, augment="flip", time_budget=27.0,
                    cache=True, workers=2, amp="auto", save_every=20),
    # From scratch on one GPU: the CPU recipe scaled up (ResNet50, larger crops and batch, bf16).
    "fod-gpu": dict(data_root="foreign_object_dataset", backbone="resnet50", pretrained="none", resize="922x1640",
                    crop="512x512", batch_size=32, lr=0.02, lr_batch=8, epochs=1000, schedule="cosine",
                    warmup_steps=300, augment="flip", time_budget=5.0, cache=True, workers=8, amp="auto",
                    save_every=0),
    # The first command: synthetic pictures, trained for a fixed number of steps (the same model on any
    # machine), scored and shown in a few CPU minutes.
    "demo": dict(data_root="data/synthetic", backbone="resnet18", pretrained="none", fpn_channels=64, head_convs=2,
                 resize="360x640", crop="256x256", batch_size=8, lr=0.02, lr_batch=8, epochs=1000, steps=900,
                 schedule="cosine", warmup_steps=100, augment="flip", cache=True, workers=2, amp="off",
                 save_every=0, val_split="test", synthetic=dict(train=400, val=50, test=100, seed=0)),
}
