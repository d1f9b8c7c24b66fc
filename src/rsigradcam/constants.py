"""Constants shared by the library and the command line; nothing here imports torch."""

from __future__ import annotations

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""Per-channel mean of ImageNet RGB images scaled to [0, 1]."""

IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""Per-channel standard deviation of ImageNet RGB images scaled to [0, 1]."""

IMAGENET_NORMALIZE: tuple[tuple[float, float, float], tuple[float, float, float]] = (
    IMAGENET_MEAN,
    IMAGENET_STD,
)
"""``normalize=(mean, std)`` for images preprocessed the ImageNet way (the default)."""

METHOD_NAMES: tuple[str, ...] = (
    "rsi",
    "gradcam",
    "gradcam++",
    "layercam",
    "integrated-gradcam",
    "ig",
)
"""Every method's name, in the order of tables and of ``--method all``.

:data:`rsigradcam.methods.METHODS` is built from it (and refuses classes whose names
differ); the command line's help texts read it without importing torch.
"""
