"""Grad-CAM++, LayerCAM, Integrated Grad-CAM and Integrated Gradients.

Each against the slow reference loops in tests/reference/comparators.py; Integrated
Gradients also against Captum. Captum's ``IntegratedGradients`` with ``n_steps=m`` and
``method="riemann_left"`` (alphas 0, 1/m, ..., (m-1)/m, each step 1/m) is our
``rule="left"`` with ``steps=m``, and ``"riemann_right"`` is ``rule="right"``. Its
``"riemann_trapezoid"`` with ``n_steps=m+1`` evaluates our m + 1 points but weights each
interval by 1/(m+1) instead of 1/m, so it is our trapezoid times m / (m + 1).
"""

from __future__ import annotations

import copy

import pytest
import torch
from captum.attr import IntegratedGradients as CaptumIntegratedGradients
from skimage import data as skdata
from torch import nn

from rsigradcam import (
    Explanation,
    GradCAMPlusPlus,
    IntegratedGradCAM,
    IntegratedGradients,
    LayerCAM,
)
from rsigradcam.baselines import BlackBaseline
from rsigradcam.constants import IMAGENET_NORMALIZE
from rsigradcam.io import load_image
from rsigradcam.models import efficientnet_lite0
from tests.helpers import assert_same_state, make_case, make_cnn, model_state
from tests.reference.comparators import (
    reference_gradcampp,
    reference_integrated_gradcam,
    reference_integrated_gradients,
    reference_layercam,
)

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def _check(exp: Explanation, n: int, ref: dict, fields=("layer_map",), tol: float = 1e-4) -> None:
    assert int(exp.targets[n]) == ref["target"]
    # The heatmap (the layer map normalised) and the scores follow the layer map's relative
    # tolerance: 1e-5 at the default tol. A float32 EfficientNet batched against single
    # forwards needs tol = 1e-3 (differences of 1.2e-5 relative in the score, 1.8e-5 in
    # the heatmap, depending on the CPU's kernels).
    assert (exp.heatmap[n] - ref["heatmap"]).abs().max() < tol / 10
    for field in fields:
        assert _rel(getattr(exp, field)[n], ref[field]) < tol, field
    assert exp.scores[n].item() == pytest.approx(ref["score"], rel=tol / 10, abs=1e-6)
    if "baseline_score" in ref:
        assert exp.baseline_scores[n].item() == pytest.approx(
            ref["baseline_score"], rel=tol / 10, abs=1e-6
        )


def _baselines(images: torch.Tensor) -> torch.Tensor:
    return BlackBaseline(*IMAGENET_NORMALIZE)(images)


# ------------------------------------------------------------------------------------------
# Against the reference loops
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("output", ["logits", "softmax"])
@pytest.mark.parametrize("layer", ["conv", "features"])
def test_gradcampp_matches_reference(layer, output):
    model, images = make_case(5)
    exp = GradCAMPlusPlus(model, layer, output=output)(images)
    assert exp.method == "gradcam++"
    for n in range(images.shape[0]):
        ref = reference_gradcampp(model, layer, images[n], output)
        _check(exp, n, ref, ("weights", "layer_map"))
        assert torch.allclose(exp.weights[n], exp.attributions[n].sum(dim=(1, 2)))


@pytest.mark.parametrize("output", ["logits", "softmax"])
@pytest.mark.parametrize("layer", ["conv", "features.1"])
def test_layercam_matches_reference(layer, output):
    model, images = make_case(6)
    exp = LayerCAM(model, layer, output=output)(images, targets=[0, 1, 2])
    assert exp.method == "layercam"
    for n, target in enumerate([0, 1, 2]):
        ref = reference_layercam(model, layer, images[n], output, target)
        _check(exp, n, ref)
        assert bool((exp.attributions[n] >= 0).all())


@pytest.mark.parametrize("batch_size", [1, 2, 5, None])
def test_integrated_gradcam_matches_reference_in_any_chunking(batch_size):
    # Chunks of 1 and 2 rows split an image's input (t = 1) from its baseline (t = 0).
    model, images = make_case(7)
    exp = IntegratedGradCAM(model, "conv", steps=6, batch_size=batch_size)(images)
    assert exp.method == "integrated-gradcam" and exp.n_evaluations == 7
    baselines = _baselines(images)
    for n in range(images.shape[0]):
        ref = reference_integrated_gradcam(model, "conv", images[n], baselines[n], 6)
        _check(exp, n, ref)
    torch.testing.assert_close(exp.layer_map, exp.attributions.sum(dim=1).clamp(min=0))
    torch.testing.assert_close(exp.weights, exp.attributions.mean(dim=(2, 3)))
    assert bool(exp.completeness_error.isnan().all())


