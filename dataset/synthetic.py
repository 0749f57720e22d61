"""Synthetic foreign-object road pictures in VOC layout.

Each picture: textured asphalt (noise at three scales plus gravel specks), worn lane paint with
cracks, distractors that are not objects (stones, leaves, paper scraps, stains), one to six
objects of the four classes drawn with their own shape and colour (nail, clip_B, clip_Y,
L_stick), rotated, about 1/28..1/14 of the picture width long and not overlapping, each with a
soft cast shadow; then uneven light, large shadows, slight blur, sensor noise and sometimes a
CCTV time stamp. Boxes are the tight bounding boxes of the drawn shapes.

Picture ``index`` of ``split`` is drawn from its own generator seeded with (seed, split, index),
so the same seed gives the same bytes whatever the counts.

    python -m dataset.synthetic --out data/synthetic --train 200 --val 50 --test 50 --seed 0
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from cli import DefaultsFormatter, parse_size, run
from dataset.annotations import FOD_CLASSES, split_path, write_annotation, write_split

JPEG_QUALITY = 85
MARKER = "synthetic.json"  # written by generate(): the folder is this project's to rewrite
# relative length of each class (real clip_Y boxes are smaller than the others)
CLASS_LENGTH = {"nail": 1.1, "clip_B": 0.95, "clip_Y": 0.75, "L_stick": 1.2}
ALPHA_VISIBLE = 0.25  # a pixel belongs to an object's box when its coverage is at least this


class Part(NamedTuple):
    """One shape of an object drawn by :func:`_draw_object`: a filled polygon, or a line through ``points``.

    Objects span x in [-0.5, 0.5] of object units before scaling by their length in pixels.
    """

    kind: str  # "poly" (filled) or "line"
    points: np.ndarray  # float32 [K, 2], object units
    colour: np.ndarray  # float32 [3], RGB
    thickness: float = 0.0  # a line's, in object units (at least one pixel)
    closed: bool = False  # a line's: back to its first point


def _rect(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)


def _metal(rng: np.random.Generator) -> np.ndarray:
    """Bright silver or brass."""
    g = rng.uniform(150, 215)
    tint = [(0, 2, 8), (22, 8, -40)][rng.choice(2, p=[0.65, 0.35])]
    return np.array([g + t for t in tint], dtype=np.float32)


def _disc(x: float, radius: float, sides: int = 12) -> np.ndarray:
    """A round head: a ``sides``-gon of ``radius`` centred at (x, 0)."""
    angles = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    return np.stack([x + radius * np.cos(angles), radius * np.sin(angles)], 1).astype(np.float32)


def _nail(rng: np.random.Generator) -> list[Part]:
    """Screw seen from above: head, threaded shaft, pointed tip, a highlight along the shaft."""
    col = _metal(rng)
    hw, head = rng.uniform(0.08, 0.11), rng.uniform(0.17, 0.22)
    dark, light = col * 0.6, np.minimum(col * 1.35 + 20, 255)
    parts: list[Part] = [
        Part("poly", _disc(-0.4, head), col * 0.9),
        Part("poly", _rect(-0.43, 0.38, -hw, hw), col),
        Part("poly", np.array([[0.38, -hw], [0.5, 0.0], [0.38, hw]], np.float32), col),
    ]
    for x in np.arange(-0.34, 0.36, 0.08):
        parts.append(Part("line", np.array([[x, -hw], [x + 0.03, hw]], np.float32), dark))
    parts.append(Part("line", np.array([[-0.42, -hw * 0.35], [0.4, -hw * 0.2]], np.float32), light))
    return parts


def _clip_b(rng: np.random.Generator) -> list[Part]:
    """Black binder clip from above: dark body with a silver wire handle, sometimes two."""
    black = np.full(3, rng.uniform(12, 40), np.float32)
    wire = np.full(3, rng.uniform(150, 220), np.float32)
    back, front = rng.uniform(0.28, 0.34), rng.uniform(0.22, 0.27)
    body = np.array([[-0.5, -back], [0.05, -front], [0.05, front], [-0.5, back]], np.float32)
    parts: list[Part] = [
        Part("poly", body, black),
        Part("line", np.array([[-0.5, -back], [-0.5, back]], np.float32), black + 45),
        Part(
            "line", np.array([[0.03, -0.2], [0.5, -0.13], [0.5, 0.13], [0.03, 0.2]], np.float32), wire, thickness=0.035
        ),
    ]
    if rng.random() < 0.5:
        parts.append(
            Part(
                "line",
                np.array([[0.03, -0.2], [-0.38, -0.13], [-0.38, 0.13], [0.03, 0.2]], np.float32),
                wire * 0.9,
                thickness=0.035,
            )
        )
    return parts


def _clip_y(rng: np.random.Generator) -> list[Part]:
    """Yellow clip: tapered yellow body with a dark slot, a highlight and a wire ring at the back."""
    yellow = np.array([rng.uniform(210, 250), rng.uniform(175, 220), rng.uniform(20, 90)], np.float32)
    w = rng.uniform(0.17, 0.24)
    body = np.array(
        [[-0.38, -0.6 * w], [0.1, -w], [0.5, -0.55 * w], [0.5, 0.55 * w], [0.1, w], [-0.38, 0.6 * w]], np.float32
    )
    ring = np.array([[-0.38, -0.5 * w], [-0.5, -0.45 * w], [-0.5, 0.45 * w], [-0.38, 0.5 * w]], np.float32)
    return [
        Part("poly", body, yellow),
        Part("line", ring, yellow * 0.8, thickness=0.04, closed=True),
        Part("line", np.array([[-0.05, 0.0], [0.5, 0.0]], np.float32), yellow * 0.45),
        Part(
            "line",
            np.array([[-0.3, -0.35 * w], [0.35, -0.55 * w]], np.float32),
            np.minimum(yellow + 40, 255),
        ),
    ]


def _l_stick(rng: np.random.Generator) -> list[Part]:
    """Hex key: long arm with a short arm bent at a right angle, mostly black, sometimes dull silver."""
    col = _metal(rng) * 0.8 if rng.random() < 0.15 else np.full(3, rng.uniform(25, 55), np.float32)
    t, s = rng.uniform(0.045, 0.065), rng.uniform(0.35, 0.5) * (1 if rng.random() < 0.5 else -1)
    light = np.minimum(col * 1.3 + 30, 255)
    return [
        Part("poly", _rect(-0.5, 0.5, -t, t), col),
        Part("poly", _rect(0.5 - 2 * t, 0.5, min(-t, s), max(t, s)), col * 0.92),
        Part("line", np.array([[-0.48, -t * 0.3], [0.45, -t * 0.3]], np.float32), light),
    ]


SHAPES = {"nail": _nail, "clip_B": _clip_b, "clip_Y": _clip_y, "L_stick": _l_stick}


def _texture(
    rng: np.random.Generator, h: int, w: int, cells: int, sigma: float, interp: int = cv2.INTER_LINEAR
) -> np.ndarray:
    """Gaussian noise on a grid ``cells`` times coarser, upsampled to [h, w] (float32)."""
    grid = rng.standard_normal((h // cells + 2, w // cells + 2), dtype=np.float32) * sigma
    return cv2.resize(grid, (w + 2 * cells, h + 2 * cells), interpolation=interp)[cells : cells + h, cells : cells + w]


def _asphalt(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Grey road surface [h, w, 3] float32: fine grain, mid and coarse blotches, gravel specks."""
    lum = np.float32(rng.uniform(85, 150)) + rng.standard_normal((h, w), dtype=np.float32) * np.float32(
        rng.uniform(7, 14)
    )
    lum += _texture(rng, h, w, 2, rng.uniform(5, 10))
    lum += _texture(rng, h, w, 24, rng.uniform(1, 4), cv2.INTER_CUBIC)
    n = int(h * w * rng.uniform(0.002, 0.006))
    lum.flat[rng.integers(0, h * w, n)] += rng.choice([-45.0, 35.0], n).astype(np.float32)
    tint = 1.0 + rng.uniform(-0.015, 0.015, 3).astype(np.float32)
    return lum[:, :, None] * tint


