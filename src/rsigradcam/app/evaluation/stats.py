"""Means with 95 % percentile bootstrap intervals, and the verdicts on the paper's claims.

The intervals come from :func:`scipy.stats.bootstrap` (percentile method, paired for the
claims' differences), seeded per interval: the same seed and key give the same resamples.
The resamples are those of the hand-written bootstrap this replaced
(``rng.integers(0, n, (resamples, n))``), and its intervals agree with scipy's to within
a few units in the last place (``tests/app/test_evaluate.py::test_scipy_bootstrap_*``).

Example:
    >>> bootstrap_mean([1.0, 1.0, 1.0], 100, np.random.default_rng(0))
    Interval(n=3, mean=1.0, low=1.0, high=1.0)
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Sequence

import numpy as np
import torch
from scipy import stats

from rsigradcam.app.evaluation.options import CLAIMS, METRICS, Better, Claim, Verdict
from rsigradcam.app.evaluation.results import (
    BinRow,
    ClaimResult,
    Interval,
    LayerVerdict,
    Measure,
    MetricValues,
    Summary,
    Units,
)
from rsigradcam.metrics.stability import saturation_groups

__all__ = [
    "P_BINS",
    "bootstrap_mean",
    "combine",
    "holm",
    "judge_claims",
    "paired_bootstrap_mean",
    "probability_bins",
    "resolution_note",
    "seeded",
    "summarize",
    "unit_groups",
    "verdict",
]

#: The confidence level of every interval.
CONFIDENCE = 0.95


def seeded(seed: int, key: str) -> np.random.Generator:
    """A generator for one interval: the same seed and key give the same draws."""
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def _interval(
    data: tuple[np.ndarray, ...], mean: float, resamples: int, rng: np.random.Generator,
    paired: bool,
) -> Interval:
    """The percentile bootstrap interval (scipy) of the mean of data[0] (minus data[1])."""
    return _bootstrap(data, mean, resamples, rng, paired)[0]


def _bootstrap(
    data: tuple[np.ndarray, ...], mean: float, resamples: int, rng: np.random.Generator,
    paired: bool,
) -> tuple[Interval, float | None]:
    """:func:`_interval`, and the two-sided bootstrap p-value of "the mean is 0".

    The p-value is twice the smaller share of resampled means on either side of 0 (at most
    1): below 0.05 exactly when 0 lies outside the 95 % percentile interval.
    """
    n = int(data[0].size)
    if n < 2:
        return Interval(n, mean, None, None), None

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        found = samples[0] - samples[1] if len(samples) == 2 else samples[0]
        return np.asarray(np.mean(found, axis=axis))

    with warnings.catch_warnings():  # NaN values give a NaN interval, as the mean is NaN
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        found = stats.bootstrap(
            data, statistic, n_resamples=resamples, vectorized=True, paired=paired,
            confidence_level=CONFIDENCE, method="percentile", rng=rng,
        )
    low, high = float(found.confidence_interval.low), float(found.confidence_interval.high)
    spread = np.asarray(found.bootstrap_distribution)
    p = None
    if np.isfinite(spread).all():
        p = float(min(1.0, 2 * min((spread <= 0).mean(), (spread >= 0).mean())))
    return Interval(n, mean, low, high), p


def bootstrap_mean(
    values: Sequence[float] | np.ndarray, resamples: int, rng: np.random.Generator
) -> Interval:
    """The mean and its 95 % percentile bootstrap interval.

    Args:
        values: One number per unit (image or grid cell).
        resamples: Bootstrap resamples.
        rng: The generator of the resamples.

    Returns:
        The interval is ``None`` for fewer than two values, and the mean too for none.

    Example:
        >>> bootstrap_mean([3.0], 100, np.random.default_rng(0))
        Interval(n=1, mean=3.0, low=None, high=None)
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return Interval(0, None, None, None)
    return _interval((x,), float(x.mean()), resamples, rng, paired=False)


