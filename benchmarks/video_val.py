"""The video path on a recording: the ``val`` split's frames, in order, made into a video and run through detect.py.

    python -m benchmarks.video_val --checkpoint checkpoint/fod-cpu/last.pth [--fps 5] [--confirm 3/5]
    python -m benchmarks.video_val --onnx fcos_int8.onnx

The video (MJPG in AVI, at ``--fps``, the pictures' size) holds the split's pictures in the order of their ids
(``val`` is one recorded sequence). Physical objects are counted from the annotations by greedy linking: in
consecutive frames, the same-class pair of boxes with the highest IoU (at least ``--link-iou``) is one object,
then the next pair, and so on; a box left unlinked starts a new object. A detection matches a box of its own
class in its frame at IoU >= 0.5. Reported: the objects and how many were raised as events; events that match
no object (an event matches the object most of its track's detections match); detections matching no box per
frame (the false alarms a per-frame alert would raise, before confirmation); frames/s end to end.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou

import detect
from dataset.annotations import load_ground_truth, read_split, resolve_classes


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint")
    model.add_argument("--onnx")
    parser.add_argument("--data-root", default="../shared/foreign_object_dataset")
    parser.add_argument("--split", default="val")
    parser.add_argument("--fps", type=float, default=5.0, help="frame rate the recording is played at")
    parser.add_argument("--confirm", default="3/5")
    parser.add_argument("--score-threshold", help="detect.py's (default: its own)")
    parser.add_argument("--link-iou", type=float, default=0.3, help="IoU linking a box to the next frame's")
    parser.add_argument("--output-dir", default=None, help="default: a temporary folder")
    return parser


def link_objects(frames: list[dict[str, np.ndarray]], min_iou: float) -> list[np.ndarray]:
    """Per frame, the physical object id [M] of each box, by greedy same-class IoU linking of consecutive frames."""
    ids, count, previous = [], 0, None
    for gt in frames:
        current = np.full(len(gt["labels"]), -1)
        if previous is not None and len(current) and len(previous["labels"]):
            iou = box_iou(torch.as_tensor(previous["boxes"]), torch.as_tensor(gt["boxes"])).numpy()
            iou[previous["labels"][:, None] != gt["labels"][None, :]] = 0
            while iou.size and iou.max() >= min_iou:
                i, j = np.unravel_index(iou.argmax(), iou.shape)
                current[j] = ids[-1][i]
                iou[i, :], iou[:, j] = 0, 0
        for j in np.flatnonzero(current < 0):
            current[j], count = count, count + 1
        ids.append(current)
        previous = gt
    return ids


def match(det: dict, gt: dict, objects: np.ndarray, classes: tuple[str, ...]) -> int:
    """The object id of the box of ``det``'s class with the highest IoU >= 0.5 in its frame, -1 for none."""
    same = np.flatnonzero(gt["labels"] == classes.index(det["category"]) + 1)
    if not len(same):
        return -1
    iou = box_iou(torch.tensor([det["bbox"]]), torch.as_tensor(gt["boxes"][same])).numpy()[0]
    return int(objects[same[iou.argmax()]]) if iou.max() >= 0.5 else -1


def main(args: argparse.Namespace) -> dict:
    root = Path(args.data_root)
    ids = sorted(read_split(root, args.split))
    classes = resolve_classes(None)
    truth = load_ground_truth(root, args.split, classes)
    frames = [truth[i] for i in ids]
    objects = link_objects(frames, args.link_iou)
    out = Path(args.output_dir or tempfile.mkdtemp(prefix="video_val_"))
    out.mkdir(parents=True, exist_ok=True)
    video = out / f"{args.split}.avi"
    first = cv2.imread(str(root / "JPEGImages" / f"{ids[0]}.jpg"))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), args.fps, (first.shape[1], first.shape[0]))
    for i in ids:
        writer.write(cv2.imread(str(root / "JPEGImages" / f"{i}.jpg")))
    writer.release()

    model = ["--checkpoint", args.checkpoint] if args.checkpoint else ["--onnx", args.onnx]
    argv = [*model, "--input", str(video), "--output-dir", str(out / "run"), "--confirm", args.confirm]
    argv += ["--score-threshold", args.score_threshold] if args.score_threshold else []
    report = detect.main(detect.get_args_parser().parse_args(argv))

    records = [json.loads(line) for line in (out / "run" / "detections.jsonl").read_text().splitlines()]
    false_alarms, track_matches = 0, {}
    for record in records:
        index = record["frame"]
        for det in record["detections"]:
            found = match(det, frames[index], objects[index], classes)
            false_alarms += found < 0
            if det["track_id"] is not None:
                track_matches.setdefault(det["track_id"], Counter())[found] += 1
    event_objects = [track_matches[e["track_id"]].most_common(1)[0][0] for e in report["events"]]
    physical = int(max((o.max() + 1 for o in objects if len(o)), default=0))
    raised = {o for o in event_objects if o >= 0}
    summary = {
        "frames": len(records),
        "fps_video": args.fps,
        "boxes": int(sum(len(o) for o in objects)),
        "objects": physical,
        "events": len(event_objects),
        "objects_raised": len(raised),
        "events_on_no_object": sum(o < 0 for o in event_objects),
        "duplicate_events": sum(o >= 0 for o in event_objects) - len(raised),
        "false_alarms_per_frame_before_confirmation": false_alarms / max(len(records), 1),
        "frames_per_second_end_to_end": report["fps"],
        "model": str(report["checkpoint"]),
        "cpu": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"{torch.backends.cpu.get_cpu_capability()}",
    }
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main(get_args_parser().parse_args())
