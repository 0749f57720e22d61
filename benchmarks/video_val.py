"""The video path on recorded frames: a split's pictures made into a video, scene by scene, and run through detect.py.

    python -m benchmarks.video_val --checkpoint checkpoint/fod-cpu/last.pth [--fps 5] [--confirm 3/5]
    python -m benchmarks.video_val --onnx fcos_int8.onnx [--runtime openvino]

The split's pictures are not one continuous take: in the order of their ids, neighbouring frames alternate
between scenes (in ``val``, fod_0201 and fod_0203 show one set of objects, fod_0202 and fod_0204 another).
So the video (MJPG in AVI, at ``--fps``, the pictures' size) holds them scene by scene: pictures clustered as
the folds cluster near-duplicates (``dataset.splits.picture_clusters``), at the looser ``--scene-threshold``
that keeps a scene whole when the camera moved a little, the scenes in the order of their first frame and each
scene's frames in the order of their ids. ``--order ids`` keeps the ids' order instead.

Objects are counted from the annotations by greedy linking: in consecutive frames of the video, the same-class
pair of boxes with the highest IoU (at least ``--link-iou``) is one object, then the next pair, and so on; a
box left unlinked starts a new object. An object moved by hand, or seen again after the camera jumped, counts
again, as a camera sees it anew. A detection matches a box of its own class in its frame at IoU >= 0.5.
Reported: the objects, those seen in at least K frames (only these can meet ``--confirm K/N``), and how many of
each were raised as events; events that match no object (an event matches the object most of its track's
detections match) and second events on one object; detections matching no box per frame (the false alarms a
per-frame alert would raise, before confirmation); frames/s end to end.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou

import detect
from benchmarks.bench import cpu_name
from dataset.annotations import load_ground_truth, read_split, resolve_classes
from dataset.splits import picture_clusters


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint")
    model.add_argument("--onnx")
    parser.add_argument("--data-root", default="../shared/foreign_object_dataset")
    parser.add_argument("--split", default="val")
    parser.add_argument("--fps", type=float, default=5.0, help="frame rate the recording is played at")
    parser.add_argument(
        "--order", choices=("scenes", "ids"), default="scenes", help="frames scene by scene, or by their ids"
    )
    parser.add_argument(
        "--scene-threshold",
        type=float,
        default=0.8,
        help="thumbnail difference below which two frames show one scene (near-duplicates: 0.3)",
    )
    parser.add_argument("--confirm", default="3/5")
    parser.add_argument("--score-threshold", help="detect.py's (default: its own)")
    parser.add_argument("--runtime", help="detect.py's, with --onnx (default: its own)")
    parser.add_argument(
        "--save-video",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="detect.py's: write the annotated video (its drawing and encoding count in the frames/s)",
    )
    parser.add_argument("--link-iou", type=float, default=0.3, help="IoU linking a box to the next frame's")
    parser.add_argument("--output-dir", default=None, help="default: a temporary folder")
    return parser


def scene_order(clusters: list[int]) -> list[int]:
    """Frame indices scene by scene: clusters in the order of their first frame, frames in their own order."""
    first = {}
    for index, cluster in enumerate(clusters):
        first.setdefault(cluster, index)
    return sorted(range(len(clusters)), key=lambda index: (first[clusters[index]], index))


def link_objects(frames: list[dict[str, np.ndarray]], min_iou: float) -> list[np.ndarray]:
    """Per frame, the object id [M] of each box, by greedy same-class IoU linking of consecutive frames."""
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


def score_video(
    records: list[dict],
    events: list[dict],
    *,
    frames: list[dict[str, np.ndarray]],
    objects: list[np.ndarray],
    classes: tuple[str, ...],
    confirm: int,
) -> dict[str, Any]:
    """What ``detections.jsonl`` (``records``) and the events say against the objects of the annotated ``frames``:
    the objects, those seen in ``confirm`` frames or more and how many of each were raised, events on no object
    and second events on one, and the detections matching no box per frame."""
    false_alarms, track_matches = 0, {}
    for record in records:
        index = record["frame"]
        for det in record["detections"]:
            found = match(det, frames[index], objects[index], classes)
            false_alarms += found < 0
            if det["track_id"] is not None:
                track_matches.setdefault(det["track_id"], Counter())[found] += 1
    event_objects = [track_matches[e["track_id"]].most_common(1)[0][0] for e in events]
    frames_seen = Counter(int(o) for frame in objects for o in frame)
    confirmable = {o for o, n in frames_seen.items() if n >= confirm}
    raised = {o for o in event_objects if o >= 0}
    return {
        "boxes": int(sum(len(o) for o in objects)),
        "objects": len(frames_seen),
        "objects_raised": len(raised),
        f"objects_in_{confirm}_frames_or_more": len(confirmable),
        f"objects_in_{confirm}_frames_or_more_raised": len(confirmable & raised),
        "events": len(event_objects),
        "events_on_no_object": sum(o < 0 for o in event_objects),
        "duplicate_events": sum(o >= 0 for o in event_objects) - len(raised),
        "false_alarms_per_frame_before_confirmation": false_alarms / max(len(records), 1),
    }


def main(args: argparse.Namespace) -> dict:
    root = Path(args.data_root)
    ids = sorted(read_split(root, args.split))
    scenes = picture_clusters(root, ids, threshold=args.scene_threshold).tolist()
    if args.order == "scenes":
        ids = [ids[i] for i in scene_order(scenes)]
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
    argv += ["--runtime", args.runtime] if args.runtime else []
    argv += [] if args.save_video else ["--no-save-video"]
    report = detect.main(detect.get_args_parser().parse_args(argv))

    records = [json.loads(line) for line in (out / "run" / "detections.jsonl").read_text().splitlines()]
    k = int(args.confirm.split("/")[0])
    summary = {
        "frames": len(records),
        "fps_video": args.fps,
        "order": args.order,
        "scenes": len(set(scenes)),
        **score_video(records, report["events"], frames=frames, objects=objects, classes=classes, confirm=k),
        "frames_per_second_end_to_end": report["fps"],
        "model": str(report["checkpoint"]),
        "runtime": args.runtime or ("onnxruntime" if args.onnx else "pytorch"),
        "save_video": args.save_video,
        "threshold": report["threshold"],
        "cpu": f"{cpu_name()}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}",
    }
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main(get_args_parser().parse_args())
