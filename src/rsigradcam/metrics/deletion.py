"""Deletion and insertion curves (Petsiuk, Das, Saenko, "RISE", BMVC 2018).

Deletion removes the pixels in order of decreasing saliency, replacing them by a
substrate, and records the explained class's softmax probability after each step; a map
that finds the evidence makes the probability fall fast (low area under the curve).
Insertion starts from the substrate and puts the pixels back in the same order; a good map
makes it rise fast (high area). The area is the trapezoid rule over the fraction of pixels
changed, in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from rsigradcam.baselines import Normalize
from rsigradcam.constants import IMAGENET_NORMALIZE
from rsigradcam.core.targets import TargetSpec, class_score
from rsigradcam.metrics._common import (
    borrowed,
    check_batch_size,
    check_heatmaps,
    check_images,
    class_targets,
    predict,
)
from rsigradcam.metrics.substrate import SubstrateSpec, make_substrate
from rsigradcam.progress import progress_bar
from rsigradcam.serialization import JsonKeys

__all__ = [
    "REFERENCE_SIDE",
    "CurveResult",
    "auc",
    "default_step",
    "deletion",
    "insertion",
    "random_heatmaps",
]

REFERENCE_SIDE = 224
"""RISE's protocol: 224 pixels per step at 224 x 224, i.e. 1/224 of the image per step."""

Kind = Literal["deletion", "insertion"]


@dataclass(frozen=True)
class CurveResult:
    """Deletion or insertion curves of N images (CPU float64 tensors).

    Attributes:
        kind: ``"deletion"`` or ``"insertion"``.
        curves: (N, P) the explained class's softmax probability after each step;
            column 0 is before any pixel changed, column P - 1 after all of them.
        fractions: (P,) the fraction of pixels changed at each column, 0 to 1.
        auc: (N,) the area under each curve (trapezoid rule over ``fractions``).
        targets: (N,) the explained classes.
        substrate: the substrate's name (``"custom"`` for a tensor or callable).
        step: pixels changed per step.
    """

    kind: str
    curves: Tensor
    fractions: Tensor
    auc: Tensor
    targets: Tensor
    substrate: str
    step: int

    @property
    def mean(self) -> float:
        """The mean area under the curve over the images."""
        return float(self.auc.mean())

    # The JSON form (rsigradcam.serialization.encode): these keys, in this order.
    __json_keys__: ClassVar[JsonKeys] = (
        "kind", "substrate", "step", ("mean_auc", "mean"), "auc", "targets", "fractions", "curves",
    )


def auc(curve: Tensor, fractions: Tensor) -> Tensor:
    """Area under ``curve`` (..., P) over ``fractions`` (P,) by the trapezoid rule.

    Example:
        >>> auc(torch.full((2, 5), 0.5), torch.linspace(0, 1, 5)).tolist()
        [0.5, 0.5]
    """
    if fractions.dim() != 1 or fractions.numel() < 2:
        raise ValueError(
            f"fractions must be 1-D with at least 2 points, got shape {tuple(fractions.shape)}."
        )
    if curve.shape[-1] != fractions.numel():
        raise ValueError(
            f"curve has {curve.shape[-1]} points on its last dimension but fractions has "
            f"{fractions.numel()}; give one fraction per curve point."
        )
    if not bool((fractions[1:] >= fractions[:-1]).all()):
        raise ValueError("fractions must be non-decreasing.")
    x = fractions.to(device=curve.device, dtype=torch.float64)
    return torch.trapezoid(curve.to(torch.float64), x, dim=-1)


def default_step(height: int, width: int) -> int:
    """Pixels per step: 224 at 224 x 224, and the same fraction (1/224) of other sizes."""
    return max(1, round(height * width / REFERENCE_SIDE))


