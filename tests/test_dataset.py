"""VOC loading: annotations, resize/pad, augmentation geometry, crops, collation, errors."""

from __future__ import annotations

import codecs
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from dataset import (
    FOD_CLASSES,
    VOC_CLASSES,
    VOCDataset,
    boxes_to_original,
    collate_fn,
    load_resized,
    parse_annotation,
    pixels_to_xml,
    read_split,
    resolve_classes,
    voc,
    write_annotation,
    write_split,
    xml_to_pixels,
)
from dataset.synthetic import generate
from dataset.transforms import build_augmentation, crop_boxes, normalize_pad, sample_crop_window

REAL = Path(__file__).parents[1].parent / "shared" / "foreign_object_dataset"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="real data set not present")


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, {"train": 4, "val": 2}, seed=3)
    return root


def make_set(
    root: Path, pictures: dict[str, tuple[np.ndarray, list, list]], split: str = "train", difficult=None
) -> Path:
    """Write RGB pictures with 1-based boxes as a VOC set."""
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    for image_id, (rgb, boxes, names) in pictures.items():
        cv2.imwrite(
            str(root / "JPEGImages" / f"{image_id}.jpg"),
            cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, 95],
        )
        write_annotation(
            root / "Annotations" / f"{image_id}.xml",
            f"{image_id}.jpg",
            rgb.shape[1],
            rgb.shape[0],
            boxes,
            names,
            difficult=difficult,
        )
    write_split(root, split, list(pictures))
    return root


# ---------------------------------------------------------------- annotations and counts


@needs_real
@pytest.mark.parametrize(
    "split, images, boxes, per_class",
    [("train", 275, 857, (230, 206, 197, 224)), ("val", 42, 143, (37, 39, 31, 36))],
)
def test_real_counts(split, images, boxes, per_class):
    ids = read_split(REAL, split)
    labels = np.concatenate([parse_annotation(REAL / "Annotations" / f"{i}.xml", FOD_CLASSES)["labels"] for i in ids])
    assert len(ids) == images and len(labels) == boxes
    assert tuple(int((labels == k).sum()) for k in range(1, 5)) == per_class


@needs_real
def test_real_item_maps_back_to_xml():
    ds = VOCDataset(REAL, "val")
    image, target = ds[0]
    assert image.shape == (3, 928, 1664)  # 1440x2560 -> 922x1639, padded to multiples of 32
    xml = parse_annotation(REAL / "Annotations" / f"{ds.ids[0]}.xml", FOD_CLASSES)["boxes"]
    assert torch.allclose(pixels_to_xml(boxes_to_original(target["boxes"], target)), torch.from_numpy(xml), atol=1e-3)


def test_cli_counts(synth, capsys):
    voc.main(voc.get_args_parser().parse_args(["--data-root", str(synth), "--split", "train"]))
    lines = capsys.readouterr().out.splitlines()
    anns = [parse_annotation(synth / "Annotations" / f"{i}.xml", FOD_CLASSES) for i in read_split(synth, "train")]
    labels = np.concatenate([a["labels"] for a in anns])
    assert lines[0] == "images: 4" and lines[1] == f"boxes: {len(labels)}"
    assert lines[2:6] == [f"{c}: {int((labels == k + 1).sum())}" for k, c in enumerate(FOD_CLASSES)]


def test_cli_show_and_benchmark(synth, tmp_path, capsys):
    args = ["--data-root", str(synth), "--split", "train", "--show", "2", "--out", str(tmp_path), "--benchmark"]
    args += ["--workers", "0", "--num-batches", "1", "--resize", "360x640"]
    voc.main(voc.get_args_parser().parse_args(args))
    assert len(list(tmp_path.glob("*.jpg"))) == 2
    assert "images/s" in capsys.readouterr().out


