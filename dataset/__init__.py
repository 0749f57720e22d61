"""VOC2007-layout loading, augmentation, collation and synthetic foreign-object data."""

from dataset.annotations import (
    FOD_CLASSES,
    VOC_CLASSES,
    GroundTruth,
    annotation_path,
    image_path,
    load_ground_truth,
    parse_annotation,
    pixels_to_xml,
    read_annotations,
    read_split,
    resolve_classes,
    write_annotation,
    write_split,
    xml_to_pixels,
)
from dataset.decoding import load_resized, picture_size
from dataset.loader_benchmark import benchmark_loader
from dataset.voc_dataset import VOCDataset, boxes_to_original, collate_fn

__all__ = [
    "FOD_CLASSES",
    "VOC_CLASSES",
    "GroundTruth",
    "VOCDataset",
    "annotation_path",
    "benchmark_loader",
    "boxes_to_original",
    "collate_fn",
    "image_path",
    "load_ground_truth",
    "load_resized",
    "parse_annotation",
    "picture_size",
    "pixels_to_xml",
    "read_annotations",
    "read_split",
    "resolve_classes",
    "write_annotation",
    "write_split",
    "xml_to_pixels",
]
