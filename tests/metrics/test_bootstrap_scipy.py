"""The evaluation's bootstrap intervals against scipy.stats.bootstrap and plain NumPy.

``bootstrap_mean`` and ``paired_bootstrap_mean`` (``rsigradcam.app.evaluation.stats``) call
``scipy.stats.bootstrap`` (percentile method, 95 %, paired for differences). Checked here:

- against scipy's own call with the same settings and generator: equal to 1e-12
  (relative);
- against an independent percentile bootstrap written with NumPy (``rng.integers`` resamples,
  ``np.percentile``): with the same generator it draws the same resamples, so equal to
  1e-12; with another generator and 20 000 resamples, within 0.15 standard errors of the
  mean (the Monte Carlo spread of a 2.5 % quantile is about 0.03);
- the paired interval is the interval of the mean of ``a - b`` (one resample of units for
  both), not of ``mean(a) - mean(b)`` resampled apart;
- coverage: on 300 normal samples of 40 units the 95 % interval covers the true mean
  between 90 % and 98 % of the time (the percentile interval runs slightly short).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

from rsigradcam.app.evaluation.stats import bootstrap_mean, paired_bootstrap_mean

CONFIDENCE = 0.95


def numpy_bootstrap(
    x: np.ndarray, resamples: int, rng: np.random.Generator
) -> tuple[float, float]:
    """The percentile bootstrap of the mean, written out: resample units, take percentiles."""
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    low, high = np.percentile(means, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2])
    return float(low), float(high)


def scipy_interval(
    data: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray], resamples: int,
    rng: np.random.Generator, paired: bool = False,
) -> tuple[float, float]:
    found = stats.bootstrap(
        data, statistic, n_resamples=resamples, confidence_level=CONFIDENCE,
        method="percentile", paired=paired, vectorized=True, rng=rng,
    ).confidence_interval
    return float(found.low), float(found.high)


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.asarray(np.mean(x, axis=axis))


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.asarray(np.mean(a - b, axis=axis))


def _samples(seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    draw = np.random.default_rng(seed)
    n = int(draw.integers(2, 60))
    a = draw.normal(size=n) * 10 ** draw.uniform(-3, 1) + draw.normal()
    b = a + draw.exponential(size=n) * 0.3 - 0.1  # paired: correlated with a
    return a, b, int(draw.choice([200, 1000, 2000]))


@pytest.mark.parametrize("seed", range(12))
def test_bootstrap_mean_is_scipy_bootstrap(seed: int) -> None:
    a, _, resamples = _samples(seed)
    interval = bootstrap_mean(a, resamples, np.random.default_rng([seed, 1]))
    expected = scipy_interval((a,), _mean, resamples, np.random.default_rng([seed, 1]))
    assert interval.n == a.size and interval.mean == a.mean()
    assert (interval.low, interval.high) == pytest.approx(expected, rel=1e-12, abs=1e-300)
    written = numpy_bootstrap(a, resamples, np.random.default_rng([seed, 1]))
    assert (interval.low, interval.high) == pytest.approx(written, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("seed", range(12))
def test_paired_bootstrap_mean_is_scipy_paired_bootstrap(seed: int) -> None:
    a, b, resamples = _samples(seed)
    interval = paired_bootstrap_mean(a, b, resamples, np.random.default_rng([seed, 2]))
    expected = scipy_interval(
        (a, b), _mean_difference, resamples, np.random.default_rng([seed, 2]), paired=True
    )
    assert interval.n == a.size and interval.mean == pytest.approx((a - b).mean(), rel=1e-15)
    assert (interval.low, interval.high) == pytest.approx(expected, rel=1e-12, abs=1e-300)
    written = numpy_bootstrap(a - b, resamples, np.random.default_rng([seed, 2]))
    assert (interval.low, interval.high) == pytest.approx(written, rel=1e-12, abs=1e-300)


def test_independent_resamples_agree_within_monte_carlo_error() -> None:
    resamples = 20_000
    for seed in range(4):
        a, b, _ = _samples(100 + seed)
        for x, found in (
            (a, bootstrap_mean(a, resamples, np.random.default_rng([seed, 3]))),
            (a - b, paired_bootstrap_mean(a, b, resamples, np.random.default_rng([seed, 4]))),
        ):
            written = numpy_bootstrap(x, resamples, np.random.default_rng([seed, 5]))
            standard_error = x.std(ddof=1) / np.sqrt(x.size)
            assert found.low is not None and found.high is not None
            assert abs(found.low - written[0]) < 0.15 * standard_error
            assert abs(found.high - written[1]) < 0.15 * standard_error


def test_pairing_resamples_units_together() -> None:
    """With b = a + small noise, the paired interval is narrow; resampling apart is wide."""
    draw = np.random.default_rng(7)
    a = draw.normal(size=50)
    b = a + 0.01 * draw.normal(size=50)
    paired = paired_bootstrap_mean(a, b, 2000, np.random.default_rng(0))
    assert paired.low is not None and paired.high is not None
    apart = scipy_interval(
        (a, b), lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis), 2000,
        np.random.default_rng(0),
    )
    assert paired.high - paired.low < 0.05 * (apart[1] - apart[0])


def test_coverage_of_the_true_mean() -> None:
    draw = np.random.default_rng(11)
    covered = 0
    trials = 300
    for trial in range(trials):
        x = draw.normal(loc=1.0, size=40)
        found = bootstrap_mean(x, 1000, np.random.default_rng([11, trial]))
        assert found.low is not None and found.high is not None
        covered += found.low <= 1.0 <= found.high
    assert 0.90 <= covered / trials <= 0.98
