"""The copy-paste augmentation: cut-outs, where pasted objects go, what they cover, and the data set's use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dataset.paste as paste
from dataset import VOCDataset
from dataset.paste import CutOut, ObjectBank, _box_cover, cut_out
from dataset.synthetic import generate
from engine.data import cache_pictures


def road_with_object(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 120x160 grey road with fine noise and a dark 12x30 bar at rows 50..61, columns 60..89; (picture, mask)."""
    rng = np.random.default_rng(seed)
    picture = np.clip(rng.normal(128, 4, (120, 160, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((120, 160), bool)
    mask[50:62, 60:90] = True
    picture[mask] = (20, 20, 30)
    return picture, mask


def test_cut_out_separates_the_object_from_the_road():
    picture, mask = road_with_object()
    cut = cut_out(picture, (55.5, 45.0, 94.5, 66.0), label=3)  # the bar with road around it inside the box
    assert cut is not None and cut.label == 3
    assert cut.pixels.shape == (21, 40, 3) and cut.alpha.shape == (21, 40)  # the pixels the box touches
    np.testing.assert_array_equal(cut.pixels, picture[45:66, 55:95])
    np.testing.assert_allclose(cut.box, [0.5, 0.0, 39.5, 21.0])  # the box in the cut-out's own pixels
    opaque = cut.alpha >= 0.5
    truth = mask[45:66, 55:95]
    assert (opaque & truth).sum() / (opaque | truth).sum() > 0.95


def test_nothing_is_cut_out_of_bare_road_or_a_box_under_4_pixels():
    picture, _ = road_with_object()
    assert cut_out(picture, (5, 5, 35, 35), label=1) is None  # road only: nothing differs from the road
    assert cut_out(picture, (60, 50, 63, 62), label=1) is None  # 3 pixels wide


def test_box_cover_matches_the_mean_over_each_box():
    generator = torch.Generator().manual_seed(0)
    cover = torch.rand(40, 50, generator=generator, dtype=torch.float64).numpy()
    corners = torch.rand(30, 2, 2, generator=generator) * torch.tensor([50.0, 40.0])
    boxes = torch.cat([corners.min(1).values, corners.max(1).values], 1).numpy()
    expected = []
    for x1, y1, x2, y2 in boxes:
        left, top = int(np.floor(x1)), int(np.floor(y1))
        expected.append(cover[top : max(int(np.ceil(y2)), top + 1), left : max(int(np.ceil(x2)), left + 1)].mean())
    np.testing.assert_allclose(_box_cover(cover, boxes), expected, rtol=1e-9)


def square_cutout(size: int = 10, label: int = 2, value: int = 200) -> CutOut:
    """A fully opaque ``size`` square of colour ``value``, its box the whole square."""
    return CutOut(
        np.full((size, size, 3), value, np.uint8),
        np.ones((size, size), np.float32),
        np.array([0, 0, size, size], np.float32),
        label,
    )


@pytest.fixture
def always(monkeypatch):
    monkeypatch.setattr(paste, "PASTE_PROBABILITY", 1.0)
    monkeypatch.setattr(paste, "MAX_PASTED", 1)


def test_a_pasted_object_lies_against_an_object_and_its_pixels_are_the_cut_outs(always):
    picture = np.full((100, 100, 3), 50, np.uint8)
    boxes, labels = torch.tensor([[40.0, 40.0, 60.0, 50.0]]), torch.tensor([1])
    bank = ObjectBank([square_cutout()])
    for seed in range(20):
        torch.manual_seed(seed)
        out, new_boxes, new_labels, keep = bank.paste(picture, boxes, labels)
        assert keep.tolist() == [True] and new_labels.tolist() == [1, 2]
        torch.testing.assert_close(new_boxes[0], boxes[0])
        x0, y0, x1, y1 = new_boxes[1].tolist()
        assert (x1 - x0, y1 - y0) == (10, 10) and x0 == int(x0) and y0 == int(y0)
        # from touching to overlapping: the centres are no farther apart than the half sides' sums
        assert abs((x0 + x1) / 2 - 50) <= 15 + 0.5 and abs((y0 + y1) / 2 - 45) <= 10 + 0.5
        inside = np.zeros((100, 100), bool)
        inside[int(y0) : int(y1), int(x0) : int(x1)] = True
        assert (out[inside] == 200).all() and (out[~inside] == 50).all()


def test_an_object_covered_beyond_half_its_box_loses_its_box(always, monkeypatch):
    monkeypatch.setattr(paste, "NEAR", (0.0, 0.0))  # pasted right on its neighbour
    picture = np.full((100, 100, 3), 50, np.uint8)
    boxes, labels = torch.tensor([[45.0, 45.0, 55.0, 55.0], [0.0, 0.0, 8.0, 8.0]]), torch.tensor([1, 3])
    torch.manual_seed(0)
    while True:  # until the first box is the neighbour drawn (the second lies apart from where the paste goes)
        out, new_boxes, new_labels, keep = ObjectBank([square_cutout(size=16)]).paste(picture, boxes, labels)
        if keep.tolist() == [False, True]:
            break
    assert new_labels.tolist() == [3, 2]
    torch.testing.assert_close(new_boxes, torch.tensor([[0.0, 0.0, 8.0, 8.0], [42.0, 42.0, 58.0, 58.0]]))


def test_a_flipped_scaled_cut_out_keeps_its_box_on_its_object(monkeypatch):
    pixels = np.zeros((10, 20, 3), np.uint8)
    alpha = np.zeros((10, 20), np.float32)
    alpha[2:8, 0:6] = 1.0
    bank = ObjectBank([CutOut(pixels, alpha, np.array([0, 2, 6, 8], np.float32), 1)])
    seen = set()
    for seed in range(16):
        torch.manual_seed(seed)
        cut = bank._draw(scale=2.0)
        assert cut.alpha.shape == (20, 40)
        x1, y1, x2, y2 = cut.box.tolist()
        assert (y1, y2) == (4, 16)
        seen.add((x1, x2))
        ys, xs = np.nonzero(cut.alpha >= 0.5)  # the box holds the object (to the resize's half pixel)
        assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (4, 16, x1, x2)
    assert seen == {(0, 12), (28, 40)}  # as cut, and mirrored


def test_paste_in_the_data_set_adds_objects_and_changes_nothing_outside_them(tmp_path, monkeypatch):
    monkeypatch.setattr(paste, "PASTE_PROBABILITY", 1.0)
    generate(tmp_path, {"train": 4}, seed=1)
    common = dict(train=True, resize_size=(360, 640), crop_size=(160, 160), cache=True)
    pasted_set = VOCDataset(tmp_path, "train", augment=("paste",), **common)
    plain_set = VOCDataset(tmp_path, "train", augment=(), **common)
    cache_pictures(pasted_set, show_progress=False)
    bank = pasted_set.object_bank()
    assert len(bank) > 0 and pasted_set.object_bank() is bank  # cut once
    for index in range(len(pasted_set)):
        torch.manual_seed(index)
        image, target = pasted_set[index]
        torch.manual_seed(index)  # the same crop window: it is drawn before the paste
        plain_image, plain = plain_set[index]
        boxes = target["boxes"]
        assert len(boxes) == len(target["labels"]) == len(target["difficult"])
        in_plain = [any(torch.equal(b, p) for p in plain["boxes"]) for b in boxes]
        kept = sum(in_plain)
        assert all(in_plain[:kept]) and kept < len(boxes)  # the crop's kept boxes, then the pasted ones
        changed = (image != plain_image).any(0)
        inside = torch.zeros_like(changed)
        for x1, y1, x2, y2 in boxes[kept:].tolist():
            inside[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] = True
        assert changed.any() and not (changed & ~inside).any()


def test_without_paste_no_bank_is_cut(tmp_path):
    generate(tmp_path, {"train": 2}, seed=1)
    ds = VOCDataset(tmp_path, "train", train=True, resize_size=(360, 640), cache=True, augment=("flip",))
    cache_pictures(ds, show_progress=False)
    assert not ds.paste and ds._bank is None
