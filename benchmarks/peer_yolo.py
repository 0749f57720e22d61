"""Side by side with ultralytics YOLO: a nano YOLO trained from its model YAML on ``train``, on the CPU and offline,
its ``val`` detections scored by ``eval_voc.py`` exactly as this project's models are.

    python -m benchmarks.peer_yolo --out runs/peer_yolo/default-s0 --seed 0
    python -m benchmarks.peer_yolo --out runs/peer_yolo/1280-s0 --imgsz 1280 --seed 0
    python -m benchmarks.peer_yolo --data-root DIR --out DIR --pictures 4125 --yolo close_mosaic=2 --yolo cache=ram
    python -m benchmarks.peer_yolo --out runs/peer_yolo/30min-s0 --minutes 30 --seed 0

Needs ``pip install -r benchmarks/requirements-peer.txt`` (ultralytics; nothing else in the project does). It

1. writes ``<out>/yolo_data``: the VOC splits in YOLO's layout, pictures symlinked (never copied), a label file a
   picture (``class cx cy w h`` of the continuous box, relative to the picture's size; difficult objects left out,
   as this project's training leaves them out) and ``data.yaml`` with absolute paths;
2. trains ``YOLO(--model)`` from random weights (no ``.pt`` is ever loaded) on the CPU for ``--epochs``, as many
   epochs as ``--pictures`` takes, or for ``--minutes`` (YOLO's ``time``: after each epoch it refits the number of
   epochs and its LR schedule to the minutes left, and it stops within a batch of them), with YOLO's own recipe
   otherwise (``--yolo KEY=VALUE`` changes one setting), and counts the optimizer steps it actually takes: YOLO
   accumulates gradients to a nominal batch of 64 (``nbs``), ramping up during its warm-up, so steps are fewer than
   batches. ``val`` picks nothing: YOLO validates only after the last epoch (``val=False``), and ``last.pt`` is what
   is scored. On a CPU ultralytics loads the pictures in the training process (it sets ``workers=0``) and, left
   alone, computes on cpu_count - 1 threads; here on ``--threads`` (default: torch's, as this project's scripts run);
3. runs ``last.pt`` on every ``val`` picture, one at a time, at conf 0.001 with up to 300 detections a picture
   (YOLO's own validation settings), writes them as this project's detections JSON (VOC's 1-based frame of the
   original picture: xmin = x1 + 1, ymin = y1 + 1, xmax = x2, ymax = y2) and scores that file in this process with
   ``eval_voc.py --detections``. The median time a picture after a warm-up (YOLO's preprocessing, the network and its
   NMS; the JPEG is decoded before the clock starts) is the inference speed.

Offline: ultralytics would download Arial.ttf at the start of every training where it finds no such font
(``check_det_dataset`` asks for it whatever ``plots`` says), yolo26n.pt for its AMP check on a GPU, new packages when
a requirement is missing, and would check PyPI for updates and send usage analytics. Here ``YOLO_OFFLINE=1`` and
``YOLO_AUTOINSTALL=false`` are set before it is imported, its settings live in ``<out>/ultralytics_config`` with
``sync`` and every logging integration off, ``amp=False`` (its AMP check is for GPUs anyway), ``plots=False``,
``pretrained=False``, no font is looked up, and for the whole run no host name is resolved and no internet socket
connects: an attempt stops the run with one line naming the host or URL and the ultralytics code that asked.

The default model, YOLO11n, is ultralytics' nano of the generation most of its documentation and tutorials used before
YOLO26 (``--model yolo26n.yaml``): fewer parameters and operations than YOLOv8n (2.6 M and 6.5 GFLOPs at 640, against
3.2 M and 8.7) at a higher COCO mAP (39.5 against 37.3), so the cheaper and the stronger of the two on a CPU.

Writes ``<out>/results.json``: mAP and per-class AP, steps, batches, epochs, pictures seen, training minutes,
milliseconds a picture, YOLO's own mAP50 of the same model on the same split (a cross-check of the conversions), the
settings, the seed, the threads and the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import socket
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from unittest import mock

import cv2
import numpy as np
import torch
import yaml

import eval_voc
from benchmarks.bench import cpu_name
from cli import DefaultsFormatter, run
from dataset import VOCDataset, resolve_classes, xml_to_pixels
from engine.annotate import write_json_atomically
from engine.inference import to_detections

OFFLINE_ENVIRONMENT = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"}
OFFLINE_SETTINGS = {
    "sync": False,
    "clearml": False,
    "comet": False,
    "dvc": False,
    "mlflow": False,
    "raytune": False,
    "tensorboard": False,
    "wandb": False,
}
# train settings the benchmark sets itself: what a run is (data, model, length, seed, device, where it writes), what
# keeps it offline, and what would pick a model on val
FIXED_SETTINGS = (
    "data",
    "model",
    "epochs",
    "time",
    "fraction",
    "batch",
    "imgsz",
    "seed",
    "device",
    "project",
    "name",
    "exist_ok",
    "resume",
    "pretrained",
    "distill_model",
    "amp",
    "plots",
    "val",
)


# ----------------------------------------------------------------------------- VOC -> YOLO


def yolo_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """VOC XML boxes [M, 4] (xmin, ymin, xmax, ymax: 1-based inclusive pixel indices) of a ``width`` x ``height``
    picture -> YOLO's [M, 4] (cx, cy, w, h) of the continuous box (x1 = xmin - 1, x2 = xmax), relative to the width
    and the height. xmin 11, ymin 21, xmax 30, ymax 60 in a 100 x 200 picture is x 10 .. 30, y 20 .. 60: 0.2 each."""
    edges = xml_to_pixels(torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4))
    size = edges.new_tensor([width, height])
    centres = (edges[:, :2] + edges[:, 2:]) / 2 / size
    extents = (edges[:, 2:] - edges[:, :2]) / size
    return torch.cat([centres, extents], dim=1).numpy()


def label_text(labels: np.ndarray, boxes: np.ndarray) -> str:
    """A YOLO label file: one ``class cx cy w h`` line per box, class = label - 1 (labels [M] count from 1, YOLO's
    classes from 0), ``boxes`` [M, 4] from :func:`yolo_boxes`."""
    return "".join(f"{label - 1} " + " ".join(f"{v:.8g}" for v in box) + "\n" for label, box in zip(labels, boxes))


def convert_split(root: str | Path, split: str, classes: Sequence[str], out: Path) -> tuple[int, int]:
    """Write ``out/images/<split>/<id>.jpg`` (symlinks to the VOC pictures) and ``out/labels/<split>/<id>.txt`` for
    every picture of the split, replacing what an earlier conversion left there (YOLO's label cache included).

    The VOC files are checked as the project's loader checks them (:class:`dataset.VOCDataset`: a missing or
    unreadable picture or XML, an unknown class, an empty box, an XML size that disagrees with its picture are errors
    naming the file). Difficult objects are left out. Returns the numbers of pictures and boxes written.
    """
    dataset = VOCDataset(root, split, classes)
    images, labels = out / "images" / split, out / "labels" / split
    for folder in (images, labels):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    (out / "labels" / f"{split}.cache").unlink(missing_ok=True)
    count = 0
    for image_id, annotation in zip(dataset.ids, dataset.annotations):
        keep = ~annotation["difficult"]
        boxes = yolo_boxes(annotation["boxes"][keep], annotation["width"], annotation["height"])
        picture = dataset.image_path(image_id).resolve()
        (images / picture.name).symlink_to(picture)
        (labels / f"{image_id}.txt").write_text(label_text(annotation["labels"][keep], boxes))
        count += len(boxes)
    return len(dataset), count


def write_data_yaml(out: Path, classes: Sequence[str], train_split: str, val_split: str) -> Path:
    """``out/data.yaml`` for the folders :func:`convert_split` wrote: absolute paths, class k named ``classes[k]``."""
    data = {
        "path": str(out.resolve()),
        "train": str((out / "images" / train_split).resolve()),
        "val": str((out / "images" / val_split).resolve()),
        "names": dict(enumerate(classes)),
    }
    path = out / "data.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ----------------------------------------------------------------------------- YOLO -> detections JSON


def yolo_detections(
    image_id: str,
    boxes: torch.Tensor,
    scores: torch.Tensor,
    class_ids: torch.Tensor,
    classes: Sequence[str],
    picture_size: tuple[int, int],
) -> list[dict[str, Any]]:
    """One picture's YOLO detections -> detections JSON entries (:func:`engine.inference.to_detections`'s rules).

    ``boxes`` [K, 4] x1, y1, x2, y2 in continuous pixel edges of the original picture (ultralytics' ``boxes.xyxy``),
    ``scores`` [K], ``class_ids`` [K] from 0; ``picture_size`` (H, W). The entries are in VOC's 1-based frame
    (xmin = x1 + 1, ymin = y1 + 1, xmax = x2, ymax = y2), clipped to the picture; a box under one pixel across is
    dropped, as it cannot be written in that frame.
    """
    output = {"boxes": boxes.float(), "scores": scores.float(), "labels": class_ids.long() + 1}
    target = {"image_id": image_id, "orig_size": picture_size, "scale": torch.ones(2), "offset": torch.zeros(2)}
    return to_detections(output, target, classes)


# ----------------------------------------------------------------------------- offline


class DownloadAttempted(BaseException):
    """A connection tried while :func:`network_off` holds. A BaseException, so that the ``except Exception``
    around ultralytics' own downloads (fonts, weights, update checks) cannot swallow it."""


def asker() -> str:
    """The innermost ultralytics frame on the stack, as ``ultralytics/utils/downloads.py:80 (is_url)``."""
    marker = f"{os.sep}ultralytics{os.sep}"
    for frame in reversed(traceback.extract_stack()):
        if marker in frame.filename:
            return f"ultralytics{os.sep}{frame.filename.rsplit(marker, 1)[1]}:{frame.lineno} ({frame.name})"
    return "code outside ultralytics"


@contextlib.contextmanager
def network_off() -> Iterator[Callable[[object], NoReturn]]:
    """No internet for the duration: resolving a host name or connecting an internet socket raises
    :class:`DownloadAttempted` naming the host and the ultralytics code that asked; Unix sockets, which data loader
    workers use, still work. Yields the refusal itself, for download functions that bypass sockets (curl).

    Leaving the block, any refused attempt, even one a thread or a broad ``except`` swallowed on the way, is raised
    as a ``ConnectionError`` (one line: the attempt).
    """
    attempts: list[str] = []
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def refuse(where: object) -> NoReturn:
        attempts.append(f"{asker()} tried to reach {where}")
        raise DownloadAttempted(attempts[-1])

    def resolve(host: object, *args: object, **kwargs: object) -> NoReturn:
        refuse(host)

    def local_only(original: Callable) -> Callable:
        def guarded(sock: socket.socket, address: Any) -> Any:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                refuse(address)
            return original(sock, address)

        return guarded

    patches = (
        mock.patch.object(socket, "getaddrinfo", resolve),
        mock.patch.object(socket.socket, "connect", local_only(connect)),
        mock.patch.object(socket.socket, "connect_ex", local_only(connect_ex)),
    )
    try:
        with contextlib.ExitStack() as stack:
            for patch in patches:
                stack.enter_context(patch)
            yield refuse
    except DownloadAttempted:
        pass
    if attempts:
        raise ConnectionError(f"{attempts[0]}, but this benchmark runs offline (see its docstring)")


def import_ultralytics(config_dir: Path) -> Any:
    """ultralytics, imported offline (``YOLO_OFFLINE``, no automatic package installs), its settings file in
    ``config_dir`` rather than the user's, with analytics sync and every logging integration off, and no Platform key.
    The environment must be set before the first import, which reads it. ``ModuleNotFoundError`` saying what to
    install when it is missing."""
    os.environ.update({**OFFLINE_ENVIRONMENT, "YOLO_CONFIG_DIR": str(config_dir.resolve())})
    os.environ.pop("ULTRALYTICS_API_KEY", None)
    try:
        import ultralytics
    except ModuleNotFoundError as err:
        if err.name != "ultralytics":
            raise
        raise ModuleNotFoundError(
            "this benchmark needs ultralytics: pip install -r benchmarks/requirements-peer.txt"
        ) from None
    ultralytics.settings.update({k: v for k, v in OFFLINE_SETTINGS.items() if k in ultralytics.settings})
    return ultralytics


@contextlib.contextmanager
def ultralytics_offline(threads: int) -> Iterator[None]:
    """ultralytics with no way to download (:func:`network_off`; its download function refused by URL, since it can
    also fetch through curl, which no socket guard sees; no font looked up: plots are off and ``check_det_dataset``
    would fetch Arial.ttf), and with ``threads`` CPU threads (its ``select_device`` sets cpu_count - 1)."""
    from ultralytics.data import utils as data_utils
    from ultralytics.utils import downloads, torch_utils

    def refuse_download(url: object, *args: object, **kwargs: object) -> NoReturn:
        refuse(url)

    with network_off() as refuse, contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(downloads, "safe_download", refuse_download))
        stack.enter_context(mock.patch.object(data_utils, "check_font", lambda *args, **kwargs: None))
        stack.enter_context(mock.patch.object(torch_utils, "NUM_THREADS", threads))
        yield


