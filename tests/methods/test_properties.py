"""Exact properties: completeness, linearity in the baseline, batching and chunking."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from rsigradcam import GradCAM, RSIGradCAM
from tests.helpers import make_case, make_cnn

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def test_completeness_float64_converges():
    # The layer cuts the graph: every path from the input to y passes through `conv`.
    # Smooth activations make the trapezoid error fall steadily (ReLU kinks make it jitter).
    model = make_cnn(seed=14, dtype=torch.float64, act=nn.SiLU)
    torch.manual_seed(15)
    images = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    errors = []
    for steps in (4, 16, 64, 512):
        exp = RSIGradCAM(model, "conv", steps=steps)(images)
        errors.append(exp.completeness_error)
    for coarse, fine in itertools.pairwise(errors):
        assert bool((fine < coarse).all()), errors
    assert float(errors[-1].max()) < 1e-3


def test_completeness_with_relu_and_the_dtype_argument():
    model, images = make_case(14, n=2)
    coarse = RSIGradCAM(model, "conv", steps=8, dtype=torch.float64)(images)
    exp = RSIGradCAM(model, "conv", steps=512, dtype=torch.float64)(images)
    assert bool((exp.completeness_error < coarse.completeness_error / 10).all())
    assert exp.attributions.dtype == torch.float64
    assert float(exp.completeness_error.max()) < 1e-3
    assert next(model.parameters()).dtype == torch.float32  # the model is not cast


def test_completeness_is_exact_for_a_linear_head():
    # y = W . pool(A) + b is linear in A, so every rule gives y(x) - y(x') exactly.
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 3),
    ).double()
    images = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    for rule in ("trapezoid", "left", "right"):
        exp = RSIGradCAM(model, "1", steps=3, rule=rule, output="logits")(images)
        assert float(exp.completeness_error.max()) < 1e-12


def test_linear_in_the_baseline():
    # With a linear layer and a linear head, IG = W * (A(x) - A(x')) is affine in x'.
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 3),
    ).double()
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    b1, b2 = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    mid = 0.3 * b1 + 0.7 * b2

    def attr(b):
        return RSIGradCAM(model, "0", steps=5, output="logits", baseline=b)(x, targets=1)

    a1, a2, am = attr(b1), attr(b2), attr(mid)
    torch.testing.assert_close(am.attributions, 0.3 * a1.attributions + 0.7 * a2.attributions)


def test_batch_equals_single_calls():
    model, images = make_case(13, n=4)
    cam = RSIGradCAM(model, "conv", steps=20)
    batch = cam(images)
    for n in range(images.shape[0]):
        single = cam(images[n : n + 1])
        assert (batch.heatmap[n] - single.heatmap[0]).abs().max() < 1e-5
        torch.testing.assert_close(batch.weights[n], single.weights[0], rtol=1e-5, atol=1e-7)
        assert batch.targets[n] == single.targets[0]


@pytest.mark.parametrize("rule", ["trapezoid", "left", "right"])
def test_chunk_size_does_not_change_results(rule):
    model, images = make_case(17, n=3)
    results = [
        RSIGradCAM(model, ["features", "conv"], steps=10, rule=rule, batch_size=b)(images)
        for b in (1, 7, 33, None)
    ]
    for other in results[1:]:
        for layer in ("features", "conv"):
            torch.testing.assert_close(other[layer].attributions, results[0][layer].attributions)
            assert (other[layer].heatmap - results[0][layer].heatmap).abs().max() < 1e-5


def test_multi_layer_equals_single_layer():
    model, images = make_case(18, n=2)
    multi = RSIGradCAM(model, ["features.1", "features", "conv", "act"], steps=12)(images)
    assert isinstance(multi, dict)
    for layer, exp in multi.items():
        single = RSIGradCAM(model, layer, steps=12)(images)
        assert (exp.heatmap - single.heatmap).abs().max() < 1e-5
        torch.testing.assert_close(exp.attributions, single.attributions, rtol=1e-5, atol=1e-7)


def test_scores_and_targets_follow_the_model():
    model, images = make_case(15, n=3)
    exp = RSIGradCAM(model, "conv", steps=4)(images)
    with torch.no_grad():
        probs = torch.softmax(model(images), dim=1)
    assert torch.equal(exp.targets, probs.argmax(dim=1))
    torch.testing.assert_close(exp.scores, probs.max(dim=1).values)
    assert exp.partition.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert exp.n_evaluations == 5
    assert exp.method == "rsi" and exp.layer == "conv"


def test_callable_target():
    model, images = make_case(15, n=2)
    exp = RSIGradCAM(model, "conv", steps=8, output="logits")(
        images, targets=lambda out: out[:, 2] - out[:, 0]
    )
    with torch.no_grad():
        out = model(images)
    torch.testing.assert_close(exp.scores, out[:, 2] - out[:, 0])
    assert exp.targets.tolist() == [-1, -1]


def test_heatmap_contract():
    model, images = make_case(13, n=3)
    exp = RSIGradCAM(model, "conv", steps=8)(images)
    assert exp.heatmap.shape == (3, 12, 12) and exp.heatmap.dtype == torch.float32
    assert float(exp.heatmap.min()) == 0.0 and float(exp.heatmap.amax(dim=(1, 2)).min()) == 1.0
    assert exp.layer_map.shape == (3, 6, 6)
    assert exp.weights.shape == (3, 12) and exp.attributions.shape == (3, 12, 6, 6)
    assert exp.targets.dtype == torch.long


def test_gradcam_is_rsi_shape_and_uses_logits():
    model, images = make_case(14, n=2)
    exp = GradCAM(model, "conv")(images)
    assert exp.n_evaluations == 1 and exp.method == "gradcam"
    with torch.no_grad():
        logits = model(images)
    torch.testing.assert_close(exp.scores, logits.max(dim=1).values)
    assert bool(torch.isnan(exp.baseline_scores).all())
    torch.testing.assert_close(exp.weights, exp.attributions.mean(dim=(2, 3)))


def test_explanation_indexing_and_device_move():
    model, images = make_case(13, n=3)
    exp = RSIGradCAM(model, "conv", steps=4)(images)
    one = exp[1]
    assert len(one) == 1 and torch.equal(one.heatmap[0], exp.heatmap[1])
    assert torch.equal(exp[-1].weights[0], exp.weights[2])
    assert exp.cpu().heatmap.device.type == "cpu"
    with pytest.raises(IndexError):
        exp[3]


def test_works_under_no_grad_and_inference_mode():
    model, images = make_case(13, n=1)
    expected = RSIGradCAM(model, "conv", steps=4)(images)
    with torch.no_grad():
        a = RSIGradCAM(model, "conv", steps=4)(images)
    with torch.inference_mode():
        b = RSIGradCAM(model, "conv", steps=4)(images.clone())
    torch.testing.assert_close(a.attributions, expected.attributions)
    torch.testing.assert_close(b.attributions, expected.attributions)
