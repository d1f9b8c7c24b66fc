"""Per-image correlations between two batches of maps, computed with torch.

Both functions flatten each map and return one value per image. A map with no spread (a
constant map, e.g. all zeros) has no ordering to compare: its correlation is 1 with an
identical map and 0 with any other, never NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["average_ranks", "pearson", "spearman"]


def average_ranks(values: Tensor) -> Tensor:
    """Ranks 1..D of each row of (N, D) ``values``; tied values share their average rank.

    Example:
        >>> average_ranks(torch.tensor([[3.0, 1.0, 3.0, 2.0]])).tolist()
        [[3.5, 1.0, 3.5, 2.0]]
    """
    ranks = torch.empty(values.shape, dtype=torch.float64, device=values.device)
    for i, row in enumerate(values):
        ordered, order = torch.sort(row, stable=True)
        _, inverse, counts = torch.unique_consecutive(
            ordered, return_inverse=True, return_counts=True
        )
        ends = counts.cumsum(0).to(torch.float64)
        mean_rank = ends - (counts.to(torch.float64) - 1.0) / 2.0
        ranks[i, order] = mean_rank[inverse]
    return ranks


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of ``a[i]`` and ``b[i]`` (flattened), (N,) float64.

    Example:
        >>> pearson(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[2.0, 4.0, 7.0]])).shape
        torch.Size([1])
    """
    if a.shape != b.shape or a.dim() < 1:
        raise ValueError(
            f"the two batches of maps must have the same shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}."
        )
    x = a.detach().flatten(1).to(torch.float64)
    y = b.detach().flatten(1).to(torch.float64)
    spread = (x != x[:, :1]).any(dim=1) & (y != y[:, :1]).any(dim=1)
    x = x - x.mean(dim=1, keepdim=True)
    y = y - y.mean(dim=1, keepdim=True)
    norm = x.norm(dim=1) * y.norm(dim=1)
    r = (x * y).sum(dim=1) / torch.where(norm > 0, norm, torch.ones_like(norm))
    return _resolve(r.clamp(-1.0, 1.0), spread, a, b)


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation of ``a[i]`` and ``b[i]`` (flattened, ties averaged), (N,).

    Example:
        >>> spearman(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1.0, 4.0, 9.0]])).tolist()
        [1.0]
    """
    if a.shape != b.shape or a.dim() < 1:
        raise ValueError(
            f"the two batches of maps must have the same shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}."
        )
    ra, rb = average_ranks(a.detach().flatten(1)), average_ranks(b.detach().flatten(1))
    spread = (ra != ra[:, :1]).any(dim=1) & (rb != rb[:, :1]).any(dim=1)
    return _resolve(pearson(ra, rb), spread, a, b)


def _resolve(r: Tensor, spread: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """1 for identical maps, 0 where a map has no spread, ``r`` elsewhere."""
    same = (a.flatten(1) == b.flatten(1)).all(dim=1).to(r.device)
    return torch.where(same, torch.ones_like(r), torch.where(spread, r, torch.zeros_like(r)))