def paired_bootstrap_mean(
    a: np.ndarray, b: np.ndarray, resamples: int, rng: np.random.Generator
) -> Interval:
    """The mean of ``a - b`` and its paired 95 % percentile bootstrap interval.

    Example:
        >>> paired_bootstrap_mean(np.ones(4), np.zeros(4), 100, np.random.default_rng(0))
        Interval(n=4, mean=1.0, low=1.0, high=1.0)
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return Interval(0, None, None, None)
    return _interval((a, b), float((a - b).mean()), resamples, rng, paired=True)


def verdict(low: float | None, high: float | None, better: Better) -> Verdict:
    """Read an interval of (RSI-Grad-CAM minus Grad-CAM) as a verdict on "RSI is better".

    Example:
        >>> verdict(0.01, 0.05, "higher"), verdict(0.01, 0.05, "lower"), verdict(-1, 1, "lower")
        ('holds', 'does not hold', 'inconclusive')
    """
    if low is None or high is None:
        return "inconclusive"
    above, below = low > 0, high < 0
    if (above and better == "higher") or (below and better == "lower"):
        return "holds"
    if above or below:
        return "does not hold"
    return "inconclusive"


def combine(verdicts: Sequence[Verdict]) -> Verdict:
    """A claim holds when some metric supports it and none contradicts it.

    Example:
        >>> combine(["holds", "inconclusive"]), combine(["holds", "does not hold"])
        ('holds', 'inconclusive')
    """
    holds, fails = "holds" in verdicts, "does not hold" in verdicts
    if holds and not fails:
        return "holds"
    if fails and not holds:
        return "does not hold"
    return "inconclusive"


def unit_groups(units: Units) -> dict[str, np.ndarray]:
    """The ``all``, ``saturated`` and ``unsaturated`` masks of a metric's units."""
    flags = torch.tensor(units.saturated, dtype=torch.bool)
    return {group: mask.numpy() for group, mask in saturation_groups(flags).items()}