def _lane_paint(rng: np.random.Generator, img: np.ndarray) -> None:
    """Worn lane marking with cracks: a band crossing the picture, sometimes a second one."""
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    for _ in range(1 if rng.random() < 0.75 else 2):
        cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.2, 0.8) * h
        angle, half = rng.uniform(0, np.pi), rng.uniform(0.015, 0.045) * w
        d, n = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
        far = 2.0 * (h + w)
        band = np.array([[cx, cy] + s * far * d + t * half * n for s, t in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
        cv2.fillPoly(mask, [np.round(band * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    cracks = np.abs(_texture(rng, h, w, 10, 1.0)) < 0.07
    wear = np.clip(_texture(rng, h, w, 6, 0.6) + 0.9, 0, 1)
    alpha = (mask.astype(np.float32) / 255.0) * wear * np.where(cracks, 0.15, 0.92).astype(np.float32)
    paint = np.array([228, 228, 222] if rng.random() < 0.8 else [225, 190, 70], np.float32) * rng.uniform(0.9, 1.05)
    img += alpha[:, :, None] * (paint - img + 0.4 * (img - img.mean()))


def _distractors(rng: np.random.Generator, img: np.ndarray, length: float) -> None:
    """Things on the road that are not objects: stones, leaves, paper scraps."""
    h, w = img.shape[:2]
    for _ in range(rng.integers(8, 40)):  # small stones
        r = 1.0 + rng.uniform(0.0, 0.12 * length)
        k = rng.integers(5, 8)
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = r * rng.uniform(0.6, 1.0, k)
        pts = np.stack([rng.uniform(0, w) + rad * np.cos(ang), rng.uniform(0, h) + rad * np.sin(ang)], 1)
        g = rng.uniform(60, 190)
        cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], (g, g * 0.98, g * 0.95), cv2.LINE_8, 4)
    for _ in range(rng.integers(0, 4)):  # leaves
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        axes = (max(1, int(rng.uniform(0.25, 0.6) * length)), max(1, int(rng.uniform(0.1, 0.25) * length)))
        col = [(95, 70, 35), (120, 100, 45), (70, 85, 40), (150, 110, 50)][rng.integers(4)]
        col = tuple(float(c) * rng.uniform(0.8, 1.2) for c in col)
        angle = rng.uniform(0, 180)
        cv2.ellipse(img, centre, axes, angle, 0, 360, col, -1)
        cv2.ellipse(img, centre, (axes[0], 0), angle, 0, 360, tuple(c * 0.7 for c in col), 1)
    for _ in range(rng.integers(0, 3)):  # paper scraps
        c, s = rng.uniform(0, 1, 2) * (w, h), rng.uniform(0.2, 0.5) * length
        pts = c + rng.uniform(-s, s, (4, 2))
        g = rng.uniform(170, 235)
        cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], (g, g, g * 0.95), cv2.LINE_8, 4)


def _stains(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Multiplicative darkening [h, w] from oil stains and one large cast shadow, both soft."""
    small = np.zeros((h // 4, w // 4), np.float32)
    for _ in range(rng.integers(0, 4)):
        centre = (int(rng.uniform(0, w // 4)), int(rng.uniform(0, h // 4)))
        axes = (int(rng.uniform(2, w // 20)), int(rng.uniform(2, w // 30)))
        cv2.ellipse(small, centre, axes, rng.uniform(0, 180), 0, 360, rng.uniform(0.15, 0.35), -1)
    if rng.random() < 0.4:
        pts = rng.uniform(0, 1, (5, 2)) * (w // 4, h // 4)
        pts[:2, 0] = rng.choice([0, w // 4])  # reaching in from a side
        cv2.fillPoly(small, [cv2.convexHull(pts.astype(np.int32))], rng.uniform(0.25, 0.5))
    small = cv2.GaussianBlur(small, (0, 0), rng.uniform(1.0, 3.0))
    return 1.0 - cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _lighting(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Uneven illumination gain [h, w]: a gradient in a random direction plus low-frequency blobs."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    ramp = ((xx / w - 0.5) * np.cos(a) + (yy / h - 0.5) * np.sin(a)) * rng.uniform(0.1, 0.45)
    return np.float32(rng.uniform(0.8, 1.15)) + ramp + _texture(rng, h, w, max(h, w) // 4, 0.08, cv2.INTER_CUBIC)


def _draw_object(
    img: np.ndarray, parts: list[Part], length: float, angle: float, centre: np.ndarray, shadow: np.ndarray
) -> tuple[int, int, int, int]:
    """Composite one object (with its cast shadow) into ``img`` in place.

    The parts are scaled by ``length`` pixels, rotated by ``angle`` and moved to ``centre``.
    Returns the tight box (x1, y1, x2, y2), inclusive pixel indices.
    """
    h, w = img.shape[:2]
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]], np.float32) * length
    placed = [part.points @ rot.T + centre for part in parts]
    allpts = np.concatenate(placed)
    margin = 3 + int(np.ceil(np.abs(shadow).max()))
    x0, y0 = np.maximum(np.floor(allpts.min(0)).astype(int) - margin, 0)
    x1, y1 = np.minimum(np.ceil(allpts.max(0)).astype(int) + margin + 1, (w, h))
    ph, pw = y1 - y0, x1 - x0
    alpha = np.zeros((ph, pw), np.float32)
    colour = np.zeros((ph, pw, 3), np.float32)
    for part, pts in zip(parts, placed):
        mask = np.zeros((ph, pw), np.uint8)
        fixed = np.round((pts - (x0, y0)) * 16).astype(np.int32)
        if part.kind == "poly":
            cv2.fillPoly(mask, [fixed], 255, cv2.LINE_AA, 4)
        else:
            thickness = max(1, int(round(part.thickness * length)))
            cv2.polylines(mask, [fixed], part.closed, 255, thickness, cv2.LINE_AA, 4)
        a = mask.astype(np.float32)[:, :, None] / 255.0
        colour += a * (part.colour - colour)
        alpha = np.maximum(alpha, a[:, :, 0])
    patch = img[y0:y1, x0:x1]
    dx, dy = int(round(shadow[0])), int(round(shadow[1]))
    cast = cv2.GaussianBlur(np.roll(alpha, (dy, dx), axis=(0, 1)), (5, 5), 0)
    patch *= (1.0 - 0.45 * cast)[:, :, None]
    patch += alpha[:, :, None] * (colour - patch)
    ys, xs = np.nonzero(alpha >= ALPHA_VISIBLE)
    return int(x0 + xs.min()), int(y0 + ys.min()), int(x0 + xs.max()), int(y0 + ys.max())


def _timestamp(rng: np.random.Generator, picture: np.ndarray) -> None:
    h, w = picture.shape[:2]
    month, day, year = rng.integers(1, 13), rng.integers(1, 29), rng.integers(15, 25)
    hour, minute, second = rng.integers(0, 24), rng.integers(0, 60), rng.integers(0, 60)
    text = f"{month:02d}-{day:02d}-20{year} {hour:02d}:{minute:02d}:{second:02d}"
    scale = w / 1100
    org = (int(0.02 * w), int(0.05 * h) + 4)
    cv2.putText(picture, text, (org[0] + 1, org[1] + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(picture, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235), 1, cv2.LINE_AA)


def picture_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator for picture ``index`` of ``split``: independent of the counts asked for."""
    return np.random.default_rng([seed, zlib.crc32(split.encode()), index])


def render(rng: np.random.Generator, size: tuple[int, int] = (360, 640)) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Draw one picture. Returns (RGB uint8 [H, W, 3], boxes int64 [M, 4] x1, y1, x2, y2 inclusive
    0-based pixel indices, class names [M])."""
    h, w = size
    img = _asphalt(rng, h, w)
    if rng.random() < 0.8:
        _lane_paint(rng, img)
    base_length = w / 30.0
    _distractors(rng, img, base_length)

    boxes, names, placed = [], [], []  # placed: (cx, cy, radius)
    shadow = rng.uniform(1.0, 2.5) * np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), np.sin(a)])
    for _ in range(rng.integers(1, 7)):
        name = FOD_CLASSES[rng.integers(len(FOD_CLASSES))]
        length = w * rng.uniform(1 / 28, 1 / 14) * CLASS_LENGTH[name]
        radius = 0.65 * length + 3
        for _attempt in range(30):
            centre = rng.uniform((radius, radius), (w - radius, h - radius))
            if all(np.hypot(*(centre - (cx, cy))) > radius + r for cx, cy, r in placed):
                break
        else:
            continue
        parts = SHAPES[name](rng)
        boxes.append(_draw_object(img, parts, length, rng.uniform(0, 2 * np.pi), centre.astype(np.float32), shadow))
        names.append(name)
        placed.append((centre[0], centre[1], radius))

    img *= (_stains(rng, h, w) * _lighting(rng, h, w))[:, :, None]
    img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.5, 0.9))
    img += rng.standard_normal((h, w, 1), dtype=np.float32) * np.float32(rng.uniform(1, 4))
    picture = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        _timestamp(rng, picture)
    return picture, np.array(boxes, dtype=np.int64).reshape(-1, 4), names


def _spec(counts: Mapping[str, int], seed: int, size: tuple[int, int]) -> dict:
    return {"counts": dict(counts), "seed": seed, "size": list(size)}


def ensure_data_set(out: str | Path, counts: Mapping[str, int], seed: int, splits: Sequence[str]) -> bool:
    """A data set to train on in ``out``: the one already there when it lists every split of ``splits`` (used as
    it is, whoever made it), else a synthetic one of ``counts`` pictures made by :func:`generate` (which writes
    only into an absent or empty folder, or one it was interrupted in). Returns whether it generated."""
    out = Path(out)
    try:
        interrupted = not json.loads((out / MARKER).read_text()).get("complete")
    except (OSError, ValueError):
        interrupted = False
    if not interrupted and all(split_path(out, split).is_file() for split in splits):
        return False
    generate(out, counts, seed)
    return True


def generate(
    out: str | Path, counts: Mapping[str, int], seed: int = 0, size: tuple[int, int] = (360, 640)
) -> dict[str, list[str]]:
    """Write a VOC-layout synthetic set under ``out``: ``JPEGImages/<split>_<index>.jpg``,
    ``Annotations/*.xml`` (1-based coordinates), ``ImageSets/Main/<split>.txt`` for each split in
    ``counts`` and ``trainval.txt`` (train + val). Returns the ids of each split.

    ``out`` must be absent, empty, or a folder this function wrote before (it leaves the marker file
    ``MARKER`` there): anything else is a ``FileExistsError``, so a user's files are never overwritten.
    """
    out = Path(out)
    if out.exists() and not (out / MARKER).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"{out}: exists and is not a synthetic data set made by this project; "
            "refusing to write into it (choose an empty or new folder)"
        )
    (out / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(json.dumps(_spec(counts, seed, size)))
    ids: dict[str, list[str]] = {}
    for split, count in counts.items():
        ids[split] = []
        for index in range(count):
            image_id = f"{split}_{index:05d}"
            picture, boxes, names = render(picture_rng(seed, split, index), size)
            bgr = cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)
            cv2.imwrite(str(out / "JPEGImages" / f"{image_id}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            write_annotation(
                out / "Annotations" / f"{image_id}.xml", f"{image_id}.jpg", size[1], size[0], boxes + 1, names
            )
            ids[split].append(image_id)
        write_split(out, split, ids[split])
    write_split(out, "trainval", ids.get("train", []) + ids.get("val", []))
    (out / MARKER).write_text(json.dumps({**_spec(counts, seed, size), "complete": True}))
    return ids


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Write a synthetic foreign-object data set (VOC layout)",
        add_help=add_help,
        formatter_class=DefaultsFormatter,
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--train", type=int, default=100, help="pictures in the train split")
    parser.add_argument("--val", type=int, default=20, help="pictures in the val split")
    parser.add_argument("--test", type=int, default=20, help="pictures in the test split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=parse_size, default="360x640", help="picture size HxW")
    return parser


def main(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    counts = {"train": args.train, "val": args.val, "test": args.test}
    ids = generate(args.out, counts, args.seed, args.size)
    total = sum(len(v) for v in ids.values())
    elapsed = time.perf_counter() - start
    print(f"wrote {total} pictures ({', '.join(f'{k} {len(v)}' for k, v in ids.items())}) to {args.out}")
    print(f"{total / elapsed:.1f} pictures/s")


if __name__ == "__main__":
    run(main, get_args_parser().parse_args(), "python -m dataset.synthetic")
