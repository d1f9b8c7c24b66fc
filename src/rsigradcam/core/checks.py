"""The one check of the images a method or a metric is given, and its warnings' caller."""

from __future__ import annotations

import sys
import warnings
from types import FrameType
from typing import Any

import torch
from torch import Tensor, nn

from rsigradcam.core.capture import model_device

__all__ = [
    "LIBRARY_FRAMES",
    "SPATIAL_LAYOUTS",
    "caller_stacklevel",
    "check_images",
    "warn_zero_maps",
]

#: The packages a method's call runs through before it reaches the code that made it:
#: a warning about the call skips their frames (:func:`caller_stacklevel`).
LIBRARY_FRAMES = ("rsigradcam.methods", "rsigradcam.core")


#: The layouts of a batch by its number of spatial dimensions.
SPATIAL_LAYOUTS = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}


def check_images(images: Any, model: nn.Module, name: str = "images") -> Tensor:
    """Check floating, finite inputs (N, C, *S) on the model's device; return them detached.

    ``S`` has 1, 2 or 3 spatial dimensions: signals (N, C, L), images (N, C, H, W),
    volumes or video (N, C, D, H, W) / (N, C, T, H, W). When the model has convolutions
    and none of them takes inputs of that many spatial dimensions, the batch has the
    wrong rank for the model (typically an image without its batch dimension).

    Args:
        images: What the caller passed.
        model: The model the images are for (its device must match theirs).
        name: The argument's name in the messages.

    Raises:
        TypeError: Not a tensor, or not floating point.
        ValueError: Not 3-D to 5-D, of a rank the model's convolutions do not take, an
            empty batch, on another device, or NaN / Inf values.

    Example:
        >>> check_images(torch.zeros(1, 3, 4, 4), nn.Conv2d(3, 1, 1)).shape
        torch.Size([1, 3, 4, 4])
        >>> check_images(torch.zeros(2, 1, 4, 4, 4), nn.Conv3d(1, 1, 1)).shape
        torch.Size([2, 1, 4, 4, 4])
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (N, C, H, W), not {type(images).__name__}.")
    if images.dim() - 2 not in SPATIAL_LAYOUTS:
        hint = f" Add a batch dimension with {name}.unsqueeze(0)." if images.dim() == 2 else ""
        raise ValueError(
            f"{name} must be a 3-D (N, C, L), 4-D (N, C, H, W) or 5-D (N, C, D, H, W) tensor, "
            f"got shape {tuple(images.shape)}.{hint}"
        )
    _check_rank_fits_model(images, model, name)
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


def _check_rank_fits_model(images: Tensor, model: nn.Module, name: str) -> None:
    """Refuse a batch of a spatial rank that none of the model's convolutions takes."""
    ranks = sorted({
        m.weight.dim() - 2 for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)
    })
    rank = images.dim() - 2
    if not ranks or rank in ranks:
        return
    layout = SPATIAL_LAYOUTS.get(ranks[-1], f"{ranks[-1]}-D")
    unbatched = rank + 1 in ranks
    hint = f" Add a batch dimension with {name}.unsqueeze(0)." if unbatched else ""
    raise ValueError(
        f"{name} of shape {tuple(images.shape)} have {rank} spatial dimension"
        f"{'s' * (rank != 1)}, but the model's convolutions are {'/'.join(map(str, ranks))}-D: "
        f"it takes {ranks[-1] + 2}-D {layout} tensors.{hint}"
    )


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
    """A RuntimeWarning for each layer whose (N, *s) map is zero everywhere for an image.

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
