"""Test-time augmentation in detect_batch: every pass's boxes come back to the input's pixels."""

import pytest
import torch

from engine.inference import detect_batch
from model import FCOSConfig
from model.fcos import select_for_config
from model.targets import feature_sizes


class BrightBoxDetector:
    """Sees one object: the bounding box of the pixels above 0.5 of each picture, as the input it is given
    shows it (mirrored, resized); one point of each level scores it, the one of P3 highest."""

    config = FCOSConfig()

    def __init__(self):
        self.inputs = []

    def dense(self, images):
        self.inputs.append(tuple(images.shape[-2:]))
        sizes = feature_sizes(tuple(images.shape[-2:]), self.config.strides)
        count = sum(h * w for h, w in sizes)
        scores = torch.zeros(images.shape[0], count, self.config.num_classes)
        boxes = torch.zeros(images.shape[0], count, 4)
        for i, image in enumerate(images):
            ys, xs = torch.nonzero(image[0] > 0.5, as_tuple=True)
            boxes[i] = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
            starts = torch.tensor([0] + [h * w for h, w in sizes[:-1]]).cumsum(0)
            scores[i, starts, 1] = torch.linspace(0.9, 0.5, len(sizes))
        return scores, boxes

    def select(self, scores, boxes, image_size, score_threshold=None, pass_sizes=None):
        return select_for_config(self.config, scores, boxes, image_size, score_threshold, pass_sizes)


def picture_with_a_box(height=96, width=160, box=(40, 16, 80, 48)):
    image = torch.zeros(1, 3, height, width)
    x1, y1, x2, y2 = box
    image[..., y1:y2, x1:x2] = 1.0
    return image


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("scales", [(1.0,), (1.0, 0.5, 1.5), (2.0,)])
def test_every_pass_finds_the_box_where_it_is_in_the_input(flip, scales):
    detector = BrightBoxDetector()
    output = detect_batch(detector, picture_with_a_box(), flip=flip, scales=scales)[0]
    expected_sizes = {(1.0,): [(96, 160)], (1.0, 0.5, 1.5): [(96, 160), (64, 96), (160, 256)], (2.0,): [(192, 320)]}[
        scales
    ]  # each side to the nearest multiple of 32, halves up: 48 -> 64, 80 -> 96, 144 -> 160
    assert detector.inputs == [size for size in expected_sizes for _ in range(2 if flip else 1)]
    # All passes agree, so NMS keeps one box: the object, exactly at scale 1, within a resized pixel otherwise.
    assert output["labels"].tolist() == [2] and output["scores"].tolist() == [pytest.approx(0.9)]
    torch.testing.assert_close(output["boxes"][0], torch.tensor([40.0, 16.0, 80.0, 48.0]), atol=1.0, rtol=0)
    if scales == (1.0,):
        assert output["boxes"][0].tolist() == [40.0, 16.0, 80.0, 48.0]


def test_the_levels_of_passes_of_different_sizes_keep_their_own_top_k():
    """Two passes of different sizes: N is not a whole number of one size's passes, so without the passes'
    own sizes the selection could not split them into levels."""
    detector = BrightBoxDetector()
    image = picture_with_a_box()
    first, second = detector.dense(image), detector.dense(torch.nn.functional.interpolate(image, size=(128, 224)))
    second = second[0], second[1] * torch.tensor([160 / 224, 96 / 128] * 2)  # back to the first pass's pixels
    scores, boxes = (torch.cat(pair, dim=1) for pair in zip(first, second))
    kept = detector.select(scores, boxes, (96, 160), pass_sizes=[(96, 160), (128, 224)])[0]
    assert kept["labels"].tolist() == [2]
    with pytest.raises(RuntimeError, match="split"):
        detector.select(scores, boxes, (96, 160))
