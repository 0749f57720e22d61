"""Train the `fod` recipe from scratch on one GPU within a time budget, score `val`, and measure speed.

    python benchmarks/gpu_fod.py --data-root .device_data/foreign_object_dataset --out runs/gpu_fod

Writes ``results.json`` and ``results.md`` into ``--out``: per-class AP and mAP on the validation
split, training and inference pictures/s, peak GPU memory, and (unless ``--skip-full-res``) the
training speed and memory at the full 1440x2560 with batch 2. ``--tiny`` shrinks everything so
the whole path can be checked on a CPU in a couple of minutes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import train_voc  # noqa: E402
from eval_voc import make_loader, predict  # noqa: E402
from dataset.voc_eval import evaluate_detections, format_results, load_ground_truth  # noqa: E402
from model import FCOSConfig, FCOSDetector  # noqa: E402


def peak_memory_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def train_and_score(args: argparse.Namespace, device: torch.device) -> dict:
    """The `fod` preset (no pretrained weights can be fetched offline) trained for --train-minutes."""
    flags = ["--preset", "fod", "--pretrained", "none", "--data-root", args.data_root, "--time-budget",
             str(args.train_minutes), "--output-dir", str(Path(args.out) / "checkpoint"), "--no-final-eval",
             "--workers", str(args.workers), "--device", device.type, "--save-every", "0"]
    if device.type == "cuda":
        flags += ["--amp", "--channels-last", "--cache"]
    if args.tiny:
        flags += ["--backbone", "resnet18", "--fpn-channels", "32", "--head-convs", "1", "--resize", "144,256",
                  "--warmup-steps", "5"]
    reset_peak(device)
    summary = train_voc.main(train_voc.get_args_parser().parse_args(flags))
    train_peak = peak_memory_gib(device)
    model, classes = summary["model"].eval(), summary["model"].config.classes
    resize = model.config.resize_size
    loader = make_loader(args.data_root, "val", classes, resize, batch_size=4, workers=args.workers, device=device)
    reset_peak(device)
    tic = time.perf_counter()
    detections = predict(model, loader, device, classes, amp=device.type == "cuda", progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - tic
    result = evaluate_detections(detections, load_ground_truth(args.data_root, "val", classes), classes)
    print(format_results(result))
    return {"resize": list(resize), "train_steps": summary["step"], "train_minutes": summary["train_seconds"] / 60,
            "train_images_per_second": summary["images_per_second"], "train_peak_gib": train_peak,
            "val_images": len(loader.dataset), "inference_images_per_second": len(loader.dataset) / seconds,
            "inference_peak_gib": peak_memory_gib(device), "ap": result["ap"], "map": result["map"]}


def full_resolution_speed(args: argparse.Namespace, device: torch.device) -> dict:
    """Training steps at the full 1440x2560 (batch 2, ResNet50, bf16, channels-last): pictures/s and memory."""
    height, width = (144, 256) if args.tiny else (1440, 2560)
    config = FCOSConfig(backbone="resnet18" if args.tiny else "resnet50", resize_size=(height, width))
    model = FCOSDetector(config).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    images = torch.randn(2, 3, height, width, device=device)
    box = torch.tensor([[100.0, 100.0, 140.0, 150.0], [60.0, 20.0, 90.0, 70.0]], device=device)
    targets = [{"boxes": box, "labels": torch.tensor([1, 3], device=device)}] * 2
    amp = torch.autocast(device.type, dtype=torch.bfloat16)
    reset_peak(device)
    times = []
    for step in range(3 + args.full_res_steps):
        tic = time.perf_counter()
        with amp:
            loss = model(images, targets)["total_loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= 3:
            times.append(time.perf_counter() - tic)
    times.sort()
    return {"size": [height, width], "batch": 2, "images_per_second": 2 / times[len(times) // 2],
            "peak_gib": peak_memory_gib(device)}


def write_report(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    fod = results["fod"]
    lines = [f"# fod from scratch, {fod['train_minutes']:.1f} min on {results['device']}", "",
             "| class | AP |", "|---|---|"]
    lines += [f"| {name} | {ap:.3f} |" for name, ap in fod["ap"].items()]
    lines += [f"| **mAP** | **{fod['map']:.3f}** |", "",
              f"- training: {fod['train_steps']} steps at {fod['resize']}, {fod['train_images_per_second']:.1f} pictures/s, "
              f"peak memory {fod['train_peak_gib']} GiB",
              f"- inference on val ({fod['val_images']} pictures): {fod['inference_images_per_second']:.1f} pictures/s, "
              f"peak memory {fod['inference_peak_gib']} GiB"]
    if "full_res" in results:
        full = results["full_res"]
        lines.append(f"- training at {full['size']} batch {full['batch']}: {full['images_per_second']:.2f} pictures/s, "
                     f"peak memory {full['peak_gib']} GiB")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=".device_data/foreign_object_dataset")
    parser.add_argument("--out", default="runs/gpu_fod")
    parser.add_argument("--train-minutes", type=float, default=5.0)
    parser.add_argument("--full-res-steps", type=int, default=10)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--skip-full-res", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="a small model and pictures: a CPU check of the path")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    results = {"device": name, "torch": torch.__version__, "fod": train_and_score(args, device)}
    write_report(results, Path(args.out))
    if not args.skip_full_res:
        results["full_res"] = full_resolution_speed(args, device)
        write_report(results, Path(args.out))


if __name__ == "__main__":
    main()
