"""Argument checks and no-grad forward passes shared by the metrics.

The image check is the library's one, :func:`rsigradcam.core.checks.check_images`.

Every forward pass borrows the model through :class:`~rsigradcam.core.capture.LayerCapture`
(eval mode, no ``requires_grad``, everything restored on exit), under ``torch.no_grad()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from rsigradcam.core.capture import LayerCapture
from rsigradcam.core.checks import check_images
from rsigradcam.core.targets import TargetSpec, check_target_range, resolve_targets
from rsigradcam.progress import Advance

__all__ = [
    "borrowed",
    "check_batch_size",
    "check_heatmaps",
    "check_images",
    "class_targets",
    "predict",
]


def check_heatmaps(heatmaps: Any, images: Tensor, name: str = "heatmaps") -> Tensor:
    """Check (N, H, W) (or (N, 1, H, W)) finite maps matching ``images``; return them (N, H, W).

    The maps are moved to the images' device; their floating dtype is kept, so that the
    saliency order is not changed by rounding.
    """
    if not isinstance(heatmaps, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor (N, H, W) such as Explanation.heatmap, not "
            f"{type(heatmaps).__name__}."
        )
    maps: Tensor = heatmaps[:, 0] if heatmaps.dim() == 4 and heatmaps.shape[1] == 1 else heatmaps
    n, _, h, w = images.shape
    if maps.dim() != 3 or tuple(maps.shape) != (n, h, w):
        raise ValueError(
            f"{name} must be (N, H, W) = {(n, h, w)}, one map per image at the image size, "
            f"got shape {tuple(heatmaps.shape)}. Use Explanation.heatmap, which is upsampled "
            "to the input size."
        )
    if not maps.dtype.is_floating_point:
        maps = maps.float()
    if not bool(torch.isfinite(maps).all()):
        raise ValueError(f"{name} contain NaN or Inf values.")
    return maps.detach().to(device=images.device)


def check_batch_size(batch_size: Any) -> int:
    """Check a positive integer batch size."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    return batch_size


@contextmanager
def borrowed(model: nn.Module) -> Iterator[LayerCapture]:
    """Borrow ``model`` for no-grad forward passes: ``capture.forward(x)[0]`` gives logits."""
    with torch.no_grad(), LayerCapture(model) as capture:
        yield capture


def predict(
    model: nn.Module, images: Tensor, batch_size: int, advance: Advance | None = None
) -> Tensor:
    """Softmax probabilities (N, classes) of ``images``, ``batch_size`` images per pass."""
    rows = []
    with borrowed(model) as capture:
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start : start + batch_size]
            rows.append(torch.softmax(capture.forward(chunk)[0], dim=1))
            if advance is not None:
                advance(chunk.shape[0])
    return torch.cat(rows)


def class_targets(targets: TargetSpec, probabilities: Tensor) -> Tensor:
    """The (N,) classes to score: ``None`` gives each image's top-1 class.

    Raises:
        TypeError: ``targets`` is a callable (metrics score a class probability).
        ValueError: Wrong length, or a class out of range.
    """
    if callable(targets) and not isinstance(targets, Tensor):
        raise TypeError(
            "targets must be None (top-1), an int or one int per image for a metric; a "
            "callable score cannot be turned into a class probability."
        )
    n = probabilities.shape[0]
    resolved = resolve_targets(targets, n, probabilities.device)
    if resolved is None:
        return probabilities.argmax(dim=1)
    check_target_range(resolved, probabilities.shape[1])
    return resolved
