"""Training recipes (``train_voc.py --preset``): each is the original run (:data:`engine.config.BASE`) with what it
changes; any flag typed on the command line still wins. ``python train_voc.py --preset P --help`` shows P's
values and the LR it runs at. Measurements behind the choices: docs/."""

from __future__ import annotations

from dataclasses import replace

from .config import BASE, SyntheticData, TrainConfig

# The original run: ImageNet ResNet50 at 922x1640, LR 1e-3 for 2 pictures a GPU on two GPUs (a total batch of 4;
# on one GPU at batch 2 the linear rule gives 5e-4), 100 epochs, manual LR steps.
FOD = replace(BASE, preset="fod", pretrained="imagenet", lr_batch=4)

# PASCAL VOC07+12 trainval, scored on VOC07 test: the official FCOS's 0.01 for 16 pictures a step.
VOC = replace(
    FOD,
    preset="voc",
    data_root="VOCdevkit/VOC0712",
    classes="voc",
    resize=(800, 1333),
    lr=1e-2,
    lr_batch=16,
    epochs=30,
    lr_steps=(20, 27),
    train_split="trainval",
    val_split="test",
)

# What the CPU recipes share: a small head, object-centred crops of cached pictures cut in the training process
# itself (on two cores a loader worker takes its time from the step's threads), one cosine. LR as given at a
# total batch of 8.
CPU = replace(
    BASE,
    fpn_channels=128,
    head_convs=2,
    resize=(720, 1280),
    crop=(320, 320),
    batch_size=8,
    lr_batch=8,
    epochs=1000,
    schedule="cosine",
    warmup_steps=100,
    augment=("flip",),
    cache=True,
    workers=0,
    save_every=0,
)

PRESETS: dict[str, TrainConfig] = {
    "fod": FOD,
    "fod-288": replace(FOD, preset="fod-288", resize=(288, 512)),
    "voc": VOC,
    # An ImageNet EfficientNet-Lite2 from its pip wheel (offline), fine-tuned as the original fine-tuned its
    # ResNet50 (BatchNorm, the stem and the first stage frozen), in float32 for a fixed number of steps. Flipped
    # crops only: copy-paste, which gained on val, scored lower when cross-validated over every labelled picture
    # (docs/cpu_recipe.md).
    "fod-cpu": replace(
        CPU,
        preset="fod-cpu",
        backbone="efficientnet_lite2",
        pretrained="imagenet",
        lr=0.01,
        steps=1000,
        tta=True,
    ),
    # For a camera on a 2-core CPU: a lighter trunk than fod-cpu's and a quarter of the head's arithmetic (FPN 64),
    # deployed as an int8 export, trained with copy-paste as it was measured (docs/speed.md: the deploy path,
    # frames/s and val mAP; without copy-paste it has not been measured).
    "fod-edge": replace(
        CPU,
        preset="fod-edge",
        backbone="efficientnet_lite1",
        pretrained="imagenet",
        fpn_channels=64,
        lr=0.01,
        steps=1000,
        augment=("flip", "paste"),
        tta=False,  # scored as it is deployed: one pass
    ),
    # From scratch on a 2-core CPU: ResNet18 in bfloat16 where faster, sized to a 30-minute budget.
    "fod-cpu-scratch": replace(
        CPU, preset="fod-cpu-scratch", backbone="resnet18", lr=0.02, time_budget=30.0, amp="auto", tta=True
    ),
    # From scratch on one GPU: the CPU recipe scaled up (ResNet50, larger crops and batch, bf16).
    "fod-gpu": replace(
        CPU,
        preset="fod-gpu",
        fpn_channels=BASE.fpn_channels,
        head_convs=BASE.head_convs,
        resize=BASE.resize,
        crop=(512, 512),
        batch_size=32,
        lr=0.02,
        warmup_steps=300,
        time_budget=5.0,
        workers=8,
        amp="auto",
    ),
    # The first command: synthetic pictures, a fixed number of steps (the same model on any machine), from the
    # ImageNet EfficientNet-Lite0 of its wheel: few steps suffice, so it fits five minutes on a laptop CPU.
    "demo": replace(
        CPU,
        preset="demo",
        data_root="data/synthetic",
        backbone="efficientnet_lite0",
        pretrained="imagenet",
        fpn_channels=64,
        resize=(360, 640),
        crop=(160, 160),
        lr=0.01,
        steps=200,
        warmup_steps=50,
        val_split="test",
        synthetic=SyntheticData(train=400, val=50, test=100, seed=0),
    ),
}