# ----------------------------------------------------------------------------- training


def yolo_overrides(pairs: Iterable[str], known: Iterable[str]) -> dict[str, Any]:
    """``--yolo KEY=VALUE`` flags -> YOLO train settings, each value read as YAML (``0`` an int, ``0.5`` a float,
    ``false`` a bool, ``ram`` a string). A key YOLO does not know, or one the benchmark sets itself
    (:data:`FIXED_SETTINGS`), is a ``ValueError`` naming it."""
    known, settings = set(known), {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--yolo takes KEY=VALUE, got {pair!r}")
        if key in FIXED_SETTINGS:
            raise ValueError(f"--yolo {key}: set by this benchmark (its own flag, or fixed to keep the run offline)")
        if key not in known:
            raise ValueError(f"--yolo {key}: not a YOLO train setting")
        settings[key] = yaml.safe_load(value)
    return settings


def epochs_for(pictures: int, train_pictures: int) -> int:
    """Epochs that show at least ``pictures`` pictures when an epoch shows each of ``train_pictures`` once."""
    if pictures < 1:
        raise ValueError(f"--pictures must be at least 1, got {pictures}")
    return math.ceil(pictures / train_pictures)


@dataclass
class Progress:
    """What a YOLO training run did, counted by its callbacks: optimizer steps (a hook on the optimizer, so every
    step counts however YOLO accumulates), batches, epochs, and the seconds from its start to the last epoch's end
    (the final validation left out); and YOLO's own mAP50 of the final weights on the val split, from that final
    validation (its COCO-style 101-point AP at IoU 0.5: a cross-check of the box conversions, not the score)."""

    steps: int = 0
    batches: int = 0
    epochs: int = 0
    started: float = 0.0
    finished: float = 0.0
    map50: float | None = None

    def attach(self, model: Any) -> None:
        model.add_callback("on_train_start", self.start)
        model.add_callback("on_train_batch_end", self.batch)
        model.add_callback("on_train_epoch_end", self.epoch)

    def start(self, trainer: Any) -> None:
        trainer.optimizer.register_step_post_hook(self.step)
        self.started = time.perf_counter()

    def step(self, *args: object) -> None:
        self.steps += 1

    def batch(self, trainer: Any) -> None:
        self.batches += 1

    def epoch(self, trainer: Any) -> None:
        self.epochs += 1
        self.finished = time.perf_counter()


def train(model_yaml: str, data_yaml: Path, out: Path, settings: dict[str, Any]) -> tuple[Path, Progress]:
    """``YOLO(model_yaml).train(...)`` from random weights on the CPU into ``out/train``, with ``settings`` (epochs,
    batch, imgsz, seed and the ``--yolo`` ones) and the offline ones. Returns ``last.pt`` and the :class:`Progress`."""
    from ultralytics import YOLO

    model = YOLO(model_yaml)
    progress = Progress()
    progress.attach(model)
    model.train(
        data=str(data_yaml),
        device="cpu",
        project=str(out.resolve()),
        name="train",
        exist_ok=True,
        pretrained=False,
        amp=False,
        plots=False,
        val=False,
        **settings,
    )
    last = Path(model.trainer.last)
    if not last.is_file():
        raise FileNotFoundError(f"{last}: YOLO's training wrote no last.pt")
    progress.map50 = model.trainer.metrics.get("metrics/mAP50(B)")
    return last, progress


# ----------------------------------------------------------------------------- detection and scoring


def detect_split(
    weights: Path, dataset: VOCDataset, predict: dict[str, Any], warmup: int
) -> tuple[list[dict[str, Any]], list[float], set[tuple[int, int]]]:
    """``weights`` on each picture of ``dataset``, one at a time, with YOLO's ``predict`` settings. Returns the
    detections JSON entries (:func:`yolo_detections`), the milliseconds each picture took after ``warmup`` runs on the
    first one (preprocessing, network and NMS; decoding the JPEG is not timed), and the (W, H) sizes seen."""
    from ultralytics import YOLO

    model = YOLO(weights)
    names = tuple(model.names[k] for k in sorted(model.names))
    if names != tuple(dataset.classes):
        raise ValueError(f"{weights}: its classes {names} are not the data set's {tuple(dataset.classes)}")
    detections, milliseconds, sizes = [], [], set()
    for index, image_id in enumerate(dataset.ids):
        path = dataset.image_path(image_id)
        picture = cv2.imread(str(path))  # BGR, as ultralytics takes arrays
        if picture is None:
            raise ValueError(f"{path}: cannot decode image")
        for _ in range(warmup if index == 0 else 0):
            model.predict(picture, **predict)
        start = time.perf_counter()
        boxes = model.predict(picture, **predict)[0].boxes.cpu()
        milliseconds.append(1000 * (time.perf_counter() - start))
        detections += yolo_detections(image_id, boxes.xyxy, boxes.conf, boxes.cls, dataset.classes, picture.shape[:2])
        sizes.add((picture.shape[1], picture.shape[0]))
    return detections, milliseconds, sizes


def score(detections_file: Path, root: str | Path, split: str, classes: Sequence[str]) -> dict[str, Any]:
    """``eval_voc.py --detections FILE --data-root ROOT --split SPLIT``, in this process; prints and returns its
    result (``map``, ``ap`` per class)."""
    argv = ["--detections", str(detections_file), "--data-root", str(root), "--split", split]
    return eval_voc.main(eval_voc.get_args_parser().parse_args([*argv, "--classes", ",".join(classes)]))


# ----------------------------------------------------------------------------- the run


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], add_help=add_help, formatter_class=DefaultsFormatter
    )
    parser.add_argument("--data-root", default="../shared/foreign_object_dataset", help="VOC-layout data set")
    parser.add_argument("--train-split", default="train", help="the split YOLO trains on")
    parser.add_argument("--val-split", default="val", help="the split scored (never used to pick a model)")
    parser.add_argument("--classes", default="fod", help="'fod', 'a,b,c' or a file with one name a line")
    parser.add_argument("--out", default="runs/peer_yolo", help="YOLO data, training output, detections, results")
    parser.add_argument(
        "--model", default="yolo11n.yaml", help="an ultralytics model YAML (yolo11n.yaml, yolov8n.yaml, yolo26n.yaml)"
    )
    parser.add_argument("--seed", type=int, default=0, help="YOLO's seed (initialisation, picture order, augmentation)")
    parser.add_argument("--imgsz", type=int, default=640, help="YOLO's picture size, training and detection")
    parser.add_argument("--batch", type=int, default=16, help="pictures a batch")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=100, help="epochs of training (YOLO's default)")
    length.add_argument("--pictures", type=int, help="train for the epochs that show at least this many pictures")
    length.add_argument(
        "--minutes",
        type=float,
        help="train for this many minutes (YOLO's time setting: it refits its epochs and LR schedule to them)",
    )
    parser.add_argument(
        "--yolo",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one more YOLO train setting (repeatable), e.g. close_mosaic=2, mosaic=0, cache=ram, optimizer=SGD",
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads, training and timing")
    parser.add_argument("--conf", type=float, default=0.001, help="YOLO's score threshold for the val detections")
    parser.add_argument("--iou", type=float, default=0.7, help="YOLO's NMS IoU for the val detections")
    parser.add_argument("--max-det", type=int, default=300, help="detections kept a picture")
    parser.add_argument("--warmup", type=int, default=3, help="untimed detections on the first val picture")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """What argparse cannot check: a model YAML (never weights), positive sizes and counts."""
    if not args.model.endswith((".yaml", ".yml")):
        raise ValueError(f"--model {args.model}: a model YAML; this benchmark trains from random weights, never a .pt")
    for flag in ("imgsz", "batch", "epochs", "threads", "max_det"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if args.minutes is not None and not args.minutes > 0:
        raise ValueError(f"--minutes must be positive, got {args.minutes}")


def machine(threads: int) -> dict[str, Any]:
    """The CPU, its capability as torch sees it (AVX2, AVX512, ...) and the library versions."""
    import ultralytics

    return {
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpus": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "ultralytics": ultralytics.__version__,
    }


def prepare_data(args: argparse.Namespace, classes: Sequence[str], out: Path) -> tuple[Path, int]:
    """The train and val splits in YOLO's layout under ``out`` (:func:`convert_split`) and their ``data.yaml``;
    returns its path and the number of training pictures."""
    train_pictures, train_boxes = convert_split(args.data_root, args.train_split, classes, out)
    val_pictures, val_boxes = convert_split(args.data_root, args.val_split, classes, out)
    print(
        f"YOLO layout in {out}: {args.train_split} {train_pictures} pictures / {train_boxes} boxes, "
        f"{args.val_split} {val_pictures} / {val_boxes}, pictures symlinked"
    )
    return write_data_yaml(out, classes, args.train_split, args.val_split), train_pictures


def train_settings(args: argparse.Namespace, train_pictures: int, extra: dict[str, Any], nbs: int) -> dict[str, Any]:
    """YOLO's train settings of the run (length, batch, size, seed, the ``--yolo`` ones), its plan printed."""
    if args.minutes is not None:
        length = {"epochs": args.epochs, "time": args.minutes / 60}
        plan = f"{args.minutes:g} minutes of epochs of {train_pictures} pictures in batches of {args.batch}"
    else:
        epochs = args.epochs if args.pictures is None else epochs_for(args.pictures, train_pictures)
        length = {"epochs": epochs}
        plan = (
            f"{epochs} epochs of {train_pictures} pictures = {epochs * train_pictures} pictures, "
            f"{math.ceil(train_pictures / args.batch) * epochs} batches of {args.batch}"
        )
    print(
        f"training {args.model} from random weights on the CPU, {args.threads} threads, seed {args.seed}: {plan} "
        f"at {args.imgsz}; gradients accumulate to {nbs} pictures a step (fewer during warm-up); beyond YOLO's "
        f"defaults: {extra or 'nothing'}"
    )
    return {**length, "batch": args.batch, "imgsz": args.imgsz, "seed": args.seed, **extra}


def main(args: argparse.Namespace) -> dict[str, Any]:
    check_args(args)
    out = Path(args.out)
    classes = resolve_classes(args.classes)
    import_ultralytics(out / "ultralytics_config")
    from ultralytics.cfg import DEFAULT_CFG_DICT

    extra = yolo_overrides(args.yolo, DEFAULT_CFG_DICT)
    data_yaml, train_pictures = prepare_data(args, classes, out / "yolo_data")
    settings = train_settings(args, train_pictures, extra, extra.get("nbs", DEFAULT_CFG_DICT["nbs"]))
    predict = {"imgsz": args.imgsz, "conf": args.conf, "iou": args.iou, "max_det": args.max_det, "device": "cpu"}
    with ultralytics_offline(args.threads):
        weights, progress = train(args.model, data_yaml, out, settings)
        val = VOCDataset(args.data_root, args.val_split, classes)
        detections, milliseconds, sizes = detect_split(weights, val, {**predict, "verbose": False}, args.warmup)
    minutes = (progress.finished - progress.started) / 60
    print(
        f"trained: {progress.steps} optimizer steps, {progress.batches} batches, {progress.epochs} epochs, "
        f"{progress.epochs * train_pictures} pictures seen, {minutes:.1f} minutes"
    )
    detections_file = out / "detections_val.json"
    write_json_atomically(detections, detections_file)
    result = score(detections_file, args.data_root, args.val_split, classes)
    ms = statistics.median(milliseconds)
    print(f"inference: {ms:.0f} ms a picture (median of {len(milliseconds)}, batch 1, {args.threads} threads)")
    results = {
        "map": result["map"],
        "ap": result["ap"],
        "model": args.model,
        "steps": progress.steps,
        "batches": progress.batches,
        "epochs": progress.epochs,
        "train_pictures": train_pictures,
        "pictures_seen": progress.epochs * train_pictures,
        "train_minutes": round(minutes, 2),
        "inference_ms_per_picture": round(ms, 1),
        "inference_pictures": len(milliseconds),
        "picture_sizes": sorted(f"{w}x{h}" for w, h in sizes),
        "yolo_val_map50": progress.map50,
        "seed": args.seed,
        "settings": {**settings, "amp": False, "plots": False, "pretrained": False, "val": False},
        "predict": predict,
        "data_root": str(args.data_root),
        "splits": {"train": args.train_split, "val": args.val_split},
        **machine(args.threads),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"results in {out / 'results.json'}, detections in {detections_file}, YOLO's run in {out / 'train'}")
    return results


if __name__ == "__main__":
    try:
        run(main, get_args_parser().parse_args(), "python -m benchmarks.peer_yolo")
    except ModuleNotFoundError as err:  # ultralytics is the benchmark's own dependency: one line too
        print(f"python -m benchmarks.peer_yolo: error: {err}", file=sys.stderr)
        sys.exit(2)
