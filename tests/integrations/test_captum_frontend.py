"""The Captum-style front-ends against rsigradcam's methods, the reference loop and Captum.

Captum's own LayerGradCam is compared in test_frontends_match_their_libraries.py.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

pytest.importorskip("captum")
from captum.attr import LayerActivation, LayerAttribution, LayerConductance
from captum.attr import visualization as viz

import rsigradcam
from rsigradcam.integrations.captum import REFUSED_METHODS, LayerGradCam, LayerRSIGradCAM
from tests.helpers import make_case
from tests.reference.loop import reference_rsi

STEPS = 8

# A map that is zero everywhere would make an equality trivial: such cases fail here.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _core(model, images, targets, **options):
    options = {"steps": STEPS, "baseline": "zeros", "output": "logits", **options}
    exp = rsigradcam.RSIGradCAM(model, "conv", **options)(images, targets)
    return exp


@pytest.mark.parametrize("output", ["logits", "softmax"])
def test_layer_map_equals_the_core_and_the_reference_loop(output):
    model, images = make_case(2)
    attr = LayerRSIGradCAM(model, model.conv).attribute(
        images, target=[1, 0, 3], n_steps=STEPS, output=output, relu_attributions=True
    )
    exp = _core(model, images, [1, 0, 3], output=output)
    assert attr.shape == (3, 1, 6, 6) and not attr.requires_grad
    torch.testing.assert_close(attr[:, 0], exp.layer_map)
    zeros = torch.zeros_like(images[0])
    for i, target in enumerate((1, 0, 3)):
        ref = reference_rsi(model, "conv", images[i], zeros, STEPS, output=output, target=target)
        torch.testing.assert_close(attr[i, 0], ref["layer_map"], rtol=1e-4, atol=1e-5)


def test_defaults_follow_captum_signed_map_top1_and_zero_baseline():
    model, images = make_case(2)
    attr = LayerRSIGradCAM(model, model.conv).attribute(images, n_steps=STEPS)
    exp = _core(model, images, None)
    activation = LayerActivation(model, model.conv).attribute(images)
    signed = torch.einsum("nk,nkhw->nhw", exp.weights, activation)
    torch.testing.assert_close(attr[:, 0], signed, rtol=1e-5, atol=1e-6)  # as LayerGradCam
    assert bool((attr < 0).any())
    torch.testing.assert_close(torch.relu(attr[:, 0]), exp.layer_map, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        assert exp.targets.tolist() == model(images).argmax(dim=1).tolist()


def test_relu_false_is_the_signed_map_and_delta_is_signed_completeness():
    model, images = make_case(2)
    cam = LayerRSIGradCAM(model, model.conv)
    signed, delta = cam.attribute(
        images, target=2, n_steps=STEPS, relu_attributions=False, return_convergence_delta=True
    )
    per_channel = cam.attribute(images, 2, n_steps=STEPS, attr_dim_summation=False)
    assert per_channel.shape == (3, 12, 6, 6)
    torch.testing.assert_close(per_channel.sum(dim=1, keepdim=True), signed)
    exp = _core(model, images, 2)
    activation = LayerActivation(model, model.conv).attribute(images)
    expected = torch.einsum("nk,nkhw->nhw", exp.weights, activation)
    torch.testing.assert_close(signed[:, 0], expected, rtol=1e-5, atol=1e-6)
    assert bool((signed < 0).any())  # the ReLU really is left out
    relu = cam.attribute(images, 2, n_steps=STEPS, relu_attributions=True)
    torch.testing.assert_close(torch.relu(signed), relu)
    gap = exp.attributions.sum(dim=(1, 2, 3)) - (exp.scores - exp.baseline_scores)
    assert delta.shape == (3,)
    torch.testing.assert_close(delta, gap)
    zeros = torch.zeros_like(images[0])
    ref = reference_rsi(model, "conv", images[0], zeros, STEPS, output="logits", target=2)
    ref_gap = float(ref["attributions"].sum()) - (ref["score"] - ref["baseline_score"])
    assert float(delta[0]) == pytest.approx(ref_gap, abs=1e-4)
    finer = cam.attribute(images, 2, n_steps=64, return_convergence_delta=True)[1]
    assert float(finer.abs().max()) < float(delta.abs().max())


def test_riemann_left_matches_captum_layer_conductance():
    model, images = make_case(5)
    attr, delta = LayerRSIGradCAM(model, model.conv).attribute(
        images, target=[0, 1, 2], n_steps=STEPS, method="riemann_left",
        relu_attributions=False, return_convergence_delta=True,
    )
    # Captum's LayerConductance with its "riemann_trapezoid" alphas is the left rule.
    conductance, captum_delta = LayerConductance(model, model.conv).attribute(
        images, baselines=0.0, target=[0, 1, 2], n_steps=STEPS, method="riemann_trapezoid",
        return_convergence_delta=True,
    )
    activation = LayerActivation(model, model.conv).attribute(images)
    expected = torch.einsum("nk,nkhw->nhw", conductance.mean(dim=(2, 3)), activation).detach()
    scale = float(expected.abs().max())
    torch.testing.assert_close(attr[:, 0], expected, rtol=1e-4, atol=1e-5 * scale)
    torch.testing.assert_close(delta, captum_delta.detach(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("method", "rule"), [("riemann_right", "right"), ("riemann_left", "left")])
def test_methods_map_to_rules(method, rule):
    model, images = make_case(2)
    attr = LayerRSIGradCAM(model, model.conv).attribute(
        images, target=1, n_steps=STEPS, method=method, relu_attributions=True
    )
    torch.testing.assert_close(attr[:, 0], _core(model, images, 1, rule=rule).layer_map)


def test_target_conventions():
    model, images = make_case(2)
    cam = LayerRSIGradCAM(model, model.conv)
    per_image = cam.attribute(images, target=[2, 2, 2], n_steps=STEPS)
    for target in (2, np.int64(2), torch.tensor(2), torch.tensor([2]), torch.tensor([2, 2, 2])):
        torch.testing.assert_close(cam.attribute(images, target=target, n_steps=STEPS), per_image)
    mixed = cam.attribute(images, target=torch.tensor([0, 1, 3]), n_steps=STEPS)
    # The default map is signed; its ReLU is the library's layer map.
    torch.testing.assert_close(torch.relu(mixed[:, 0]), _core(model, images, [0, 1, 3]).layer_map)


def test_baseline_conventions():
    model, images = make_case(2)
    cam = LayerRSIGradCAM(model, model.conv)
    at_zero = cam.attribute(images, target=1, n_steps=STEPS)
    torch.testing.assert_close(cam.attribute(images, 1, 0.0, n_steps=STEPS), at_zero)
    torch.testing.assert_close(cam.attribute(images, 1, (torch.tensor(0.0),), STEPS), at_zero)
    grey = cam.attribute(images, target=1, baselines=-0.5, n_steps=STEPS)
    expected = _core(model, images, 1, baseline=torch.full_like(images, -0.5)).layer_map
    torch.testing.assert_close(torch.relu(grey[:, 0]), expected)
    one = torch.randn(1, *images.shape[1:])
    want = _core(model, images, 1, baseline=one.expand(images.shape).clone()).layer_map
    for given in (one, one[0], one.expand(images.shape).clone()):  # (1,C,H,W) (C,H,W) (N,C,H,W)
        torch.testing.assert_close(torch.relu(cam.attribute(images, 1, given, STEPS)[:, 0]), want)

def test_internal_batch_size_is_the_chunk():
    model, images = make_case(2)
    sizes: list[int] = []
    handle = model.conv.register_forward_hook(lambda m, a, out: sizes.append(out.shape[0]))
    try:
        attr = LayerRSIGradCAM(model, model.conv).attribute(
            images, target=1, n_steps=STEPS, internal_batch_size=4
        )
    finally:
        handle.remove()
    assert max(sizes) == 4 and sum(sizes) >= 3 * (STEPS + 1)
    torch.testing.assert_close(attr, LayerRSIGradCAM(model, model.conv).attribute(
        images, target=1, n_steps=STEPS))


def test_callable_forward_funcs():
    model, images = make_case(2)
    expected = LayerRSIGradCAM(model, model.conv).attribute(images, target=1, n_steps=STEPS)
    for forward in (model.forward, lambda x: model(x)):
        got = LayerRSIGradCAM(forward, model.conv).attribute(images, target=1, n_steps=STEPS)
        torch.testing.assert_close(got, expected)


def test_captum_helpers_take_the_map():
    model, images = make_case(2)
    attr = LayerRSIGradCAM(model, model.conv).attribute(images, target=1, n_steps=STEPS)
    up = LayerAttribution.interpolate(attr, images.shape[2:], interpolate_mode="bilinear")
    assert up.shape == (3, 1, 12, 12)
    heat = up[0].permute(1, 2, 0).detach().numpy()
    rgb = (images[0].permute(1, 2, 0) - images[0].min()) / (images[0].max() - images[0].min())
    figure, axis = viz.visualize_image_attr(
        heat, rgb.numpy(), method="blended_heat_map", sign="positive", use_pyplot=False
    )
    assert figure is not None and axis is not None
    figure.savefig(__import__("io").BytesIO(), format="png")
    matplotlib.pyplot.close("all")


def test_refusals_are_one_clear_line():
    model, images = make_case(2)
    cam = LayerRSIGradCAM(model, model.conv)
    for method, message in REFUSED_METHODS.items():
        with pytest.raises(ValueError) as err:
            cam.attribute(images, target=1, method=method)
        assert str(err.value) == message
    assert REFUSED_METHODS["gausslegendre"].startswith("method='gausslegendre' is not available")
    with pytest.raises(ValueError, match="method must be one of 'riemann_trapezoid'"):
        cam.attribute(images, target=1, method="trapezoid")
    with pytest.raises(ValueError) as err:
        cam.attribute(images, target=[1, 2])
    assert str(err.value) == (
        "target has 2 values but inputs has 3 example(s); give one class per example, a "
        "single int, or None for each example's top-1 class."
    )
    with pytest.raises(ValueError, match="tuple targets index model outputs"):
        cam.attribute(images, target=[(1,), (2,), (0,)])
    with pytest.raises(ValueError, match=r"baselines has shape \(2, 3, 12, 12\)"):
        cam.attribute(images, target=1, baselines=torch.zeros(2, 3, 12, 12))
    with pytest.raises(ValueError, match="additional_forward_args is not supported"):
        cam.attribute(images, target=1, additional_forward_args=(1,))
    with pytest.raises(ValueError, match="attribute_to_layer_input=True is not supported"):
        cam.attribute(images, target=1, attribute_to_layer_input=True)
    with pytest.raises(ValueError, match="n_steps must be a positive int"):
        cam.attribute(images, target=1, n_steps=0)
    with pytest.raises(ValueError, match="inputs is a tuple of 2 tensors"):
        cam.attribute((images, images), target=1)
    with pytest.raises(ValueError, match="is not a submodule"):
        LayerRSIGradCAM(model, torch.nn.Conv2d(1, 1, 1))
    assert cam.has_convergence_delta()
    grad_cam = LayerGradCam(model, model.conv)
    with pytest.raises(ValueError, match="additional_forward_args is not supported"):
        grad_cam.attribute(images, 1, (1,))
    with pytest.raises(ValueError, match="inputs is a tuple of 2 tensors; LayerGradCam"):
        grad_cam.attribute((images, images), target=1)


def test_grad_cam_front_end_is_the_library_s_grad_cam():
    model, images = make_case(2)
    attr = LayerGradCam(model, model.conv).attribute(images, target=[1, 0, 3])
    exp = rsigradcam.GradCAM(model, "conv")(images, [1, 0, 3])
    activation = LayerActivation(model, model.conv).attribute(images)
    signed = torch.einsum("nk,nkhw->nhw", exp.weights, activation)
    torch.testing.assert_close(attr[:, 0], signed, rtol=1e-5, atol=1e-6)
    relu = LayerGradCam(model, model.conv).attribute((images,), [1, 0, 3], relu_attributions=True)
    torch.testing.assert_close(relu[:, 0], exp.layer_map, rtol=1e-5, atol=1e-6)