def test_cli_shows_crops_with_the_augmentations_asked_for(synth, tmp_path):
    args = ["--data-root", str(synth), "--show", "3", "--out", str(tmp_path), "--resize", "360x640"]
    voc.main(voc.get_args_parser().parse_args(args + ["--crop", "160x192", "--augment", "flip,paste"]))
    shown = sorted(tmp_path.glob("*.jpg"))
    assert len(shown) == 3 and all(cv2.imread(str(p)).shape == (160, 192, 3) for p in shown)
    with pytest.raises(ValueError, match="unknown augmentation"):
        voc.main(voc.get_args_parser().parse_args(args + ["--augment", "flip,mosaic"]))


def test_resolve_classes(tmp_path):
    assert resolve_classes(None) == FOD_CLASSES and resolve_classes("voc") == VOC_CLASSES and len(VOC_CLASSES) == 20
    assert resolve_classes("a, b,c") == ("a", "b", "c") and resolve_classes(["x", "y"]) == ("x", "y")
    (tmp_path / "c.txt").write_text("nail\n\nclip_B\n")
    assert resolve_classes(str(tmp_path / "c.txt")) == ("nail", "clip_B")


def test_cli_counts_read_files_that_start_with_a_byte_order_mark(synth, tmp_path, capsys):
    """Many Windows tools start a UTF-8 file with a byte-order mark: the split, the class list and the XML
    are read as without it."""
    voc.main(voc.get_args_parser().parse_args(["--data-root", str(synth), "--split", "train"]))
    counts = capsys.readouterr().out
    root = tmp_path / "bom"
    shutil.copytree(synth, root)
    for path in [root / "ImageSets/Main/train.txt", *(root / "Annotations").glob("*.xml")]:
        path.write_bytes(codecs.BOM_UTF8 + path.read_bytes())
    (tmp_path / "classes.txt").write_bytes(codecs.BOM_UTF8 + "\n".join(FOD_CLASSES).encode())
    args = ["--data-root", str(root), "--split", "train", "--classes", str(tmp_path / "classes.txt")]
    voc.main(voc.get_args_parser().parse_args(args))
    assert capsys.readouterr().out == counts


def test_parse_keeps_xml_frame_and_difficult(tmp_path):
    write_annotation(
        tmp_path / "a.xml",
        "a.jpg",
        100,
        50,
        [[1, 2, 30, 40], [5, 5, 9, 9]],
        ["clip_Y", "nail"],
        difficult=[False, True],
    )
    ann = parse_annotation(tmp_path / "a.xml", FOD_CLASSES)
    assert ann["boxes"].tolist() == [[1, 2, 30, 40], [5, 5, 9, 9]]
    assert ann["labels"].tolist() == [3, 1] and ann["difficult"].tolist() == [False, True]
    assert (ann["width"], ann["height"]) == (100, 50)


def test_difficult_left_out_of_training_targets(tmp_path):
    rgb = np.full((64, 96, 3), 120, np.uint8)
    root = make_set(
        tmp_path, {"d": (rgb, [[10, 10, 30, 30], [40, 10, 60, 30]], ["nail", "clip_B"])}, difficult=[False, True]
    )
    train = VOCDataset(root, train=True, augment=(), resize_size=(64, 96))
    evaluation = VOCDataset(root, train=False, resize_size=(64, 96))
    assert train[0][1]["labels"].tolist() == [1]
    assert evaluation[0][1]["labels"].tolist() == [1, 2] and evaluation[0][1]["difficult"].tolist() == [False, True]


def test_images_without_objects(tmp_path):
    root = make_set(tmp_path, {"e": (np.zeros((40, 64, 3), np.uint8), [], [])})
    for ds in (
        VOCDataset(root, resize_size=(40, 64)),
        VOCDataset(root, train=True, resize_size=(40, 64), crop_size=(32, 32)),
    ):
        _, target = ds[0]
        assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)


# ---------------------------------------------------------------- resize, decode, pad, collate


