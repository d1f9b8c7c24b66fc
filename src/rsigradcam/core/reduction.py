"""From attributions to maps: the CAM reduction, the heatmap and the completeness gap."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cam_reduction", "completeness_error", "normalize_heatmap"]


def cam_reduction(weights: Tensor, activation: Tensor) -> Tensor:
    """``ReLU(sum_k weights[:, k] * activation[:, k])``: (N, K), (N, K, h, w) -> (N, h, w).

    Example:
        >>> cam_reduction(torch.ones(1, 2), torch.ones(1, 2, 3, 3))[0, 0, 0].item()
        2.0
    """
    return torch.relu(torch.einsum("nk,nkhw->nhw", weights, activation))


def normalize_heatmap(layer_map: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinearly upsample (N, h, w) maps to ``size`` and min-max normalise each to [0, 1].

    A constant map (for example all zeros) becomes all zeros, never NaN.
    """
    up = F.interpolate(layer_map.unsqueeze(1), size=size, mode="bilinear", align_corners=False)
    up = up.squeeze(1).float()
    flat = up.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    span = (flat.max(dim=1).values.view(-1, 1, 1) - low)
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (up - low) / safe, torch.zeros_like(up)).clamp_(0.0, 1.0)


def completeness_error(attributions: Tensor, scores: Tensor, baseline_scores: Tensor) -> Tensor:
    """``|sum(attributions) - (y(x) - y(x'))| / |y(x) - y(x')|`` per image, (N,)."""
    delta = scores - baseline_scores
    eps = torch.finfo(delta.dtype).eps
    return (attributions.sum(dim=(1, 2, 3)) - delta).abs() / delta.abs().clamp(min=eps)
