"""Adaptive partitions: spend path points where the Riemann–Stieltjes sum is least settled.

Any partition ``0 = t_0 < ... < t_m = 1`` gives a valid Riemann–Stieltjes sum, so points
can go where they matter. Starting from a coarse uniform partition, each round bisects the
intervals whose *error indicator* is largest. The indicator of ``[t_i, t_j]`` is the
difference between the trapezoid and the left rule on that interval,
``mean_spatial(1/2 (G_j - G_i) * (A_j - A_i))`` per channel, seen through the map it would
change: ``|| sum_k d_k A^k(x) ||`` relative to the current layer map. Where completeness
holds, it is the larger of that and ``RESIDUAL_WEIGHT = 3`` times the interval's share of
the completeness error, ``|sum(1/2 (G_i + G_j)(A_j - A_i)) - (y(t_j) - y(t_i))| /
|y(x) - y(x')|``, known exactly from the scores y(t) the evaluator computes anyway: the
points go where the sum departs from the score's own change. On the 18 benchmark cases
this cut the mean cost from 60.3 to 52.3 evaluations at the same convergence, and on
``chelsea`` ``blocks.5`` from 128 evaluations (completeness error 0.0131, worse than
uniform m = 50's 0.005) to 46 (below 1e-4). Measuring the completeness target from
the residuals' spread (below) then took the mean to 47.0 evaluations (16-128).

Rounds stop when the estimated remaining error of the map is below ``tolerance``: the
relative change of the layer map in the last round, scaled by (points after the round) /
(points added), which is the remaining error of a sum whose error falls like 1 / m, as it
does on deep ReLU networks. The estimate is pessimistic: adaptive refinement converges
faster than 1 / m, and at the default ``tolerance=0.1`` the 18 benchmark cases end within
a heatmap correlation of 0.999 of the m = 512 map (``benchmarks/auto_completeness.md``).

Where completeness holds (the caller names the layers that cut the graph from the input to
the score, and gives ``y(x) - y(x')``), an image also needs its completeness error
``e = |sum(IG) - (y(x) - y(x'))| / |y(x) - y(x')|`` (the largest over those layers) to be
at most ``min(tolerance, e_0 * (initial_steps / 50)^1.5)``, where ``e_0`` is the error
scale of the first, uniform partition (m_0 = 8): what uniform m = 50 reaches if its error
falls like 1 / m^1.5 from there. ``e_0`` is the larger of that partition's completeness
error and the spread of its interval residuals, ``sqrt(sum r_ij^2)`` (below), the size of
a sum of independent signs: the signed error alone can cancel by luck between intervals
and ask for an unreachable target (yellow_ladys_slipper ``blocks.5``: 0.0033 at m_0 = 8,
so it ran to 128 evaluations; with the spread it stops at 46). The measured orders are
1.65-2.04 on ``head`` and 0.68-1.43 on the middle layers (``benchmarks/limits.md``); in
all 18 benchmark cases the final completeness error is at most uniform m = 50's.

Each round bisects ``fraction`` = 30 % of the intervals (9, 12, 16, 21, 27, 35, 46, 60, 78,
102, 128 points), fine enough steps for the rounds to stop near the cost they need; the
default ``max_steps=127`` (at most 128 evaluations) bounds the cost of the few cases whose
completeness error sits on a floor of ReLU kinks (it stays below uniform m = 50's there).
The defaults were chosen by replaying candidate rules exactly on the 18 cases recorded at
all 513 points of the grid t = i / 512 (``benchmarks/auto_rules.py``) and confirmed in the
real code path (``benchmarks/auto_completeness.py``).

Rounds always stop at ``max_steps + 1`` points. Every evaluated point is kept (activations
and gradients at each layer), so memory grows with the number of points: ``max_steps`` is
at most :data:`~rsigradcam.core.path.MAX_AUTO_STEPS`.
:func:`rsigradcam.core.path.path_rows` order is not needed here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from rsigradcam.core.integrate import RiemannStieltjesSum, Rule
from rsigradcam.core.limits import MAX_AUTO_STEPS, check_steps
from rsigradcam.core.path import path_rows, uniform_partition
from rsigradcam.core.reduction import spatial_dims

__all__ = [
    "AUTO_MAX_STEPS",
    "AUTO_TOLERANCE",
    "AdaptiveSchedule",
    "Evaluate",
    "ImagePoints",
    "ScoreGap",
    "first_error_scale",
    "largest_completeness_error",
    "run_adaptive",
]

#: The uniform m that ``steps="auto"`` must be at least as converged as (the paper's).
MATCH_STEPS = 50
#: The order of convergence assumed to scale the first round's completeness error to m = 50.
MATCH_ORDER = 1.5
#: Where completeness holds, an interval's bisection score is the larger of its map
#: indicator and this times its share of the completeness error (see :func:`_residual`).
RESIDUAL_WEIGHT = 3.0
#: The default ``tolerance`` of ``steps="auto"`` (see the module docstring).
AUTO_TOLERANCE = 0.1
#: The default ``max_steps`` of ``steps="auto"``: at most 128 evaluations per image.
AUTO_MAX_STEPS = 127

#: Evaluates rows (image index, t) and yields ``(rows, t, activations, gradients)`` chunks,
#: as :class:`rsigradcam.core.evaluator.PathEvaluator` does.
Evaluate = Callable[
    [Tensor, Tensor],
    Iterable[tuple[Tensor, Tensor, dict[str, Tensor], dict[str, Tensor], Tensor]],
]
#: Called once after the first round: the layers at which completeness holds, and each
#: row's ``y(x) - y(x')``, (N,).
ScoreGap = Callable[[], tuple[list[str], Tensor]]


@dataclass(frozen=True)
class AdaptiveSchedule:
    """How an adaptive partition is refined.

    Args:
        tolerance: Stop when the estimated relative error of every layer map is below this
            (and, where completeness holds, the completeness error too; see above).
        max_steps: At most ``max_steps`` intervals (``max_steps + 1`` evaluations per image),
            at most :data:`~rsigradcam.core.path.MAX_AUTO_STEPS`.
        initial_steps: Intervals of the first, uniform partition.
        fraction: Share of the intervals bisected in each round (at least 2).

    Example:
        >>> AdaptiveSchedule(tolerance=0.05).initial_steps
        8
    """

    tolerance: float = AUTO_TOLERANCE
    max_steps: int = AUTO_MAX_STEPS
    initial_steps: int = 8
    fraction: float = 0.3

    def __post_init__(self) -> None:
        if not self.tolerance > 0:
            raise ValueError(f"tolerance must be positive, got {self.tolerance!r}.")
        check_steps(self.max_steps, "max_steps")
        if self.max_steps > MAX_AUTO_STEPS:
            raise ValueError(
                f"max_steps must be at most {MAX_AUTO_STEPS} with steps='auto' (the adaptive "
                "partition keeps every point's activations and gradients in memory; 257 points "
                f"settle every case measured), got {self.max_steps}. For more points pass an "
                "int steps, which streams them."
            )


@dataclass
class ImagePoints:
    """Every evaluated point of one image, sorted by t."""

    t: Tensor
    scores: Tensor | None = None
    acts: dict[str, Tensor] = field(default_factory=dict)
    grads: dict[str, Tensor] = field(default_factory=dict)
    maps: dict[str, Tensor] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)
    completeness_target: float | None = None
    done: bool = False

    def insert(
        self, t: Tensor, acts: dict[str, Tensor], grads: dict[str, Tensor], scores: Tensor
    ) -> None:
        """Add evaluated points (any order) and keep every field sorted by ``t``."""
        order = torch.argsort(torch.cat([self.t, t]))
        self.t = torch.cat([self.t, t])[order]
        old_y = scores[:0] if self.scores is None else self.scores
        self.scores = torch.cat([old_y, scores])[order]
        for name in acts:
            old_a = self.acts.get(name, acts[name][:0])
            old_g = self.grads.get(name, grads[name][:0])
            self.acts[name] = torch.cat([old_a, acts[name]])[order.to(acts[name].device)]
            self.grads[name] = torch.cat([old_g, grads[name]])[order.to(grads[name].device)]


def _integrate(points: ImagePoints, name: str, rule: Rule, grad_relu: bool) -> Tensor:
    acc = RiemannStieltjesSum(1, rule, grad_relu=grad_relu, descending=False)
    a = points.acts[name]
    acc.update(torch.zeros(a.shape[0], dtype=torch.long, device=a.device), a, points.grads[name])
    return acc.result()[0]


def _layer_map(integrated: Tensor, activation: Tensor) -> Tensor:
    weights = integrated.mean(dim=tuple(range(1, integrated.dim())))
    return torch.relu(torch.einsum("k,k...->...", weights, activation))


def _indicator(points: ImagePoints, name: str, scale: float) -> Tensor:
    a, g = points.acts[name], points.grads[name]
    d = (0.5 * (g[1:] - g[:-1]) * (a[1:] - a[:-1])).mean(dim=spatial_dims(a))
    change: Tensor = torch.einsum("ik,k...->i...", d, a[-1]).flatten(1).norm(dim=1)
    return change / scale


def _residual(points: ImagePoints, name: str, gap: float) -> Tensor:
    """Per interval, its trapezoid term's departure from the score's change, over ``|gap|``.

    Where the layer cuts the graph, ``sum(1/2 (G_i + G_j)(A_j - A_i)) - (y_j - y_i)`` is the
    interval's share of the completeness error: it is 0 where the trapezoid is exact.
    """
    a, g = points.acts[name], points.grads[name]
    terms = (0.5 * (g[1:] + g[:-1]) * (a[1:] - a[:-1])).flatten(1).sum(dim=1).double().cpu()
    assert points.scores is not None
    change = points.scores[1:] - points.scores[:-1]
    return (terms - change).abs() / _gap_scale(gap)


def largest_completeness_error(points: ImagePoints, layers: list[str], gap: float) -> float:
    """The largest completeness error over ``layers``, as :func:`completeness_error` does."""
    return max(abs(points.sums[name] - gap) / _gap_scale(gap) for name in layers)


def _gap_scale(gap: float) -> float:
    """``|y(x) - y(x')|``, at least float32's eps: the denominator of relative errors."""
    return max(abs(gap), float(torch.finfo(torch.float32).eps))


def first_error_scale(points: ImagePoints, layers: list[str], gap: float) -> float:
    """The first partition's error scale: its completeness error or, if larger, the spread.

    The spread ``sqrt(sum r_ij^2)`` of the intervals' residuals (:func:`_residual`) is the
    size their signed total has when their signs are independent, as they are on these
    networks (``benchmarks/limits.md``). Unlike the signed total it cannot be made small by
    a lucky cancellation between intervals (yellow_ladys_slipper ``blocks.5``: 0.0033
    signed at m_0 = 8, where uniform m = 50 has 0.059).
    """
    spread = max(float(_residual(points, name, gap).pow(2).sum().sqrt()) for name in layers)
    return max(largest_completeness_error(points, layers, gap), spread)


def _relative_change(new: Tensor, old: Tensor) -> float:
    norm = float(new.norm())
    if norm == 0.0:
        return 0.0 if float(old.norm()) == 0.0 else 1.0
    return float((new - old).norm()) / norm


def run_adaptive(
    evaluate: Evaluate,
    n_images: int,
    layers: list[str],
    rule: Rule,
    grad_relu: bool,
    schedule: AdaptiveSchedule,
    score_gap: ScoreGap | None = None,
) -> tuple[dict[str, Tensor], Tensor, int]:
    """Refine each image's partition until its maps settle (and its sum, where complete).

    Args:
        evaluate: A :class:`rsigradcam.core.evaluator.PathEvaluator` (called with rows of
            image index and t, it yields activations and gradients per layer).
        n_images: N.
        layers: Layer names, in the evaluator's order.
        rule: The Riemann–Stieltjes rule of the final sum.
        grad_relu: ReLU on the gradients before integrating.
        schedule: Tolerance, budget and refinement pace.
        score_gap: Where completeness holds, the layers and ``y(x) - y(x')`` (asked once,
            after the first round); ``None`` when it does not apply (e.g. with
            ``grad_relu``).

    Returns:
        The (N, K, h, w) integrated gradients per layer, the partition(s) used ((P,) for
        one image; (N, P_max) for several, shorter ones padded by repeating t = 1, which adds
        empty intervals), and the largest number of evaluations of an image.
    """
    initial = uniform_partition(min(schedule.initial_steps, schedule.max_steps))
    images = [ImagePoints(initial[:0].clone()) for _ in range(n_images)]
    n, t = path_rows(n_images, initial)
    _evaluate_rows(evaluate, images, n, t)
    for points in images:
        _update_maps(points, layers, rule, grad_relu)
    complete: list[str] = []
    gaps: list[float] = []
    if score_gap is not None:
        applies, gap = score_gap()
        complete = [name for name in layers if name in applies]
        gaps = [float(g) for g in gap.double().cpu()]
    if complete:
        scale = (initial.numel() - 1) / MATCH_STEPS
        for points, g in zip(images, gaps, strict=True):
            first = first_error_scale(points, complete, g)
            if math.isfinite(first):
                target = min(schedule.tolerance, first * scale**MATCH_ORDER)
                points.completeness_target = target
    budget = schedule.max_steps + 1
    while True:
        new_n: list[Tensor] = []
        new_t: list[Tensor] = []
        for index, points in enumerate(images):
            if points.done:
                continue
            widths = points.t[1:] - points.t[:-1]
            parts = [
                _indicator(points, name, max(float(points.maps[name].norm()), 1e-30))
                .double()
                .cpu()
                for name in layers
            ]
            if points.completeness_target is not None:
                parts += [RESIDUAL_WEIGHT * _residual(points, name, gaps[index])
                          for name in complete]
            scores = torch.stack(parts).amax(dim=0)
            scores = torch.where(widths > 1e-9, scores, torch.full_like(scores, -1.0))
            splittable = int((scores >= 0).sum())
            k = min(
                max(2, math.ceil(schedule.fraction * widths.numel())),
                budget - points.t.numel(),
                splittable,
            )
            if k <= 0:
                points.done = True
                continue
            top = scores.topk(k).indices
            mids = (points.t[top] + points.t[top + 1]) / 2
            new_t.append(mids)
            new_n.append(torch.full((k,), index, dtype=torch.long))
        if not new_t:
            break
        before = {i: p.t.numel() for i, p in enumerate(images)}
        old_maps = [dict(p.maps) for p in images]
        _evaluate_rows(evaluate, images, torch.cat(new_n), torch.cat(new_t))
        for index in sorted(set(torch.cat(new_n).tolist())):
            points = images[index]
            _update_maps(points, layers, rule, grad_relu)
            added = points.t.numel() - before[index]
            change = max(
                _relative_change(points.maps[name], old_maps[index][name]) for name in layers
            )
            settled = change * points.t.numel() / added <= schedule.tolerance
            target = points.completeness_target
            if settled and target is not None:
                settled = largest_completeness_error(points, complete, gaps[index]) <= target
            if settled:
                points.done = True
            if points.t.numel() >= budget:
                points.done = True
    integrated = {
        name: torch.stack([_integrate(p, name, rule, grad_relu) for p in images])
        for name in layers
    }
    longest = max(p.t.numel() for p in images)
    if n_images == 1:
        partition = images[0].t
    else:
        partition = torch.ones((n_images, longest), dtype=torch.float64)
        for i, p in enumerate(images):
            partition[i, : p.t.numel()] = p.t
    return integrated, partition, longest


def _evaluate_rows(evaluate: Evaluate, images: list[ImagePoints], n: Tensor, t: Tensor) -> None:
    for rows, tc, acts, grads, y in evaluate(n, t):
        y_cpu = y.detach().double().cpu()
        rows_cpu, tc_cpu = rows.cpu(), tc.cpu()
        for index in sorted(set(rows_cpu.tolist())):
            mask = rows_cpu == index
            dev_mask = mask.to(rows.device)
            images[index].insert(
                tc_cpu[mask],
                {name: a[dev_mask] for name, a in acts.items()},
                {name: g[dev_mask] for name, g in grads.items()},
                y_cpu[mask],
            )


def _update_maps(points: ImagePoints, layers: list[str], rule: Rule, grad_relu: bool) -> None:
    for name in layers:
        integrated = _integrate(points, name, rule, grad_relu)
        points.maps[name] = _layer_map(integrated, points.acts[name][-1])
        points.sums[name] = float(integrated.double().sum())
