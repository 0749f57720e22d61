"""A small detector memorises a few simple pictures: the whole pipeline can learn."""

import torch

from engine.metrics import evaluate_detections
from model import FCOSConfig, FCOSDetector

CLASSES = ("red", "green")


def simple_scene(seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A dark noisy 128x128 picture with 2-3 flat-coloured rectangles (red = 1, green = 2)."""
    generator = torch.Generator().manual_seed(seed)
    image = -1.0 + 0.1 * torch.randn(3, 128, 128, generator=generator)
    specs = [((12, 14, 44, 40), 1), ((70, 60, 118, 90), 2), ((20, 80, 50, 120), 1)][: 2 + seed % 2]
    boxes, labels = [], []
    for (x1, y1, x2, y2), label in specs:
        x1, x2 = x1 + 3 * seed, x2 + 3 * seed
        image[label - 1, y1:y2, x1:x2] = 2.0
        boxes.append([x1, y1, x2, y2])
        labels.append(label)
    return image, {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)}


def test_overfits_four_pictures():
    torch.manual_seed(0)
    scenes = [simple_scene(seed) for seed in range(4)]
    images = torch.stack([image for image, _ in scenes])
    targets = [target for _, target in scenes]
    model = FCOSDetector(FCOSConfig(classes=CLASSES, backbone="resnet18", fpn_channels=64, head_convs=2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    model.train()
    for step in range(120):
        for group in optimizer.param_groups:
            group["lr"] = 0.01 * min(1.0, (step + 1) / 20)
        losses = model(images, targets)
        optimizer.zero_grad()
        losses["total_loss"].backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        outputs = model(images)
    detections = [
        {"image_id": str(i), "category": CLASSES[label - 1], "score": score, "bbox": box}
        for i, out in enumerate(outputs)
        for box, score, label in zip(out["boxes"].tolist(), out["scores"].tolist(), out["labels"].tolist())
    ]
    ground_truth = {
        str(i): {
            "boxes": t["boxes"].numpy(),
            "labels": t["labels"].numpy(),
            "difficult": torch.zeros(len(t["labels"]), dtype=torch.bool).numpy(),
        }
        for i, t in enumerate(targets)
    }
    result = evaluate_detections(detections, ground_truth, CLASSES, iou_threshold=0.5)
    assert result["map"] >= 0.9, result["ap"]