def summarize(
    metrics: MetricValues, units: dict[str, Units], seed: int, resamples: int
) -> Summary:
    """Mean and 95 % bootstrap interval per metric, method, layer and saturation group."""
    summary: Summary = {}
    for metric, by_method in metrics.items():
        masks = unit_groups(units[metric])
        summary[metric] = {
            method: {
                layer: {
                    group: bootstrap_mean(
                        np.asarray(values)[mask], resamples,
                        seeded(seed, f"{metric}/{method}/{layer}/{group}"),
                    )
                    for group, mask in masks.items()
                }
                for layer, values in by_layer.items()
            }
            for method, by_layer in by_method.items()
        }
    return summary


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of ``p_values`` (``None`` stays ``None``, not counted).

    Example:
        >>> holm([0.01, 0.04, None, 0.03])
        [0.03, 0.06, None, 0.06]
    """
    tested = sorted((p, k) for k, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, k) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[k] = round(running, 12)
    return adjusted


def _masks(units: Units) -> dict[str, np.ndarray]:
    """:func:`unit_groups`, restricted to the correctly classified units where labelled."""
    masks = unit_groups(units)
    if units.correct:
        correct = np.asarray(units.correct, dtype=bool)
        masks = {group: mask & correct for group, mask in masks.items()}
    return masks


def judge_claims(
    metrics: MetricValues,
    units: dict[str, Units],
    seed: int,
    resamples: int,
    pairs: Sequence[tuple[str, str]] = (("rsi", "gradcam"),),
) -> list[ClaimResult]:
    """Each claim's verdict per layer and comparison, from paired intervals of the difference.

    ``pairs`` lists the comparisons (an RSI-Grad-CAM arm, the Grad-CAM arm on the same
    output). A metric's verdict per layer and group (all, saturated and unsaturated units;
    empty groups are left out; only the correctly classified units where there are labels)
    comes from the bootstrap interval of the mean per-unit difference. The measures on all
    the units are the confirmatory family: their p-values are Holm-adjusted together, and
    one holds (or does not) only when its adjusted p-value is below 0.05; the saturated and
    unsaturated groups are exploratory (unadjusted). The claim's verdict per layer combines
    its metrics on all the units: it holds when some metric supports it and none
    contradicts it.
    """
    found: list[tuple[Claim, str, str, dict[str, list[Measure]]]] = []
    for claim in CLAIMS:
        for arm, versus in pairs:
            measures: dict[str, list[Measure]] = {}
            for metric in claim.metrics:
                pair = metrics.get(metric, {})
                if arm not in pair or versus not in pair:
                    continue
                masks = _masks(units[metric])
                better = METRICS[metric].better
                for layer in pair[arm]:
                    if layer not in pair[versus]:
                        continue
                    a, b = np.asarray(pair[arm][layer]), np.asarray(pair[versus][layer])
                    for group, mask in masks.items():
                        if not mask.any():
                            continue
                        key = f"claim/{metric}/{layer}/{group}"
                        if (arm, versus) != ("rsi", "gradcam"):
                            key = f"{key}/{arm}/{versus}"
                        interval, p = _bootstrap(
                            (a[mask], b[mask]), float((a[mask] - b[mask]).mean()), resamples,
                            seeded(seed, key), paired=True,
                        )
                        measures.setdefault(layer, []).append(Measure(
                            metric, group, better, float(a[mask].mean()),
                            float(b[mask].mean()), interval,
                            verdict(interval.low, interval.high, better), p,
                        ))
            found.append((claim, arm, versus, measures))
    family = [m for *_, by_layer in found for ms in by_layer.values() for m in ms
              if m.group == "all"]
    for m, adjusted in zip(family, holm([m.p_value for m in family]), strict=True):
        m.p_holm = adjusted
        if adjusted is None or adjusted >= 1 - CONFIDENCE:
            m.verdict = "inconclusive"
    claims = []
    for claim, arm, versus, measures in found:
        layers = {
            layer: LayerVerdict(ms, combine([m.verdict for m in ms if m.group == "all"]))
            for layer, ms in measures.items()
        }
        claims.append(ClaimResult(claim.key, claim.text, layers, arm, versus, len(family)))
    return claims


def resolution_note(tests: int, resamples: int) -> str | None:
    """A note when ``resamples`` are too few to decide ``tests`` Holm-adjusted measures.

    A bootstrap p-value is a multiple of 2 / resamples, so one resample across 0 gives an
    adjusted p of up to 2 * tests / resamples. Above 0.01 the borderline measures turn on
    single resamples (with 45 tests and 1000 resamples: 0.09, so no measure can reach
    0.05 unless no resample crosses 0).

    Example:
        >>> resolution_note(45, 10_000) is None
        True
    """
    if tests == 0 or 2 * tests / resamples <= 0.01:
        return None
    return (
        f"bootstrap: {resamples} resamples are few for {tests} Holm-adjusted tests (one "
        f"resample across 0 gives an adjusted p of up to {2 * tests / resamples:.3g}); use "
        f"--bootstrap {200 * tests} or more to decide the borderline measures"
    )


#: The bins of the explained class's probability p that the differences are reported by.
P_BINS: tuple[tuple[float, float, str], ...] = (
    (0.0, 0.5, "p < 0.5"), (0.5, 0.9, "0.5 ≤ p < 0.9"), (0.9, 0.99, "0.9 ≤ p < 0.99"),
    (0.99, math.inf, "p ≥ 0.99"),
)


def probability_bins(
    metrics: MetricValues,
    units: dict[str, Units],
    seed: int,
    resamples: int,
    pairs: Sequence[tuple[str, str]],
) -> list[BinRow]:
    """Each comparison's mean difference by bins of p (:data:`P_BINS`), with counts.

    Only the metrics of the claims, on units whose probability was recorded (correct
    units only where labelled); exploratory, unadjusted 95 % intervals.
    """
    rows = []
    for metric in dict.fromkeys(m for claim in CLAIMS for m in claim.metrics):
        if metric not in units or not units[metric].probability:
            continue
        p = np.asarray(units[metric].probability, dtype=np.float64)
        keep = np.asarray(units[metric].correct, dtype=bool) if units[metric].correct else True
        for arm, versus in pairs:
            pair = metrics.get(metric, {})
            for layer in pair.get(arm, {}):
                if layer not in pair.get(versus, {}):
                    continue
                a, b = np.asarray(pair[arm][layer]), np.asarray(pair[versus][layer])
                for low, high, label in P_BINS:
                    mask = (p >= low) & (p < high) & keep
                    found = paired_bootstrap_mean(
                        a[mask], b[mask], resamples,
                        seeded(seed, f"bins/{metric}/{layer}/{arm}/{versus}/{label}"),
                    )
                    rows.append(BinRow(arm, versus, metric, layer, label, found))
    return rows
