"""Custom integration paths: tensors of points and callables."""

from __future__ import annotations

import pytest
import torch

from rsigradcam import GradCAM, RSIGradCAM
from rsigradcam.baselines import BlackBaseline
from rsigradcam.constants import IMAGENET_NORMALIZE
from tests.helpers import assert_same_state, make_case, model_state
from tests.reference.loop import reference_rsi

KW = dict(dtype=torch.float64, batch_size=5)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def _straight(images: torch.Tensor):
    black = BlackBaseline(*IMAGENET_NORMALIZE)(images)

    def path(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        base = BlackBaseline(*IMAGENET_NORMALIZE)(x)
        return base + t.view(-1, 1, 1, 1) * (x - base)

    return black, path


def _curved(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A non-linear path: black to x through a brightened, channel-swapped detour."""
    base = BlackBaseline(*IMAGENET_NORMALIZE)(x)
    t = t.view(-1, 1, 1, 1)
    detour = torch.sin(torch.pi * t) * (x.flip(1) * 0.5 + 0.3)
    return base + t**2 * (x - base) + detour


def test_straight_line_callable_equals_the_default():
    model, images = make_case(5, n=2)
    _, path = _straight(images)
    default = RSIGradCAM(model, "conv", steps=12, **KW)(images)
    custom = RSIGradCAM(model, "conv", steps=12, path=path, **KW)(images)
    assert torch.allclose(custom.attributions, default.attributions, rtol=1e-10, atol=1e-13)
    assert torch.allclose(custom.heatmap, default.heatmap)
    assert torch.equal(custom.partition, default.partition)


def test_straight_line_tensor_equals_the_default():
    model, images = make_case(5, n=2)
    black, _ = _straight(images)
    t = torch.linspace(0, 1, 13).view(1, -1, 1, 1, 1)
    points = black.unsqueeze(1) + t * (images - black).unsqueeze(1)  # (N, P, C, H, W)
    points[:, -1] = images
    default = RSIGradCAM(model, "conv", steps=12, **KW)(images)
    custom = RSIGradCAM(model, "conv", path=points, **KW)(images)
    assert torch.allclose(custom.attributions, default.attributions, rtol=1e-5, atol=1e-8)
    one = RSIGradCAM(model, "conv", path=points[1], **KW)(images[1:])  # (P, C, H, W)
    assert torch.allclose(one.attributions[0], custom.attributions[1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("rule", ["trapezoid", "left", "right"])
def test_nonlinear_callable_path_matches_the_reference_sum(rule):
    model, images = make_case(5, n=2)
    before = model_state(model)
    exp = RSIGradCAM(model, "conv", steps=10, rule=rule, path=_curved, **KW)(images)
    assert_same_state(before, model_state(model))
    ts = torch.linspace(0, 1, 11, dtype=torch.float64)
    m64, x64 = model.double(), images.double()
    for n in range(2):
        points = list(_curved(x64[n : n + 1].expand(11, -1, -1, -1), ts))
        ref = reference_rsi(m64, "conv", x64[n], points[0], 10, rule=rule, points=points)
        assert int(exp.targets[n]) == ref["target"]
        assert _rel(exp.attributions[n], ref["attributions"]) < 1e-9
        assert (exp.heatmap[n] - ref["heatmap"]).abs().max() < 1e-6
        assert exp.baseline_scores[n].item() == pytest.approx(ref["baseline_score"], rel=1e-9)
    model.float()


def test_nonlinear_tensor_path_matches_the_reference_sum():
    model, images = make_case(5, n=1)
    ts = torch.tensor([0.0, 0.1, 0.15, 0.4, 0.7, 1.0], dtype=torch.float64)
    x64 = images.double()
    points = _curved(x64.expand(6, -1, -1, -1), ts)
    exp = RSIGradCAM(model, "conv", path=points, **KW)(images)
    ref = reference_rsi(model.double(), "conv", x64[0], points[0], 5, points=list(points))
    model.float()
    assert _rel(exp.attributions[0], ref["attributions"]) < 1e-9
    assert exp.n_evaluations == 6


def test_callable_path_with_adaptive_steps_and_several_layers():
    model, images = make_case(5, n=2)
    both = RSIGradCAM(
        model, ["features", "conv"], steps="auto", tolerance=0.1, path=_curved, **KW
    )(images)
    assert torch.equal(both["features"].partition, both["conv"].partition)
    exp = both["conv"]
    for n in range(2):
        part = exp[n].partition
        ts = part[: int((part < 1).sum()) + 1]
        points = list(_curved(images[n : n + 1].double().expand(ts.numel(), -1, -1, -1), ts))
        ref = reference_rsi(model.double(), "conv", images[n].double(), points[0], 1, points=points)
        model.float()
        assert _rel(exp.attributions[n], ref["attributions"]) < 1e-9


def test_path_end_must_be_the_input():
    model, images = make_case(5, n=1)
    black, _ = _straight(images)
    points = torch.stack([black[0], images[0] * 0.5])
    with pytest.raises(ValueError, match="last point is not the input"):
        RSIGradCAM(model, "conv", path=points)(images)
    with pytest.raises(ValueError, match=r"\(N, P, C, H, W\)"):
        RSIGradCAM(model, "conv", path=torch.zeros(4, 3, 5, 5))(images)
    with pytest.raises(ValueError, match="paths for 1 image"):
        RSIGradCAM(model, "conv", path=points.unsqueeze(0))(torch.cat([images, images]))


def test_callable_path_that_misses_the_input_warns():
    model, images = make_case(5, n=1)
    with pytest.warns(RuntimeWarning, match="differs from the input"):
        RSIGradCAM(model, "conv", steps=4, path=lambda x, t: x * t.view(-1, 1, 1, 1) * 0.5)(
            images
        )
    with pytest.raises(ValueError, match="one point per row"):
        RSIGradCAM(model, "conv", steps=4, path=lambda x, t: x[:1])(images)


def test_path_argument_conflicts_are_explained():
    model, _ = make_case(5, n=1)
    points = torch.zeros(3, 3, 12, 12)
    with pytest.raises(ValueError, match="steps='auto' and partition"):
        RSIGradCAM(model, "conv", steps="auto", path=points)
    images = torch.rand(1, 3, 12, 12)
    whole = torch.stack([torch.zeros_like(images[0]), images[0]]).round().long()
    with pytest.raises(ValueError, match="floating point"):  # not cast silently
        RSIGradCAM(model, "conv", path=whole)(images.round())
    from rsigradcam import IntegratedGradCAM, IntegratedGradients

    for method in (RSIGradCAM, IntegratedGradCAM, IntegratedGradients):  # never dropped silently
        layer = "input" if method is IntegratedGradients else "conv"
        with pytest.raises(ValueError, match="steps='auto' and partition"):
            method(model, layer, path=points, partition=[0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="several baselines"):
        RSIGradCAM(model, "conv", baseline=["black", "blur"], path=_curved)
    with pytest.raises(TypeError, match="path must be"):
        RSIGradCAM(model, "conv", path="straight")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        GradCAM(model, "conv", path=_curved)  # type: ignore[call-arg]


def test_comparators_take_paths_and_baselines():
    from rsigradcam import IntegratedGradCAM, IntegratedGradients

    model, images = make_case(5, n=2)
    _, path = _straight(images)
    for cls in (IntegratedGradCAM, IntegratedGradients):
        layer = "conv" if cls is IntegratedGradCAM else "input"
        default = cls(model, layer, steps=6, **KW)(images)
        custom = cls(model, layer, steps=6, path=path, **KW)(images)
        assert torch.allclose(custom.heatmap, default.heatmap, atol=1e-6)
        several = cls(model, layer, steps=6, baseline=["black", "black"], **KW)(images)
        assert torch.allclose(several.attributions, default.attributions, rtol=1e-9, atol=1e-12)


def test_partition_lists_are_read_in_float64():
    from rsigradcam.core.path import check_partition

    assert check_partition([0, 0.1, 1])[1].item() == 0.1