def test_integrated_gradcam_partition_softmax_and_targets_match_reference():
    model, images = make_case(8, n=2)
    partition = [0.0, 0.1, 0.35, 0.5, 0.9, 1.0]
    exp = IntegratedGradCAM(
        model, "features", output="softmax", baseline="zeros", partition=partition
    )(images, targets=[4, 1])
    for n, target in enumerate([4, 1]):
        ref = reference_integrated_gradcam(
            model, "features", images[n], torch.zeros_like(images[n]), 0, "softmax", target,
            partition,
        )
        _check(exp, n, ref)
    assert exp.partition.tolist() == pytest.approx(partition)


@pytest.mark.parametrize("rule", ["trapezoid", "left", "right"])
@pytest.mark.parametrize("output", ["softmax", "logits"])
def test_integrated_gradients_matches_reference(rule, output):
    model, images = make_case(9, n=2)
    exp = IntegratedGradients(model, steps=5, rule=rule, output=output)(images)
    assert exp.layer == "input" and exp.method == "ig"
    assert exp.attributions.shape == images.shape and exp.layer_map.shape == (2, 12, 12)
    baselines = _baselines(images)
    for n in range(images.shape[0]):
        ref = reference_integrated_gradients(model, images[n], baselines[n], 5, rule, output)
        _check(exp, n, ref, ("attributions", "layer_map"))


def test_efficientnet_lite0_matches_reference():
    model = efficientnet_lite0()
    image, _ = load_image(skdata.chelsea(), size=64)
    baseline = _baselines(image)[0]
    layer = "blocks.10"
    cases = [
        (GradCAMPlusPlus(model, layer)(image), reference_gradcampp(model, layer, image[0])),
        (LayerCAM(model, layer)(image), reference_layercam(model, layer, image[0])),
        (
            IntegratedGradCAM(model, layer, steps=4)(image),
            reference_integrated_gradcam(model, layer, image[0], baseline, 4),
        ),
    ]
    for exp, ref in cases:
        assert isinstance(exp, Explanation)
        _check(exp, 0, ref, tol=1e-3)


# ------------------------------------------------------------------------------------------
# Integrated Gradients against Captum, and completeness
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["trapezoid", "left", "right"])
@pytest.mark.parametrize("output", ["softmax", "logits"])
def test_integrated_gradients_matches_captum(rule, output):
    model, images = make_case(10)
    steps = 8
    exp = IntegratedGradients(model, steps=steps, rule=rule, output=output)(images)

    def forward(x):
        out = model(x)
        return torch.softmax(out, dim=1) if output == "softmax" else out

    n_steps, scale = (steps + 1, (steps + 1) / steps) if rule == "trapezoid" else (steps, 1.0)
    expected = scale * CaptumIntegratedGradients(forward).attribute(
        images,
        baselines=_baselines(images),
        target=exp.targets.tolist(),
        n_steps=n_steps,
        method=f"riemann_{rule}",
    )
    scale_max = float(expected.detach().abs().max())
    torch.testing.assert_close(exp.attributions, expected, rtol=1e-4, atol=1e-5 * scale_max)


def test_integrated_gradients_completeness_in_float64():
    model = make_cnn(seed=14, dtype=torch.float64, act=nn.SiLU)
    torch.manual_seed(15)
    images = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    coarse = IntegratedGradients(model, steps=4)(images)
    fine = IntegratedGradients(model, steps=256)(images)
    assert bool((fine.completeness_error < coarse.completeness_error).all())
    assert float(fine.completeness_error.max()) < 1e-4
    torch.testing.assert_close(
        fine.attributions.sum(dim=(1, 2, 3)),
        fine.scores - fine.baseline_scores,
        rtol=1e-4,
        atol=0.0,
    )


