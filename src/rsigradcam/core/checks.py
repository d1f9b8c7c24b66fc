"""The one check of the images a method or a metric is given."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

from rsigradcam.core.capture import model_device

__all__ = ["check_images", "warn_zero_maps"]


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


def warn_zero_maps(method: str, layer_maps: dict[str, Tensor], stacklevel: int = 3) -> None:
    """A RuntimeWarning for each layer whose (N, h, w) map is zero everywhere for an image.

    ``stacklevel``: as for :func:`warnings.warn`, counted from this function (3: the caller
    of the method that calls it).
    """
    for layer, layer_map in layer_maps.items():
        zero = (layer_map.flatten(1).amax(dim=1) <= 0).nonzero().flatten().tolist()
        if zero:
            warnings.warn(
                f"{method} map at layer {layer!r} is zero everywhere for image(s) {zero}: no "
                "channel has positive weighted activation (no positive evidence for the "
                "target at this layer, or vanishing gradients). Their heatmaps are all zeros.",
                RuntimeWarning,
                stacklevel=stacklevel,
            )
