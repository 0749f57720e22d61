"""Pictures without annotations, for detection: finding them and preparing them as evaluation does."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import torch
from torch.utils.data import Dataset

from dataset.decoding import load_resized, read_picture
from dataset.transforms import normalize_pad
from dataset.voc_dataset import collate_fn

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def find_pictures(spec: str) -> list[Path]:
    """The pictures ``spec`` names: a file (taken as it is), a folder (its pictures, sorted, not recursive)
    or a glob pattern (``**`` recursive; its matches that are pictures, sorted). Suffixes are case-insensitive."""
    path = Path(spec)
    if path.is_file():
        return [path]
    if path.is_dir():
        candidates = sorted(path.iterdir())
    elif any(c in spec for c in "*?["):
        candidates = sorted(Path(p) for p in glob.glob(spec, recursive=True))
    else:
        raise FileNotFoundError(f"{spec}: no such file or folder")
    pictures = [p for p in candidates if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not pictures:
        raise FileNotFoundError(f"{spec}: no pictures ({', '.join(IMAGE_SUFFIXES)}) found")
    return pictures


class PictureDataset(Dataset):
    """Pictures prepared exactly like ``VOCDataset(train=False)`` does.

    ``ds[i]`` -> (image, target):
        image: float32 [3, H, W], RGB, resized keeping the aspect ratio with ``resize_size`` (min_side, max_side),
            normalised with ``normalization``'s statistics, zero-padded right/bottom to a multiple of 32; None
            when the file cannot be read;
        target: "path", "image_id" (the stem), "orig_size" (H0, W0), "scale" float32 [2] (new_w / W0, new_h / H0)
            and "offset" zeros [2] (what ``boxes_to_original`` reads), "picture" uint8 [H0, W0, 3] BGR (the
            original, to draw on); for a file that cannot be read only "path" and "error".
    Pictures are read upright, as viewers show them (their EXIF orientation applied), and the boxes found are
    in that frame. Grayscale pictures become three equal channels and an alpha channel is dropped. A file that
    is too large to decode safely cannot be read; a truncated one is read as far as it goes, with a warning.
    """

    def __init__(self, paths: Sequence[Path], resize_size: Sequence[int], normalization: str = "imagenet") -> None:
        self.paths = list(paths)
        self.resize_size = (int(resize_size[0]), int(resize_size[1]))
        self.normalization = normalization

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, dict[str, Any]]:
        path = self.paths[index]
        try:
            original = read_picture(path)
            picture, (h0, w0) = load_resized(path, self.resize_size, decoded=original)
        except (OSError, ValueError) as err:
            return None, {"path": path, "error": str(err).removeprefix(f"{path}: ").strip()}
        height, width = picture.shape[:2]
        return normalize_pad(picture, normalization=self.normalization), {
            "path": path,
            "image_id": path.stem,
            "orig_size": (h0, w0),
            "scale": torch.tensor([width / w0, height / h0], dtype=torch.float32),
            "offset": torch.zeros(2, dtype=torch.float32),
            "picture": torch.from_numpy(cv2.cvtColor(original, cv2.COLOR_RGB2BGR)),
        }


def collate_pictures(batch: Sequence[tuple[torch.Tensor | None, dict]]) -> tuple[torch.Tensor | None, list, list]:
    """(images [B', 3, H, W] of the pictures that loaded, collated by ``collate_fn``, or None when none did;
    their targets; the targets of those that failed, with "path" and "error")."""
    loaded = [item for item in batch if item[0] is not None]
    failed = [target for image, target in batch if image is None]
    images, targets = collate_fn(loaded) if loaded else (None, [])
    return images, targets, failed
