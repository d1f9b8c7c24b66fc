"""RSIGradCAM against the slow reference loop in tests/reference/loop.py."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch

from rsigradcam import RSIGradCAM
from rsigradcam.baselines import BlackBaseline
from rsigradcam.constants import IMAGENET_NORMALIZE
from tests.helpers import make_case
from tests.reference.loop import reference_rsi

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

VARIANTS = [(False, False), (True, False), (False, True), (True, True)]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def _compare(model, layer, images, steps, rule, output, grad_relu, guided, dtype=None):
    exp = RSIGradCAM(
        model,
        layer,
        steps=steps,
        rule=rule,
        output=output,
        grad_relu=grad_relu,
        guided=guided,
        dtype=dtype,
    )(images)
    if dtype is not None:
        model, images = copy.deepcopy(model).to(dtype), images.to(dtype)
    baselines = BlackBaseline(*IMAGENET_NORMALIZE)(images)
    for n in range(images.shape[0]):
        ref = reference_rsi(
            model, layer, images[n], baselines[n], steps, rule, output, grad_relu, guided
        )
        assert int(exp.targets[n]) == ref["target"]
        assert (exp.heatmap[n] - ref["heatmap"]).abs().max() < 1e-5
        assert _rel(exp.weights[n], ref["weights"]) < 1e-4
        assert _rel(exp.attributions[n], ref["attributions"]) < 1e-4
        assert _rel(exp.layer_map[n], ref["layer_map"]) < 1e-4
        assert exp.scores[n].item() == pytest.approx(ref["score"], rel=1e-5, abs=1e-5)
        assert exp.baseline_scores[n].item() == pytest.approx(
            ref["baseline_score"], rel=1e-5, abs=1e-5
        )


@pytest.mark.parametrize(
    ("rule", "output", "variant"),
    list(itertools.product(["trapezoid", "left", "right"], ["softmax", "logits"], VARIANTS)),
)
def test_small_cnn_matches_reference(rule, output, variant):
    model, images = make_case(5, n=2)
    grad_relu, guided = variant
    _compare(model, "conv", images, 12, rule, output, grad_relu, guided)


@pytest.mark.parametrize("layer", ["features.1", "features", "act"])
def test_other_layers_match_reference(layer):
    model, images = make_case(6, n=2, size=10)
    _compare(model, layer, images, 9, "trapezoid", "softmax", False, False)


def test_explicit_targets_match_reference():
    model, images = make_case(13, n=2)
    exp = RSIGradCAM(model, "conv", steps=10)(images, targets=[3, 1])
    baselines = BlackBaseline(*IMAGENET_NORMALIZE)(images)
    for n, target in enumerate([3, 1]):
        ref = reference_rsi(model, "conv", images[n], baselines[n], 10, target=target)
        assert (exp.heatmap[n] - ref["heatmap"]).abs().max() < 1e-5
        assert _rel(exp.weights[n], ref["weights"]) < 1e-4


@pytest.fixture(scope="module")
def embedded():
    from skimage import data

    from rsigradcam.io import load_image
    from rsigradcam.models import efficientnet_lite0

    image, _ = load_image(data.chelsea(), size=96)
    return efficientnet_lite0(), image


@pytest.mark.parametrize(
    ("rule", "output", "variant"),
    list(itertools.product(["trapezoid", "left", "right"], ["softmax", "logits"], VARIANTS)),
)
@pytest.mark.slow
def test_embedded_model_matches_reference(embedded, rule, output, variant):
    model, image = embedded
    grad_relu, guided = variant
    # float64 on both sides: a deep network in float32 differs between batched and
    # single-image convolutions by ~1e-5 after min-max normalisation.
    _compare(model, "blocks.10", image, 5, rule, output, grad_relu, guided, torch.float64)


@pytest.mark.parametrize("layer", ["blocks.5", "head", "blocks.15"])
def test_embedded_model_other_layers_match_reference(embedded, layer):
    model, image = embedded
    _compare(model, layer, image, 6, "trapezoid", "softmax", False, False, torch.float64)


def test_embedded_model_float32_matches_reference(embedded):
    model, image = embedded
    _compare(model, "head", image, 6, "trapezoid", "softmax", False, False)


@pytest.mark.parametrize("rule", ["trapezoid", "left", "right"])
def test_explicit_partition_matches_reference(rule):
    model, images = make_case(14, n=2)
    ts = [0.0, 0.05, 0.1, 0.3, 0.31, 0.6, 0.9, 1.0]
    partition = torch.tensor(ts, dtype=torch.float64)
    exp = RSIGradCAM(model, "conv", rule=rule, partition=partition)(images)
    assert exp.partition.tolist() == ts and exp.n_evaluations == len(ts)
    baselines = BlackBaseline(*IMAGENET_NORMALIZE)(images)
    for n in range(2):
        ref = reference_rsi(model, "conv", images[n], baselines[n], 0, rule, partition=ts)
        assert (exp.heatmap[n] - ref["heatmap"]).abs().max() < 1e-5
        assert _rel(exp.attributions[n], ref["attributions"]) < 1e-4


@pytest.mark.parametrize(
    "bad", [[0.0, 0.5], [0.1, 1.0], [0.0, 0.6, 0.4, 1.0], [[0.0, 1.0]], [1.0]]
)
def test_bad_partitions_are_refused(bad):
    model = make_case(14)[0]
    with pytest.raises(ValueError, match="partition must"):
        RSIGradCAM(model, "conv", partition=bad)
