"""The one check of the images a method or a metric is given, and its warnings' caller."""

from __future__ import annotations

import sys
import warnings
from types import FrameType
from typing import Any

import torch
from torch import Tensor, nn

from rsigradcam.core.capture import model_device

__all__ = ["LIBRARY_FRAMES", "caller_stacklevel", "check_images", "warn_zero_maps"]

#: The packages a method's call runs through before it reaches the code that made it:
#: a warning about the call skips their frames (:func:`caller_stacklevel`).
LIBRARY_FRAMES = ("rsigradcam.methods", "rsigradcam.core")


def check_images(images: Any, model: nn.Module, name: str = "images") -> Tensor:
    """Check (N, C, H, W) floating, finite images on the model's device; return them detached.

    Args:
        images: What the caller passed.
        model: The model the images are for (its device must match theirs).
        name: The argument's name in the messages.

    Raises:
        TypeError: Not a tensor, or not floating point.
        ValueError: Not 4-D, an empty batch, on another device, or NaN / Inf values.

    Example:
        >>> check_images(torch.zeros(1, 3, 4, 4), nn.Conv2d(3, 1, 1)).shape
        torch.Size([1, 3, 4, 4])
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (N, C, H, W), not {type(images).__name__}.")
    if images.dim() != 4:
        hint = f" Add a batch dimension with {name}.unsqueeze(0)." if images.dim() == 3 else ""
        raise ValueError(
            f"{name} must be a 4-D (N, C, H, W) tensor, got shape {tuple(images.shape)}.{hint}"
        )
    if not images.dtype.is_floating_point:
        raise TypeError(
            f"{name} must be floating point, got dtype {images.dtype}. Convert and "
            f"normalise them first, e.g. {name}.float() / 255 followed by the model's "
            "normalisation."
        )
    if images.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (N = 0); pass at least one image.")
    device = model_device(model)
    if images.device != device:
        raise ValueError(
            f"{name} are on {images.device} but the model is on {device}; move them with "
            f"{name}.to({str(device)!r})."
        )
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name} contain NaN or Inf values; clean the input first.")
    return images.detach()


def caller_stacklevel(skip: tuple[str, ...] = LIBRARY_FRAMES) -> int:
    """The ``stacklevel`` that attributes a warning to the first frame outside ``skip``.

    Called by the function that then calls :func:`warnings.warn` (stacklevel 1), it walks
    up the stack past every frame of a module in one of the ``skip`` packages, so that the
    warning names the line that called into them, however many of their frames lie between
    (a subclass's ``super().__init__``, a method's call inside another).

    Example:
        >>> def f():
        ...     return caller_stacklevel(("doctest_no_such_package",))
        >>> f()
        1
    """
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and _in_packages(frame, skip):
        frame, level = frame.f_back, level + 1
    return level


def _in_packages(frame: FrameType, packages: tuple[str, ...]) -> bool:
    module = str(frame.f_globals.get("__name__", ""))
    return any(module == p or module.startswith(p + ".") for p in packages)


def warn_zero_maps(method: str, layer_maps: dict[str, Tensor]) -> None:
    """A RuntimeWarning for each layer whose (N, h, w) map is zero everywhere for an image.

    The warning names the line that called the method (:func:`caller_stacklevel`).
    """
    for layer, layer_map in layer_maps.items():
        zero = (layer_map.flatten(1).amax(dim=1) <= 0).nonzero().flatten().tolist()
        if zero:
            warnings.warn(
                f"{method} map at layer {layer!r} is zero everywhere for image(s) {zero}: no "
                "channel has positive weighted activation (no positive evidence for the "
                "target at this layer, or vanishing gradients). Their heatmaps are all zeros.",
                RuntimeWarning,
                stacklevel=caller_stacklevel(),
            )
