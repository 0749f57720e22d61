"""Picture files: EXIF orientation (detection upright, a VOC set in the frame of its XML), pictures too large to
decode safely skipped, truncated ones reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image

import detect
from dataset import VOCDataset, write_annotation, write_split
from dataset.decoding import read_header, read_picture
from model import FCOSConfig, FCOSDetector

RESIZE = (64, 128)
# box [x1, y1, x2, y2] in the XML frame of the upright 96x64 picture below (W x H), and its white block
UPRIGHT_BOX = (11, 21, 40, 50)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = FCOSConfig(backbone="resnet18", fpn_channels=32, head_convs=1, gn_groups=8, resize_size=RESIZE)
    path = tmp_path_factory.mktemp("ckpt") / "model_1.pth"
    checkpoint = {"model": FCOSDetector(config).state_dict(), "config": config.to_dict(), "epoch": 1}
    torch.save(checkpoint | {"classes": list(config.classes)}, path)
    return path


def upright_picture() -> np.ndarray:
    """uint8 [64, 96, 3]: black, white inside :data:`UPRIGHT_BOX`."""
    picture = np.zeros((64, 96, 3), np.uint8)
    x1, y1, x2, y2 = UPRIGHT_BOX
    picture[y1 - 1 : y2, x1 - 1 : x2] = 255
    return picture


def save_turned(path: Path, upright: np.ndarray) -> Path:
    """Store ``upright`` turned on its side (64 wide, 96 high) with EXIF orientation 6, as a phone does."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)
    return path


def write_picture(path: Path, width: int, height: int, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def run_detect(checkpoint: Path, folder: Path, out: Path) -> list[str]:
    """detect.py on ``folder``; the files it could not read or write."""
    args = ["--checkpoint", str(checkpoint), "--input", str(folder), "--output-dir", str(out), "--device", "cpu"]
    return detect.main(detect.get_args_parser().parse_args(args + ["--workers", "0"]))["failures"]


def test_a_turned_picture_is_read_upright(tmp_path):
    path = save_turned(tmp_path / "turned.jpg", upright_picture())
    assert read_header(path) == ((64, 96), (96, 64))
    assert read_picture(path).shape == (64, 96, 3) and read_picture(path, upright=False).shape == (96, 64, 3)
    assert abs(read_picture(path).astype(int) - upright_picture()).mean() < 3


@pytest.mark.parametrize("frame", ["stored", "upright"])
def test_voc_pictures_are_read_in_the_frame_of_their_xml(tmp_path, frame):
    """Boxes drawn on the stored pixels or on the upright view both land on the object."""
    save_turned(tmp_path / "JPEGImages" / "a.jpg", upright_picture())
    x1, y1, x2, y2 = UPRIGHT_BOX
    # orientation 6 shows the stored picture turned clockwise: upright (x, y) is stored (y, 97 - x)
    box, size = ((y1, 97 - x2, y2, 97 - x1), (64, 96)) if frame == "stored" else (UPRIGHT_BOX, (96, 64))
    write_annotation(tmp_path / "Annotations" / "a.xml", "a.jpg", *size, [box], ["nail"])
    write_split(tmp_path, "train", ["a"])
    image, target = VOCDataset(tmp_path, "train", resize_size=(64, 96))[0]
    assert target["orig_size"] == size[::-1]
    bx1, by1, bx2, by2 = target["boxes"][0].round().int().tolist()
    inside, outside = image[:, by1 + 2 : by2 - 2, bx1 + 2 : bx2 - 2], image[:, : by1 - 2, :]
    assert inside.mean() > 1.5 and outside.mean() < -1.5  # white on black, ImageNet-normalised


def test_an_xml_of_neither_frame_is_refused(tmp_path):
    save_turned(tmp_path / "JPEGImages" / "a.jpg", upright_picture())
    write_annotation(tmp_path / "Annotations" / "a.xml", "a.jpg", 50, 50, [UPRIGHT_BOX], ["nail"])
    write_split(tmp_path, "train", ["a"])
    with pytest.raises(ValueError, match=r"a.xml: <size> says 50x50 but .*a.jpg is 64x96 \(96x64 upright\)"):
        VOCDataset(tmp_path, "train")


def test_detect_finds_boxes_in_the_upright_frame(tmp_path, checkpoint, monkeypatch):
    """A box past every edge comes back clipped to the upright picture, which is also the one drawn."""
    save_turned(tmp_path / "in" / "turned.jpg", upright_picture())

    def dense(self, images):
        return torch.zeros(len(images), 1, self.config.num_classes), torch.zeros(len(images), 1, 4)

    def select(self, scores, boxes, image_size, score_threshold=None, pass_sizes=None):
        everywhere = torch.tensor([[-5.0, -5.0, 1e4, 1e4]])
        return [{"boxes": everywhere, "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}] * len(scores)

    monkeypatch.setattr(FCOSDetector, "dense", dense)
    monkeypatch.setattr(FCOSDetector, "select", select)
    assert run_detect(checkpoint, tmp_path / "in", tmp_path / "out") == []
    (found,) = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert found["bbox"] == [1.0, 1.0, 96.0, 64.0]
    assert Image.open(tmp_path / "out" / "turned.jpg").size == (96, 64)


@pytest.mark.parametrize("pixels", [1_500, 3_000], ids=["warning-range", "error-range"])
def test_detect_skips_a_picture_too_large_to_decode(tmp_path, checkpoint, monkeypatch, capsys, pixels):
    """PIL warns past MAX_IMAGE_PIXELS and refuses past twice that: both are skipped with a word."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    write_picture(tmp_path / "in" / "good1.jpg", 40, 24, seed=1)
    write_picture(tmp_path / "in" / "huge.jpg", pixels // 30, 30, seed=2)
    write_picture(tmp_path / "in" / "good2.jpg", 24, 40, seed=3)
    (failure,) = run_detect(checkpoint, tmp_path / "in", tmp_path / "out")
    assert "huge.jpg" in failure and "too large to decode safely" in failure
    assert (tmp_path / "out" / "detections.json").is_file()
    assert sorted(p.name for p in (tmp_path / "out").glob("*.jpg")) == ["good1.jpg", "good2.jpg"]
    skipped = [line for line in capsys.readouterr().err.splitlines() if "huge.jpg" in line]
    assert len(skipped) == 1 and "too large to decode safely" in skipped[0]


def test_detect_warns_of_a_truncated_picture(tmp_path, checkpoint):
    whole = write_picture(tmp_path / "whole.jpg", 80, 60).read_bytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    with pytest.warns(UserWarning, match=r"cut\.jpg: the file is truncated"):
        assert run_detect(checkpoint, tmp_path / "in", tmp_path / "out") == []
    assert (tmp_path / "out" / "cut.jpg").is_file()
