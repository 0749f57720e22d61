"""VOC2007-layout loading, augmentation, collation and synthetic foreign-object data.

Names are loaded lazily from ``dataset.voc`` so that ``python -m dataset.voc`` runs the module
only once.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "FOD_CLASSES",
    "VOC_CLASSES",
    "VOCDataset",
    "boxes_to_original",
    "collate_fn",
    "load_ground_truth",
    "parse_annotation",
    "pixels_to_xml",
    "read_split",
    "resolve_classes",
    "xml_to_pixels",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("dataset.voc"), name)
    raise AttributeError(f"module 'dataset' has no attribute {name!r}")
