"""RSIGradCAM and GradCAM against Captum's LayerConductance and LayerGradCam.

Mapping (checked here, element by element):

* ``LayerConductance(..., n_steps=m, method="riemann_trapezoid")`` evaluates the m + 1
  points t_i = i / m (Captum's "riemann_trapezoid" alphas are ``linspace(0, 1, n)`` with
  n = n_steps + 1) and sums ``G(t_{i-1}) * (A(t_i) - A(t_{i-1}))``: the gradient at the
  lower end of each interval. That is our ``rule="left"`` with ``steps=m``.
* Swapping inputs and baselines walks the same points backwards, so
  ``-LayerConductance(inputs=x', baselines=x)`` uses the gradient at the upper end of
  each interval: our ``rule="right"``.
* Our ``rule="trapezoid"`` is the mean of the two.
"""

from __future__ import annotations

import pytest
import torch
from captum.attr import LayerConductance, LayerGradCam

from rsigradcam import GradCAM, RSIGradCAM
from rsigradcam.baselines import BlackBaseline
from rsigradcam.constants import IMAGENET_NORMALIZE
from tests.helpers import make_case

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _captum_rule(model, layer, images, baselines, targets, steps, rule, output):
    def forward(x):
        out = model(x)
        return torch.softmax(out, dim=1) if output == "softmax" else out

    conductance = LayerConductance(forward, layer)

    def run(inputs, base):
        return conductance.attribute(
            inputs, baselines=base, target=targets, n_steps=steps, method="riemann_trapezoid"
        )

    left = run(images, baselines)
    if rule == "left":
        return left
    right = -run(baselines, images)
    return right if rule == "right" else (left + right) / 2


@pytest.mark.parametrize("rule", ["trapezoid", "left", "right"])
@pytest.mark.parametrize("output", ["softmax", "logits"])
def test_attributions_match_layer_conductance(rule, output):
    model, images = make_case(9)
    exp = RSIGradCAM(model, "conv", steps=16, rule=rule, output=output)(images)
    baselines = BlackBaseline(*IMAGENET_NORMALIZE)(images)
    expected = _captum_rule(
        model, model.conv, images, baselines, exp.targets.tolist(), 16, rule, output
    )
    scale = float(expected.detach().abs().max())
    torch.testing.assert_close(exp.attributions, expected, rtol=1e-4, atol=1e-4 * scale)


def test_gradcam_matches_layer_gradcam():
    model, images = make_case(10)
    exp = GradCAM(model, "conv")(images, targets=[0, 2, 4])
    expected = LayerGradCam(model, model.conv).attribute(
        images, target=[0, 2, 4], relu_attributions=True
    )
    torch.testing.assert_close(exp.layer_map, expected[:, 0], rtol=1e-5, atol=1e-6)