def random_heatmaps(images: Tensor, seed: int = 0, block: int = 1) -> Tensor:
    """Random-order saliency, (N, H, W) on ``images``' device, seeded: a permutation each.

    Passing these to :func:`deletion` or :func:`insertion` gives the random-order baseline
    that a map should beat. The same seed gives the same maps.

    Args:
        images: (N, C, H, W); only the shape and device are used.
        seed: Seed of the permutations.
        block: Side of the square blocks that are ranked at random (the last row and
            column of blocks may be cut). ``1`` ranks single pixels; a larger block removes
            contiguous patches, as a CAM does, instead of scattered pixels, which break the
            image much faster than any contiguous region and make a poor reference.
            Within a block, pixels come in row-major order.

    Example:
        >>> maps = random_heatmaps(torch.zeros(2, 3, 4, 4), seed=1)
        >>> sorted((maps[0].flatten() * 15).round().int().tolist()) == list(range(16))
        True
        >>> blocks = random_heatmaps(torch.zeros(1, 3, 4, 4), seed=1, block=2)
        >>> int(blocks[0, :2, :2].flatten().argmax())  # the block's first pixel goes first
        0
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}.")
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"block must be a whole number of pixels >= 1, got {block!r}.")
    n, _, h, w = images.shape
    generator = torch.Generator().manual_seed(seed)
    rows, cols = -(-h // block), -(-w // block)
    cells = rows * cols
    ranks = torch.stack([torch.randperm(cells, generator=generator) for _ in range(n)])
    # A pixel's key: its block's rank, then its row-major place inside the block.
    y = torch.arange(h).view(h, 1).expand(h, w)
    x = torch.arange(w).view(1, w).expand(h, w)
    cell = (y // block) * cols + (x // block)
    inside = (y % block) * block + (x % block)
    keys = ranks[:, cell] * (block * block) + (block * block - 1 - inside)
    order = keys.flatten(1).argsort(dim=1).argsort(dim=1)  # dense ranks 0 .. H*W-1
    scale = max(h * w - 1, 1)
    return (order.float() / scale).view(n, h, w).to(images.device)


def deletion(
    model: nn.Module,
    images: Tensor,
    heatmaps: Tensor,
    targets: TargetSpec = None,
    *,
    substrate: SubstrateSpec = "black",
    step: int | None = None,
    normalize: Normalize = IMAGENET_NORMALIZE,
    batch_size: int = 64,
    progress: bool = True,
) -> CurveResult:
    """The deletion curve: replace the most salient pixels first by ``substrate``.

    Args:
        model: Classifier ``(N, C, H, W) -> logits``; borrowed, never changed.
        images: (N, C, H, W) preprocessed images on the model's device.
        heatmaps: (N, H, W) saliency, e.g. ``Explanation.heatmap``; ties are broken by
            pixel index (row-major), the first pixel first.
        targets: Class per image (``None``: each image's top-1 class).
        substrate: What replaces deleted pixels: ``"black"`` (default; RISE's zeros in
            pixel space), ``"zeros"``, ``"blur"``, a tensor or a callable (see
            :mod:`rsigradcam.metrics.substrate`).
        step: Pixels per step (default: :func:`default_step`, 224 at 224 x 224).
        normalize: ``(mean, std)`` the images were normalised with (for ``"black"``).
        batch_size: Curve points per forward pass (rows from several images share one).
        progress: Show a progress bar on a terminal.

    Returns:
        A :class:`CurveResult`; lower ``auc`` is better.

    Example:
        >>> result = deletion(model, images, exp.heatmap)  # doctest: +SKIP
        >>> result.mean, result.auc.shape                    # doctest: +SKIP
    """
    return _curves(
        "deletion", model, images, heatmaps, targets,
        substrate=substrate, step=step, normalize=normalize, batch_size=batch_size,
        progress=progress,
    )


def insertion(
    model: nn.Module,
    images: Tensor,
    heatmaps: Tensor,
    targets: TargetSpec = None,
    *,
    substrate: SubstrateSpec = "blur",
    step: int | None = None,
    normalize: Normalize = IMAGENET_NORMALIZE,
    batch_size: int = 64,
    progress: bool = True,
) -> CurveResult:
    """The insertion curve: start from ``substrate`` and restore the most salient pixels first.

    Arguments as for :func:`deletion`; the default substrate is ``"blur"`` (RISE).

    Returns:
        A :class:`CurveResult`; higher ``auc`` is better.

    Example:
        >>> result = insertion(model, images, exp.heatmap)  # doctest: +SKIP
    """
    return _curves(
        "insertion", model, images, heatmaps, targets,
        substrate=substrate, step=step, normalize=normalize, batch_size=batch_size,
        progress=progress,
    )


def _curves(
    kind: Kind,
    model: nn.Module,
    images: Tensor,
    heatmaps: Tensor,
    targets: TargetSpec,
    *,
    substrate: SubstrateSpec,
    step: int | None,
    normalize: Normalize,
    batch_size: int,
    progress: bool,
) -> CurveResult:
    images = check_images(images, model)
    maps = check_heatmaps(heatmaps, images)
    batch_size = check_batch_size(batch_size)
    n, _, h, w = images.shape
    pixels = h * w
    if step is None:
        step = default_step(h, w)
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"step must be a positive number of pixels per step, got {step!r}.")
    fill = make_substrate(substrate, images, normalize)
    n_steps = math.ceil(pixels / step)
    counts = (torch.arange(n_steps + 1, device=images.device) * step).clamp_(max=pixels)
    # rank[i, p]: position of pixel p in image i's saliency order (0 = most salient).
    order = torch.sort(maps.flatten(1), dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(pixels, device=images.device).expand(n, -1))
    points = n_steps + 1
    row_image = torch.arange(n, device=images.device).repeat_interleave(points)
    row_count = counts.repeat(n)
    curves = torch.empty(n * points, dtype=torch.float64)
    with progress_bar(kind, n + n * points, progress) as advance:
        found = class_targets(targets, predict(model, images, batch_size, advance))
        with borrowed(model) as capture:
            for start in range(0, n * points, batch_size):
                i = row_image[start : start + batch_size]
                changed = (rank[i] < row_count[start : start + batch_size, None]).view(-1, 1, h, w)
                x = (
                    torch.where(changed, fill[i], images[i])
                    if kind == "deletion"
                    else torch.where(changed, images[i], fill[i])
                )
                score = class_score(capture.forward(x)[0], found[i], "softmax")
                curves[start : start + i.numel()] = score.to("cpu", torch.float64)
                advance(i.numel())
    curves = curves.view(n, points)
    fractions = counts.to("cpu", torch.float64) / pixels
    return CurveResult(
        kind=kind,
        curves=curves,
        fractions=fractions,
        auc=auc(curves, fractions),
        targets=found.cpu(),
        substrate=substrate if isinstance(substrate, str) else "custom",
        step=step,
    )
