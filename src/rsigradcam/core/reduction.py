"""From attributions to maps: the CAM reduction, the heatmap and the completeness gap."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "cam_reduction", "completeness_error", "normalize_heatmap", "spatial_dims", "upsample_maps",
]


def spatial_dims(tensor: Tensor) -> tuple[int, ...]:
    """The spatial dimensions of an (N, K, *s) tensor: ``(2, 3)`` for (N, K, h, w).

    Example:
        >>> spatial_dims(torch.zeros(1, 2, 3)), spatial_dims(torch.zeros(1, 2, 3, 4, 5))
        ((2,), (2, 3, 4))
    """
    return tuple(range(2, tensor.dim()))


#: ``F.interpolate``'s mode by the number of spatial dimensions.
_UPSAMPLING = {1: "linear", 2: "bilinear", 3: "trilinear"}


def cam_reduction(weights: Tensor, activation: Tensor) -> Tensor:
    """``ReLU(sum_k weights[:, k] * activation[:, k])``: (N, K), (N, K, *s) -> (N, *s).

    Example:
        >>> cam_reduction(torch.ones(1, 2), torch.ones(1, 2, 3, 3))[0, 0, 0].item()
        2.0
    """
    return torch.relu(torch.einsum("nk,nk...->n...", weights, activation))


def upsample_maps(maps: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
    """Resize (N, C, *s) maps to (N, C, *size): linearly, bilinearly or trilinearly.

    Example:
        >>> upsample_maps(torch.zeros(1, 1, 2, 2, 2), (4, 4, 4)).shape
        torch.Size([1, 1, 4, 4, 4])
    """
    size = tuple(size)
    if len(size) not in _UPSAMPLING or maps.dim() != len(size) + 2:
        raise ValueError(
            f"cannot upsample maps of shape {tuple(maps.shape)} to {size}: the maps need "
            "the input's 1, 2 or 3 spatial dimensions, as (N, C, *spatial)."
        )
    mode = _UPSAMPLING[len(size)]
    return F.interpolate(maps, size=size, mode=mode, align_corners=align_corners)


def normalize_heatmap(layer_map: Tensor, size: tuple[int, ...]) -> Tensor:
    """Upsample (N, *s) maps to ``size`` and min-max normalise each to [0, 1].

    Linear for signals, bilinear for images, trilinear for volumes (no corner alignment).
    A constant map (for example all zeros) becomes all zeros, never NaN.
    """
    if layer_map.dim() != len(size) + 1:
        raise ValueError(
            f"cannot upsample a layer map of shape {tuple(layer_map.shape)} to {tuple(size)}: "
            "the map needs the input's 1, 2 or 3 spatial dimensions."
        )
    up = upsample_maps(layer_map.unsqueeze(1), size).squeeze(1).float()
    flat = up.flatten(1)
    ones = [1] * len(size)
    low = flat.min(dim=1).values.view(-1, *ones)
    span = (flat.max(dim=1).values.view(-1, *ones) - low)
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (up - low) / safe, torch.zeros_like(up)).clamp_(0.0, 1.0)


def completeness_error(attributions: Tensor, scores: Tensor, baseline_scores: Tensor) -> Tensor:
    """``|sum(attributions) - (y(x) - y(x'))| / |y(x) - y(x')|`` per image, (N,)."""
    delta = scores - baseline_scores
    eps = torch.finfo(delta.dtype).eps
    total = attributions.sum(dim=tuple(range(1, attributions.dim())))
    return (total - delta).abs() / delta.abs().clamp(min=eps)