def test_integrated_gradients_pixel_maps_and_dtype():
    model, images = make_case(11, n=2)
    positive = IntegratedGradients(model, steps=4)(images)
    absolute = IntegratedGradients(model, steps=4, pixel_map="absolute")(images)
    torch.testing.assert_close(positive.attributions, absolute.attributions)
    total = positive.attributions.sum(dim=1)
    torch.testing.assert_close(positive.layer_map, torch.relu(total))
    torch.testing.assert_close(absolute.layer_map, total.abs())
    torch.testing.assert_close(positive.weights, positive.attributions.mean(dim=(2, 3)))
    exp = IntegratedGradients(model, steps=4, dtype=torch.float64)(images)
    assert exp.attributions.dtype == torch.float64
    torch.testing.assert_close(
        exp.attributions.float(), positive.attributions, rtol=1e-4, atol=1e-6
    )


# ------------------------------------------------------------------------------------------
# The shared contract: same call, same Explanation, model untouched
# ------------------------------------------------------------------------------------------

LAYER_METHODS = [
    lambda model, layer: GradCAMPlusPlus(model, layer),
    lambda model, layer: LayerCAM(model, layer),
    lambda model, layer: IntegratedGradCAM(model, layer, steps=4, batch_size=3),
]


@pytest.mark.parametrize("build", LAYER_METHODS)
def test_multi_layer_equals_single_layer(build):
    model, images = make_case(12)
    layers = ["features.1", "conv"]
    together = build(model, layers)(images)
    assert isinstance(together, dict) and list(together) == layers
    for layer in layers:
        alone = build(model, layer)(images)
        for field in ("heatmap", "layer_map", "weights", "attributions", "scores"):
            torch.testing.assert_close(getattr(together[layer], field), getattr(alone, field))


@pytest.mark.parametrize("build", LAYER_METHODS)
def test_batch_equals_single_images(build):
    model, images = make_case(13)
    batch = build(model, "conv")(images)
    for n in range(images.shape[0]):
        single = build(model, "conv")(images[n : n + 1])
        torch.testing.assert_close(batch.layer_map[n : n + 1], single.layer_map)


@pytest.mark.parametrize(
    "call",
    [
        lambda model, images: GradCAMPlusPlus(model, ["features", "conv"])(images),
        lambda model, images: LayerCAM(model, "conv", dtype=torch.float64)(images),
        lambda model, images: IntegratedGradCAM(model, "conv", steps=3)(images),
        lambda model, images: IntegratedGradients(model, steps=3)(images),
        lambda model, images: IntegratedGradients(model, steps=3, dtype=torch.float64)(images),
        lambda model, images: IntegratedGradients(model, steps=3)(images, targets=99),
    ],
)
def test_state_restored(call):
    model, images = make_case(13, n=2)
    model.train()
    model.features.eval()
    model.fc.weight.requires_grad_(False)
    model.conv.weight.grad = torch.full_like(model.conv.weight, 0.5)
    names = [name for name, _ in model.named_modules()]
    before = model_state(model)
    try:
        call(model, images)
    except ValueError as err:
        assert "out of range" in str(err)
    assert_same_state(before, model_state(model))
    assert [name for name, _ in model.named_modules()] == names
    assert model.conv.bias.grad is None


def test_clear_errors():
    model, images = make_case(5, n=1)
    with pytest.raises(ValueError, match="layer must be 'input'"):
        IntegratedGradients(model, "conv")
    with pytest.raises(ValueError, match="layer must be 'input'"):
        IntegratedGradients(model, ["input", "conv"])
    assert IntegratedGradients(model, "auto", steps=2)(images).layer == "input"
    assert list(IntegratedGradients(model, ["input"], steps=2)(images)) == ["input"]
    with pytest.raises(ValueError, match="pixel_map"):
        IntegratedGradients(model, pixel_map="signed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rule"):
        IntegratedGradients(model, rule="midpoint")  # type: ignore[arg-type]
    for cls in (IntegratedGradCAM, IntegratedGradients):
        with pytest.raises(ValueError, match="steps"):
            cls(model, steps=0)
        with pytest.raises(ValueError, match="partition"):
            cls(model, partition=[0.0, 0.7, 0.5, 1.0])
    with pytest.raises(ValueError, match="does not exist"):
        GradCAMPlusPlus(model, "nope")
    with pytest.raises(ValueError, match="output"):
        LayerCAM(model, "conv", output="probabilities")  # type: ignore[arg-type]


def test_integrated_gradients_leaves_a_deep_copy_alone():
    # The input tap wraps the model the call runs on; a float64 copy is wrapped afresh.
    model, images = make_case(14, n=1)
    reference = copy.deepcopy(model)
    IntegratedGradients(model, steps=2, dtype=torch.float64)(images)
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        assert a.dtype == torch.float32 and torch.equal(a, b)
