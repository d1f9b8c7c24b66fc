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

import warnings
import zlib
from collections.abc import Sequence

import numpy as np
import torch
from scipy import stats

from rsigradcam.app.evaluation.options import CLAIMS, METRICS, Better, Verdict
from rsigradcam.app.evaluation.results import (
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
    "bootstrap_mean",
    "combine",
    "judge_claims",
    "paired_bootstrap_mean",
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
    n = int(data[0].size)
    if n < 2:
        return Interval(n, mean, None, None)

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        found = samples[0] - samples[1] if len(samples) == 2 else samples[0]
        return np.asarray(np.mean(found, axis=axis))

    with warnings.catch_warnings():  # NaN values give a NaN interval, as the mean is NaN
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        found = stats.bootstrap(
            data, statistic, n_resamples=resamples, vectorized=True, paired=paired,
            confidence_level=CONFIDENCE, method="percentile", rng=rng,
        ).confidence_interval
    return Interval(n, mean, float(found.low), float(found.high))


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


def judge_claims(
    metrics: MetricValues, units: dict[str, Units], seed: int, resamples: int
) -> list[ClaimResult]:
    """Each claim's verdict per layer, from paired intervals of RSI minus Grad-CAM.

    A metric's verdict per layer and group (all, saturated and unsaturated units; empty
    groups are left out) comes from the bootstrap interval of the mean per-unit
    difference; the claim's verdict per layer combines its metrics on all the units: it
    holds when some metric supports it and none contradicts it.
    """
    claims = []
    for claim in CLAIMS:
        measures: dict[str, list[Measure]] = {}
        for metric in claim.metrics:
            pair = metrics.get(metric, {})
            if "rsi" not in pair or "gradcam" not in pair:
                continue
            masks = unit_groups(units[metric])
            better = METRICS[metric].better
            for layer in pair["rsi"]:
                if layer not in pair["gradcam"]:
                    continue
                rsi, grad = np.asarray(pair["rsi"][layer]), np.asarray(pair["gradcam"][layer])
                for group, mask in masks.items():
                    if not mask.any():
                        continue
                    found = paired_bootstrap_mean(
                        rsi[mask], grad[mask], resamples,
                        seeded(seed, f"claim/{metric}/{layer}/{group}"),
                    )
                    measures.setdefault(layer, []).append(Measure(
                        metric, group, better, float(rsi[mask].mean()),
                        float(grad[mask].mean()), found, verdict(found.low, found.high, better),
                    ))
        layers = {
            layer: LayerVerdict(found, combine([m.verdict for m in found if m.group == "all"]))
            for layer, found in measures.items()
        }
        claims.append(ClaimResult(claim.key, claim.text, layers))
    return claims
