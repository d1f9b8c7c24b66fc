"""Issue 16 items 1, 4 and 9: limits on steps, NaN completeness, auto as converged as m = 50."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from rsigradcam import RSIGradCAM
from rsigradcam.app.cli import app
from rsigradcam.core.adaptive import AdaptiveSchedule
from rsigradcam.core.path import MAX_AUTO_STEPS, MAX_STEPS, check_partition, check_steps
from rsigradcam.methods import BYPASSED_LAYER_REASON, IntegratedGradCAM, IntegratedGradients
from rsigradcam.methods.rsi import NO_COMPLETENESS_REASON
from tests.helpers import make_case

WHY = "each interval costs a forward and backward pass; 50-256 converge on every case measured"


class NoForward(nn.Module):
    """A model whose forward fails the test: the checks must come before any work."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the model was run")


def test_limit_is_one_constant():
    assert MAX_STEPS == 100_000
    assert check_steps(MAX_STEPS) == MAX_STEPS
    assert len(check_partition(torch.linspace(0, 1, MAX_STEPS + 1, dtype=torch.float64))) == (
        MAX_STEPS + 1
    )


@pytest.mark.parametrize("cls", [RSIGradCAM, IntegratedGradCAM, IntegratedGradients])
def test_api_refuses_a_billion_steps_before_any_work(cls):
    layer = "input" if cls is IntegratedGradients else "conv"
    with pytest.raises(ValueError) as info:
        cls(NoForward(), layer, steps=10**9)
    assert str(info.value) == f"steps must be at most 100000 ({WHY}), got 1000000000."


def test_api_refuses_max_steps_and_long_partitions():
    with pytest.raises(ValueError) as info:
        RSIGradCAM(NoForward(), "conv", steps="auto", max_steps=10**9)
    assert str(info.value) == f"max_steps must be at most 100000 ({WHY}), got 1000000000."
    with pytest.raises(ValueError) as info:
        RSIGradCAM(NoForward(), "conv", steps=50, max_steps=10**9)
    assert str(info.value) == f"max_steps must be at most 100000 ({WHY}), got 1000000000."
    with pytest.raises(ValueError) as info:
        RSIGradCAM(NoForward(), "conv", steps="auto", max_steps=MAX_AUTO_STEPS + 1)
    assert str(info.value).startswith("max_steps must be at most 1024 with steps='auto' (the ")
    assert AdaptiveSchedule(max_steps=MAX_AUTO_STEPS).max_steps == MAX_AUTO_STEPS
    long = [0.0] * (MAX_STEPS + 2)  # refused by its length, before it is even converted
    with pytest.raises(ValueError) as info:
        RSIGradCAM(NoForward(), "conv", partition=long)
    assert str(info.value) == (
        f"partition must have at most 100000 intervals (100001 values; {WHY}), got 100001."
    )


@pytest.mark.parametrize(
    "args",
    [
        ["explain", "missing.png", "--steps", "1000000000"],
        ["explain-dataset", "missing-folder", "--steps", "1000000000", "--out", "x"],
        ["evaluate", "--images", "missing-folder", "--steps", "1000000000"],
    ],
)
def test_cli_refuses_a_billion_steps_before_loading(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"--steps must be at most 100000 ({WHY}), got 1000000000." in result.output
    assert list(tmp_path.iterdir()) == []  # nothing loaded, nothing written


@pytest.mark.parametrize("variant", [{"grad_relu": True}, {"guided": True}])
@pytest.mark.parametrize("steps", [8, "auto"])
def test_completeness_is_nan_with_the_authors_variants(variant, steps):
    model, images = make_case(13, n=2)
    cam = RSIGradCAM(model, "conv", steps=steps, tolerance=0.2, **variant)
    exp = cam(images)
    assert not cam.completeness_applies
    assert bool(torch.isnan(exp.completeness_error).all())
    assert bool(torch.isfinite(exp.heatmap).all())
    plain = RSIGradCAM(model, "conv", steps=8)
    assert plain.completeness_applies
    assert bool(torch.isfinite(plain(images).completeness_error).all())
    assert "grad_relu or guided" in NO_COMPLETENESS_REASON and "\n" not in NO_COMPLETENESS_REASON


def test_auto_is_at_least_as_complete_as_uniform_50():
    model, images = make_case(17, n=1)
    uniform = RSIGradCAM(model, "conv", steps=50)(images)
    for tol in (0.2, 0.01):
        auto = RSIGradCAM(model, "conv", steps="auto", tolerance=tol)(images)
        assert float(auto.completeness_error[0]) <= float(uniform.completeness_error[0])
        assert auto.n_evaluations < 257


def test_auto_without_completeness_stops_on_the_map_alone():
    """Where the layer does not cut the graph, completeness is no stopping criterion."""

    class Bypass(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4 + 3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pooled = torch.relu(self.conv(x)).mean(dim=(2, 3))
            return self.fc(torch.cat([pooled, x.mean(dim=(2, 3))], dim=1))

    torch.manual_seed(0)
    model = Bypass().eval()
    images = torch.randn(1, 3, 8, 8)
    exp = RSIGradCAM(model, "conv", steps="auto", tolerance=0.2, output="logits")(images)
    assert exp.n_evaluations < 257
    assert math.isnan(float(exp.completeness_error[0]))  # not applicable, and why
    assert exp.completeness_note == BYPASSED_LAYER_REASON


def test_auto_defaults_match_uniform_50_within_128_evaluations():
    """Issue 16 item 9 / issue 20 §2: the default settings, not a chosen tolerance."""
    model, images = make_case(17, n=2)
    uniform = RSIGradCAM(model, "conv", steps=50)(images)
    auto = RSIGradCAM(model, "conv", steps="auto")(images)
    assert (auto.completeness_error <= uniform.completeness_error).all()
    assert auto.n_evaluations <= 128
    assert auto.partition.shape[-1] <= 128


@pytest.mark.slow
def test_auto_is_as_complete_as_uniform_50_on_chelsea_blocks5() -> None:
    """Issue 16's own case: auto bisects where the sum departs from the score's change."""
    from skimage import data

    from rsigradcam import RSIGradCAM
    from rsigradcam.io import load_image
    from rsigradcam.models import efficientnet_lite0

    model = efficientnet_lite0()
    image = load_image(data.chelsea())[0]
    uniform = RSIGradCAM(model, "blocks.5", steps=50)(image)
    auto = RSIGradCAM(model, "blocks.5", steps="auto")(image)
    assert auto.n_evaluations <= 64
    assert float(auto.completeness_error[0]) <= float(uniform.completeness_error[0])
    assert float(torch.corrcoef(torch.stack([auto.heatmap.flatten(),
                                             uniform.heatmap.flatten()]))[0, 1]) > 0.99
