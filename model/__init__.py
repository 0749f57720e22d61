"""FCOS detector for foreign objects on roads."""

from .config import FOD_CLASSES, FCOSConfig
from .fcos import FCOSDetector

__all__ = ["FCOSConfig", "FCOSDetector", "FOD_CLASSES"]