def test_eval_item_boxes_scale_and_normalisation(synth):
    ds = VOCDataset(synth, "train", resize_size=(180, 320))
    image, target = ds[1]
    assert image.shape == (3, 192, 320)  # 180 -> 192; 320 is already a multiple of 32
    assert target["scale"].tolist() == [0.5, 0.5] and target["offset"].tolist() == [0, 0]
    assert target["orig_size"] == (360, 640) and target["image_id"] == ds.ids[1]
    xml = torch.from_numpy(parse_annotation(synth / "Annotations" / f"{ds.ids[1]}.xml", FOD_CLASSES)["boxes"])
    assert torch.equal(target["boxes"], xml_to_pixels(xml) * 0.5)
    assert torch.equal(pixels_to_xml(boxes_to_original(target["boxes"], target)), xml)
    assert image[:, 180:].abs().sum() == 0  # padding stays zero


def test_pictures_are_rgb_and_normalised(tmp_path):
    rgb = np.zeros((32, 64, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    image, _ = VOCDataset(make_set(tmp_path, {"r": (rgb, [], [])}), resize_size=(32, 64))[0]
    expected = (torch.tensor([1.0, 0.0, 0.0]) - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor(
        [0.229, 0.224, 0.225]
    )
    assert torch.allclose(image.mean((1, 2)), expected, atol=0.05)


@pytest.mark.parametrize(
    "size, padded", [((360, 640), (384, 640)), ((352, 640), (352, 640)), ((33, 65), (64, 96)), ((32, 32), (32, 32))]
)
def test_pad_to_multiple_of_32(size, padded):
    out = normalize_pad(np.zeros((*size, 3), np.uint8))
    assert out.shape == (3, *padded)
    assert out[:, size[0] :].abs().sum() == 0 and out[:, :, size[1] :].abs().sum() == 0


def test_resize_keeps_aspect(synth):
    path = synth / "JPEGImages" / "train_00000.jpg"
    for resize_size, expected in [((922, 1640), (922, 1639)), ((300, 400), (225, 400)), ((720, 2000), (720, 1280))]:
        picture, orig = load_resized(path, resize_size)
        assert orig == (360, 640) and picture.shape == (*expected, 3)


@pytest.mark.parametrize("resize_size", [(180, 320), (90, 160), (100, 200)])
def test_reduced_decode_matches_full_decode(synth, resize_size):
    path = synth / "JPEGImages" / "train_00000.jpg"
    picture, _ = load_resized(path, resize_size)
    h, w = picture.shape[:2]
    s = min(resize_size[0] / 360, resize_size[1] / 640)
    assert (h, w) == (round(360 * s), round(640 * s))
    full = cv2.resize(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), (w, h), interpolation=cv2.INTER_AREA)
    assert np.abs(picture.astype(float) - full).mean() < 4.0


def test_collate_pads_to_largest():
    batch = [
        (torch.ones(3, 64, 96), {"boxes": torch.zeros(1, 4)}),
        (torch.full((3, 96, 64), 2.0), {"boxes": torch.zeros(2, 4)}),
    ]
    images, targets = collate_fn(batch)
    assert images.shape == (2, 3, 96, 96) and isinstance(targets, list) and len(targets) == 2
    assert images[0, :, :64, :96].eq(1).all() and images[0, :, 64:].eq(0).all()
    assert images[1, :, :, :64].eq(2).all() and images[1, :, :, 64:].eq(0).all()


def test_dataloader_batches(synth):
    loader = torch.utils.data.DataLoader(
        VOCDataset(synth, "train", train=True, resize_size=(180, 320)), batch_size=2, collate_fn=collate_fn
    )
    images, targets = next(iter(loader))
    assert images.shape == (2, 3, 192, 320) and targets[0]["boxes"].dtype == torch.float32
    assert targets[0]["labels"].dtype == torch.int64


def test_cache_skips_decoding(synth, monkeypatch):
    ds = VOCDataset(synth, "val", cache=True, resize_size=(180, 320))
    first = ds[0][0]

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(cv2, "imread", no_decoding)
    assert torch.equal(ds[0][0], first)


# ---------------------------------------------------------------- augmentation geometry


def test_flip_is_exact(synth):
    ds = VOCDataset(synth, "train", resize_size=(180, 320))
    flipped = VOCDataset(synth, "train", train=True, keep_difficult=True, augment=("flip",), resize_size=(180, 320))
    flipped.augmentation.transforms[0].p = 1.0
    (image, target), (fimage, ftarget) = ds[2], flipped[2]
    w = 320
    expected = torch.stack(
        [w - target["boxes"][:, 2], target["boxes"][:, 1], w - target["boxes"][:, 0], target["boxes"][:, 3]], 1
    )
    assert torch.equal(ftarget["boxes"], expected)
    assert torch.equal(fimage[:, :180, :w], image[:, :180, :w].flip(-1))
    assert torch.equal(ftarget["labels"], target["labels"])


def test_a_flipped_box_covers_exactly_the_mirrored_pixels_and_flipping_twice_is_the_identity(tmp_path):
    """An object on pixels x 10..39, y 5..24 (XML 11..40, 6..25) of a 96-wide picture: mirrored it lies on pixels
    56..85, and its box must say exactly that. (Shifting every coordinate by 1, as VOC loaders often do, put the
    flipped box one pixel off.)"""
    rgb = np.zeros((32, 96, 3), np.uint8)
    rgb[5:25, 10:40] = 255
    root = make_set(tmp_path, {"o": (rgb, [[11, 6, 40, 25]], ["nail"])})
    flipped = VOCDataset(root, train=True, augment=("flip",), resize_size=(32, 96))
    flipped.augmentation.transforms[0].p = 1.0
    image, target = flipped[0]
    columns = torch.nonzero(image[0].amax(0) > 0).flatten()
    assert (columns.min().item(), columns.max().item()) == (56, 85)
    assert target["boxes"].tolist() == [[56.0, 5.0, 86.0, 25.0]]  # continuous edges: pixels 56 .. 85
    flip = flipped.augmentation.transforms[0]
    back = flip(tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(32, 96)))
    assert back.tolist() == [[10.0, 5.0, 40.0, 25.0]] and pixels_to_xml(back).tolist() == [[11, 6, 40, 25]]
    assert torch.equal(flip(back).as_subclass(torch.Tensor), target["boxes"])


def test_rotated_box_holds_rotated_object():
    h, w, angle = 120, 200, 8.0
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[30:50, 120:170] = 255  # object covering [120, 170) x [30, 50)
    pipeline = build_augmentation(("rotate",))
    pipeline.transforms[0].p = 1.0
    pipeline.transforms[0].transforms[0].degrees = [angle, angle]
    box = torch.tensor([[120.0, 30.0, 170.0, 50.0]])
    target = {
        "boxes": tv_tensors.BoundingBoxes(box, format="XYXY", canvas_size=(h, w)),
        "labels": torch.tensor([1]),
        "difficult": torch.tensor([False]),
    }
    out, out_target = pipeline(Image.fromarray(rgb), target)
    ((x1, y1, x2, y2),) = out_target["boxes"].tolist()
    # corners rotated counter-clockwise (as shown) about the picture centre
    a = math.radians(angle)
    for x, y in [(120, 30), (170, 30), (120, 50), (170, 50)]:
        rx = w / 2 + (x - w / 2) * math.cos(a) + (y - h / 2) * math.sin(a)
        ry = h / 2 - (x - w / 2) * math.sin(a) + (y - h / 2) * math.cos(a)
        assert x1 - 1e-3 <= rx <= x2 + 1e-3 and y1 - 1e-3 <= ry <= y2 + 1e-3
    ys, xs = np.nonzero(np.array(out)[:, :, 0] > 128)  # the rotated object's pixels
    assert x1 - 1 <= xs.min() and xs.max() + 1 <= x2 + 1 and y1 - 1 <= ys.min() and ys.max() + 1 <= y2 + 1
    assert x2 - x1 > 50 and y2 - y1 > 20  # grew to hold the rotated rectangle


def test_rotation_clips_and_drops_boxes():
    h, w = 100, 100
    pipeline = build_augmentation(("rotate",))
    pipeline.transforms[0].p = 1.0
    pipeline.transforms[0].transforms[0].degrees = [10.0, 10.0]
    boxes = torch.tensor([[0.0, 0.0, 20.0, 20.0], [97.0, 0.0, 99.5, 0.8], [40.0, 40.0, 60.0, 60.0]])
    target = {
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
        "labels": torch.tensor([1, 2, 3]),
        "difficult": torch.zeros(3, dtype=torch.bool),
    }
    _, out = pipeline(Image.fromarray(np.zeros((h, w, 3), np.uint8)), target)
    assert out["labels"].tolist() == [1, 3]  # the sliver in the corner leaves the picture
    assert out["boxes"].min() >= 0 and out["boxes"].max() <= 100


def test_unknown_augmentation():
    with pytest.raises(ValueError, match="mosaic"):
        build_augmentation(("flip", "mosaic"))


def test_default_training_pipeline_keeps_boxes_valid(synth):
    torch.manual_seed(0)
    ds = VOCDataset(synth, "train", train=True, resize_size=(180, 320))
    for i in range(len(ds)):
        image, target = ds[i]
        b = target["boxes"]
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert b.min() >= 0 and (b[:, 0::2] <= 320).all() and (b[:, 1::2] <= 180).all()
        assert len(b) == len(target["labels"]) == len(target["difficult"])


# ---------------------------------------------------------------- object-centred crops


def random_boxes(n: int, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    h, w = size
    xy = torch.rand(n, 2, generator=generator) * torch.tensor([w, h])
    wh = 1 + torch.rand(n, 2, generator=generator) * 60
    return torch.cat([xy, xy + wh], 1).clamp(max=torch.tensor([w, h, w, h], dtype=torch.float32))


def test_crop_boxes_matches_reference():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        boxes = random_boxes(30, (200, 300), g)
        x0, y0 = (torch.rand(2, generator=g) * 150).tolist()
        window = (x0, y0, x0 + 100, y0 + 80)
        kept, keep = crop_boxes(boxes, window)
        expected = []
        for k, (bx1, by1, bx2, by2) in enumerate(boxes.tolist()):
            cx1, cy1 = max(bx1, window[0]), max(by1, window[1])
            cx2, cy2 = min(bx2, window[2]), min(by2, window[3])
            inside = max(cx2 - cx1, 0) * max(cy2 - cy1, 0)
            if inside > 0 and inside >= 0.5 * (bx2 - bx1) * (by2 - by1):
                expected.append([cx1 - x0, cy1 - y0, cx2 - x0, cy2 - y0])
            assert bool(keep[k]) == (inside > 0 and inside >= 0.5 * (bx2 - bx1) * (by2 - by1))
        assert torch.allclose(kept, torch.tensor(expected).reshape(-1, 4), atol=1e-4)


def test_crop_window_holds_its_object():
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    size, crop = (300, 500), (128, 160)
    for _ in range(200):
        boxes = random_boxes(5, size, g)
        x0, y0, index = sample_crop_window(boxes, size, crop)
        assert 0 <= x0 <= size[1] - crop[1] and 0 <= y0 <= size[0] - crop[0]
        bx1, by1, bx2, by2 = boxes[index].tolist()
        assert x0 <= bx1 and bx2 <= x0 + crop[1] and y0 <= by1 and by2 <= y0 + crop[0]


def test_crop_window_centred_on_large_object_and_small_picture():
    x0, y0, _ = sample_crop_window(torch.tensor([[100.0, 100.0, 300.0, 140.0]]), (400, 600), (64, 64))
    assert x0 == 168 and 76 <= y0 <= 100  # centred along x (object wider than the window)
    assert sample_crop_window(torch.zeros(0, 4), (50, 60), (64, 128))[:2] == (0, 0)


def test_crop_dataset_offsets_map_back(synth):
    torch.manual_seed(0)
    ds = VOCDataset(
        synth, "train", train=True, augment=(), keep_difficult=True, crop_size=(96, 128), resize_size=(360, 640)
    )
    for i in range(len(ds)):
        image, target = ds[i]
        assert image.shape == (3, 96, 128)
        original = xml_to_pixels(
            torch.from_numpy(parse_annotation(synth / "Annotations" / f"{ds.ids[i]}.xml", FOD_CLASSES)["boxes"])
        )
        back = boxes_to_original(target["boxes"], target)
        x0, y0 = target["offset"].tolist()
        inside = (
            (original[:, 0] >= x0) & (original[:, 1] >= y0) & (original[:, 2] <= x0 + 128) & (original[:, 3] <= y0 + 96)
        )
        assert inside.any()  # the object the crop was taken around
        for box in original[inside]:  # every object wholly inside comes back unchanged
            assert (back - box).abs().sum(1).min() < 1e-3


def test_crop_with_augmentation(synth):
    torch.manual_seed(2)
    ds = VOCDataset(synth, "train", train=True, crop_size=(96, 128), resize_size=(360, 640))
    for i in range(len(ds)):
        image, target = ds[i]
        assert image.shape == (3, 96, 128)
        assert target["boxes"].numel() == 0 or (target["boxes"].min() >= 0 and (target["boxes"][:, 0::2] <= 128).all())


def test_crop_larger_than_picture_pads(synth):
    ds = VOCDataset(synth, "val", train=True, augment=(), crop_size=(400, 700), resize_size=(360, 640))
    image, target = ds[0]
    assert image.shape == (3, 416, 704) and target["offset"].tolist() == [0, 0]
    assert image[:, 360:].abs().sum() == 0 and image[:, :, 640:].abs().sum() == 0


# ---------------------------------------------------------------- bad input


def bad_set(root: Path, problem: str) -> tuple[Path, str]:
    rgb = np.full((40, 64, 3), 100, np.uint8)
    make_set(root, {"ok": (rgb, [[2, 2, 20, 20]], ["nail"]), "bad": (rgb, [[5, 5, 30, 30]], ["clip_B"])})
    xml, jpg = root / "Annotations" / "bad.xml", root / "JPEGImages" / "bad.jpg"
    if problem == "missing image":
        jpg.unlink()
        return jpg, "not found"
    if problem == "missing xml":
        xml.unlink()
        return xml, "not found"
    if problem == "unreadable image":
        jpg.write_bytes(b"this is not a picture")
        return jpg, "cannot read"
    if problem == "malformed xml":
        xml.write_text("<annotation><object>")
        return xml, "malformed"
    if problem == "unknown class":
        write_annotation(xml, "bad.jpg", 64, 40, [[5, 5, 30, 30]], ["screwdriver"])
        return xml, "screwdriver"
    if problem == "xmax <= xmin":
        write_annotation(xml, "bad.jpg", 64, 40, [[30, 5, 30, 30]], ["nail"])
        return xml, "xmax > xmin"
    write_annotation(xml, "bad.jpg", 64, 40, [[5, 30, 30, 12]], ["nail"])  # ymax <= ymin
    return xml, "ymax > ymin"


@pytest.mark.parametrize(
    "problem",
    [
        "missing image",
        "missing xml",
        "unreadable image",
        "malformed xml",
        "unknown class",
        "xmax <= xmin",
        "ymax <= ymin",
    ],
)
def test_bad_input_names_the_file(tmp_path, problem):
    path, words = bad_set(tmp_path, problem)
    error = FileNotFoundError if problem.startswith("missing") else ValueError
    with pytest.raises(error) as info:
        ds = VOCDataset(tmp_path, resize_size=(40, 64))
        for i in range(len(ds)):
            ds[i]
    assert str(path) in str(info.value) and words in str(info.value)


def test_missing_split_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="test.txt"):
        read_split(tmp_path, "test")
