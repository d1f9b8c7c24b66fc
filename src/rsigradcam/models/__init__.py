"""Pretrained models and their metadata.

Example:
    >>> from rsigradcam.models import efficientnet_lite0, imagenet_classes
    >>> model = efficientnet_lite0()
    >>> imagenet_classes()[967]
    'espresso'
"""

from __future__ import annotations

from rsigradcam.constants import IMAGENET_MEAN, IMAGENET_STD
from rsigradcam.models.classes import imagenet_classes
from rsigradcam.models.efficientnet_lite import EfficientNetLite0, efficientnet_lite0

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EfficientNetLite0",
    "efficientnet_lite0",
    "imagenet_classes",
]


