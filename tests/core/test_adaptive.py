"""steps="auto": adaptive partitions, checked against the reference loop and m = 512."""

from __future__ import annotations

import pytest
import torch

from rsigradcam import RSIGradCAM
from rsigradcam.app.bench import heatmap_correlation
from rsigradcam.baselines import BlackBaseline
from rsigradcam.constants import IMAGENET_NORMALIZE
from rsigradcam.core.adaptive import (
    AdaptiveSchedule,
    ImagePoints,
    first_error_scale,
    largest_completeness_error,
)
from tests.helpers import make_case
from tests.reference.loop import reference_rsi

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


@pytest.mark.parametrize("rule", ["trapezoid", "left"])
def test_auto_partition_matches_reference_on_the_same_points(rule):
    model, images = make_case(14, n=2)
    exp = RSIGradCAM(model, "conv", steps="auto", rule=rule, tolerance=0.05, max_steps=40)(images)
    assert exp.partition.shape[0] == 2
    baselines = BlackBaseline(*IMAGENET_NORMALIZE)(images)
    for n in range(2):
        ts = exp.partition[n]
        ts = ts[: int((ts < 1).sum()) + 1].tolist()  # drop the padding (repeated t = 1)
        assert ts[0] == 0.0 and ts[-1] == 1.0 and ts == sorted(set(ts))
        ref = reference_rsi(model, "conv", images[n], baselines[n], 0, rule, partition=ts)
        assert (exp.heatmap[n] - ref["heatmap"]).abs().max() < 1e-5
        rel = (exp.attributions[n] - ref["attributions"]).norm() / ref["attributions"].norm()
        assert float(rel) < 1e-4


def test_auto_converges_to_the_fine_uniform_map():
    model, images = make_case(13, n=1, size=16)
    fine = RSIGradCAM(model, ["features", "conv"], steps=512)(images)
    auto = RSIGradCAM(model, ["features", "conv"], steps="auto", tolerance=0.02)(images)
    for layer in ("features", "conv"):
        assert heatmap_correlation(auto[layer].heatmap, fine[layer].heatmap) > 0.999
        assert auto[layer].n_evaluations == auto[layer].partition.numel() <= 257
        assert auto[layer].n_evaluations < 257


def test_tighter_tolerance_uses_more_points_within_the_budget():
    model, images = make_case(17, n=1)
    loose = RSIGradCAM(model, "conv", steps="auto", tolerance=0.2)(images)
    tight = RSIGradCAM(model, "conv", steps="auto", tolerance=1e-4)(images)
    assert loose.n_evaluations < tight.n_evaluations <= 128  # the default max_steps=127
    capped = RSIGradCAM(model, "conv", steps="auto", tolerance=1e-4, max_steps=48)(images)
    assert capped.n_evaluations <= 49


def test_auto_batch_equals_single_images():
    model, images = make_case(18, n=3)
    cam = RSIGradCAM(model, "conv", steps="auto", tolerance=0.05)
    batch = cam(images)
    for n in range(3):
        single = cam(images[n : n + 1])
        assert (batch.heatmap[n] - single.heatmap[0]).abs().max() < 1e-5
        used = batch.partition[n][: single.partition.numel()]
        assert torch.equal(used, single.partition)
        assert torch.equal(batch[n].partition[0], batch.partition[n])


def test_schedule_validation():
    model = make_case(13)[0]
    with pytest.raises(ValueError, match="tolerance must be positive"):
        RSIGradCAM(model, "conv", steps="auto", tolerance=0)
    with pytest.raises(ValueError, match="max_steps"):
        RSIGradCAM(model, "conv", steps="auto", max_steps=0)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        RSIGradCAM(model, "conv", steps="fast")  # type: ignore[arg-type]
    defaults = AdaptiveSchedule()  # chosen on the 18 benchmark cases (auto_completeness.md)
    assert (defaults.tolerance, defaults.max_steps, defaults.fraction) == (0.1, 127, 0.3)


def test_first_error_is_the_residuals_spread_where_signs_cancel():
    # Two intervals whose trapezoid terms are 1 each while y changes by 1.1 and 0.9: the
    # signed completeness error is 0 by cancellation; each residual is 0.1 / |gap| = 0.05
    # and their spread sqrt(2 * 0.05^2).
    points = ImagePoints(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    points.acts["l"] = torch.tensor([0.0, 1.0, 2.0]).reshape(3, 1, 1, 1)
    points.grads["l"] = torch.ones(3, 1, 1, 1)
    points.scores = torch.tensor([0.0, 1.1, 2.0], dtype=torch.float64)
    points.sums["l"] = 2.0
    assert largest_completeness_error(points, ["l"], 2.0) == 0.0
    assert first_error_scale(points, ["l"], 2.0) == pytest.approx(0.05 * 2**0.5)
    points.sums["l"] = 2.5  # a larger signed error wins
    assert first_error_scale(points, ["l"], 2.0) == pytest.approx(0.25)
