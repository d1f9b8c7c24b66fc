"""Grad-CAM++'s ``eps``: 0 is the paper's Eq. 19, 1e-6 is pytorch-grad-cam's denominator.

The reference below is written from the formula, one channel and one position at a time,
with activations and gradients from a full backward pass (``tests/reference/loop.py``)::

    alpha = g^2 / (2 g^2 + sum(A) g^3 + eps)   (0 where the denominator is 0)
    w_k   = sum_ij alpha ReLU(g),    map = ReLU(sum_k w_k A^k)

pytorch-grad-cam masks alpha where ``g == 0`` instead; with ``eps > 0`` both masks agree,
since ``g == 0`` gives ``0 / eps = 0``.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from rsigradcam import GradCAMPlusPlus
from rsigradcam.methods.registry import create_cam
from rsigradcam.metrics import pearson
from tests.helpers import make_case
from tests.reference.comparators import top1, upsample_and_normalise
from tests.reference.loop import activations_and_gradients

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

PYTORCH_GRAD_CAM_EPS = 1e-6


def reference(
    model: nn.Module, layer: str, image: Tensor, eps: float, output: str = "logits"
) -> dict[str, Tensor]:
    """Grad-CAM++ of one image (C, H, W), with ``eps`` in alpha's denominator (float64)."""
    model, image = copy.deepcopy(model).double(), image.double()
    target = top1(model, image)
    (act,), (grad,), _ = activations_and_gradients(model, layer, [image], target, output)
    weights = torch.zeros(act.shape[0], dtype=torch.float64)
    for k in range(act.shape[0]):
        g, total = grad[k], float(act[k].sum())
        for i in range(g.shape[0]):
            for j in range(g.shape[1]):
                gij = float(g[i, j])
                denominator = 2 * gij**2 + total * gij**3 + eps
                alpha = gij**2 / denominator if denominator != 0 else 0.0
                weights[k] += alpha * max(gij, 0.0)
    cam = torch.relu(sum(weights[k] * act[k] for k in range(act.shape[0])))
    assert isinstance(cam, Tensor)
    return {
        "weights": weights,
        "layer_map": cam,
        "heatmap": upsample_and_normalise(cam, tuple(image.shape[1:])),
    }


def small_gradients(seed: int) -> tuple[nn.Module, Tensor]:
    """A model whose class scores are scaled by 1e-3: gradients g ~ 1e-5, g^2 << 1e-6."""
    model, images = make_case(seed, n=3, size=12)
    with torch.no_grad():
        model.fc.weight.mul_(1e-3)
        model.fc.bias.mul_(1e-3)
    return model, images


def _rel(a: Tensor, b: Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-300))


def _check(model: nn.Module, images: Tensor, layer: str, eps: float, output: str) -> None:
    exp = GradCAMPlusPlus(model, layer, output=output, eps=eps, dtype=torch.float64)(images)
    for n in range(images.shape[0]):
        ref = reference(model, layer, images[n], eps, output)
        assert _rel(exp.weights[n], ref["weights"]) < 1e-9
        assert _rel(exp.layer_map[n], ref["layer_map"]) < 1e-9
        assert float((exp.heatmap[n].double() - ref["heatmap"]).abs().max()) < 1e-6  # float32


@pytest.mark.parametrize("eps", [0.0, PYTORCH_GRAD_CAM_EPS])
@pytest.mark.parametrize("output", ["logits", "softmax"])
@pytest.mark.parametrize("layer", ["conv", "features"])
def test_gradcampp_eps_matches_reference(layer: str, output: str, eps: float) -> None:
    model, images = make_case(3)
    _check(model, images, layer, eps, output)


@pytest.mark.parametrize("eps", [0.0, PYTORCH_GRAD_CAM_EPS])
def test_gradcampp_eps_matches_reference_where_gradients_are_small(eps: float) -> None:
    model, images = small_gradients(4)
    _check(model, images, "conv", eps, "logits")


def test_eps_changes_the_map_only_where_gradients_are_small() -> None:
    """eps = 1e-6 against g^2 ~ 1e-10 swamps alpha: the maps part; with g ~ 1e-2 it does not."""
    for model, images, changed in ((*make_case(3), False), (*small_gradients(4), True)):
        paper = GradCAMPlusPlus(model, "conv", dtype=torch.float64)(images)
        theirs = GradCAMPlusPlus(model, "conv", eps=1e-6, dtype=torch.float64)(images)
        r = pearson(paper.heatmap, theirs.heatmap)
        if changed:
            assert float(r.min()) < 0.99
            assert _rel(theirs.weights, paper.weights) > 0.5
        else:
            assert float(r.min()) > 0.999


def test_eps_default_is_the_paper_and_create_cam_passes_it() -> None:
    model, images = small_gradients(4)
    assert GradCAMPlusPlus(model, "conv").eps == 0.0
    cam = create_cam("gradcam++", model, ["conv"], eps=PYTORCH_GRAD_CAM_EPS)
    assert isinstance(cam, GradCAMPlusPlus) and cam.eps == PYTORCH_GRAD_CAM_EPS
    direct = GradCAMPlusPlus(model, ["conv"], eps=PYTORCH_GRAD_CAM_EPS)(images)
    built = cam(images)
    assert isinstance(direct, dict) and isinstance(built, dict)
    assert torch.equal(direct["conv"].heatmap, built["conv"].heatmap)
    assert GradCAMPlusPlus(model, "conv", eps=np.float32(1e-6)).eps == pytest.approx(1e-6)


@pytest.mark.parametrize("eps", [-1e-6, math.nan, math.inf, "1e-6", True, None])
def test_bad_eps_is_one_clear_line(eps: object) -> None:
    model, _ = make_case(0)
    with pytest.raises(ValueError, match=r"^eps must be a finite number >= 0") as info:
        GradCAMPlusPlus(model, "conv", eps=eps)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
