"""Token layers of a vision transformer, through reshape_transform."""

from __future__ import annotations

import pytest
import torch

from rsigradcam import GradCAM, RSIGradCAM
from rsigradcam.core.reshape import TokenGrid
from rsigradcam.methods import BYPASSED_LAYER_REASON
from tests.helpers import assert_same_state, model_state
from tests.reference.loop import activations_and_gradients, reference_rsi
from tests.vit import make_vit


def _images(n: int = 2) -> torch.Tensor:
    torch.manual_seed(11)
    return torch.randn(n, 3, 32, 32)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def test_token_grid_layouts():
    assert TokenGrid()(torch.zeros(2, 17, 8)).shape == (2, 8, 4, 4)  # class token
    assert TokenGrid()(torch.zeros(2, 21, 8)).shape == (2, 8, 4, 4)  # class + 4 registers
    assert TokenGrid()(torch.zeros(2, 16, 8)).shape == (2, 8, 4, 4)  # patches only
    assert TokenGrid(prefix_tokens=1, grid=(2, 8))(torch.zeros(1, 17, 8)).shape == (1, 8, 2, 8)
    tokens = torch.arange(17.0).view(1, 17, 1)
    grid = TokenGrid()(tokens)
    assert grid[0, 0, 0].tolist() == [1.0, 2.0, 3.0, 4.0]  # row-major patches after the class
    with pytest.raises(ValueError, match="square grid"):
        TokenGrid(prefix_tokens=0)(torch.zeros(1, 17, 8))


@pytest.mark.parametrize("registers", [0, 4])
@pytest.mark.parametrize("layer", ["blocks.0", "blocks.1.norm1"])
def test_vit_matches_reference(layer, registers):
    model = make_vit(registers=registers, dtype=torch.float64)
    images = _images().double()
    before = model_state(model)
    exp = RSIGradCAM(model, layer, steps=8, reshape_transform="tokens", normalize=None)(images)
    assert_same_state(before, model_state(model))
    assert exp.layer_map.shape == (2, 4, 4)
    for n in range(2):
        ref = reference_rsi(
            model, layer, images[n], torch.zeros_like(images[n]), 8, reshape=TokenGrid()
        )
        assert int(exp.targets[n]) == ref["target"]
        assert _rel(exp.attributions[n], ref["attributions"]) < 1e-9
        assert (exp.heatmap[n] - ref["heatmap"]).abs().max() < 1e-6
    assert exp.heatmap.amax(dim=(1, 2)).min() > 0  # not a degenerate all-zero case


def test_vit_gradcam_and_several_layers():
    model = make_vit(dtype=torch.float64)
    images = _images().double()
    exp = GradCAM(model, "blocks.0", reshape_transform="tokens")(images)
    for n in range(2):
        target = int(exp.targets[n])
        acts, grads, _ = activations_and_gradients(
            model, "blocks.0", [images[n]], target, "logits", TokenGrid()
        )
        weights = grads[0].mean(dim=(1, 2))
        cam = torch.relu((weights[:, None, None] * acts[0]).sum(0))
        assert _rel(exp.layer_map[n], cam) < 1e-9
    both = RSIGradCAM(
        model, ["blocks.0", "blocks.1.norm1"], steps=6, reshape_transform="tokens",
        normalize=None,
    )(images)
    one = RSIGradCAM(model, "blocks.1.norm1", steps=6, reshape_transform="tokens", normalize=None)(
        images
    )
    assert torch.allclose(both["blocks.1.norm1"].heatmap, one.heatmap, atol=1e-6)


def test_auto_layer_with_tokens_asks_for_a_name():
    model = make_vit()
    with pytest.raises(ValueError, match=r"Name the layer.*\('blocks\.1\.norm1' here\)"):
        RSIGradCAM(model, steps=4, reshape_transform="tokens", normalize=None)(_images())


def test_token_layer_without_reshape_names_the_fix():
    model = make_vit()
    with pytest.raises(ValueError, match="reshape_transform"):
        RSIGradCAM(model, "blocks.0", steps=4, normalize=None)(_images())
    before = model_state(model)
    with pytest.raises(ValueError, match="reshape_transform"):
        GradCAM(model, "blocks.0")(_images())
    assert_same_state(before, model_state(model))
    with pytest.raises(ValueError, match="reshape_transform failed"):
        RSIGradCAM(model, "blocks.0", reshape_transform=TokenGrid(prefix_tokens=3))(_images())
    with pytest.raises(ValueError, match="'tokens'"):
        RSIGradCAM(model, "blocks.0", reshape_transform="vit")


def test_vit_completeness_is_not_claimed_where_the_class_token_bypasses_the_grid():
    model = make_vit(dtype=torch.float64)
    exp = RSIGradCAM(model, "blocks.0", steps=64, reshape_transform="tokens", normalize=None)(
        _images().double()
    )
    # The class token bypasses the patch grid, so completeness need not hold: NaN, and why.
    assert torch.isnan(exp.completeness_error).all()
    assert exp.completeness_note == BYPASSED_LAYER_REASON


def test_every_comparator_runs_on_token_layers():
    from rsigradcam import GradCAMPlusPlus, IntegratedGradCAM, LayerCAM

    model = make_vit(dtype=torch.float64)
    images = _images().double()
    before = model_state(model)
    layercam = LayerCAM(model, "blocks.0", reshape_transform="tokens")(images)
    plusplus = GradCAMPlusPlus(model, "blocks.0", reshape_transform="tokens")(images)
    integrated = IntegratedGradCAM(
        model, "blocks.0", steps=4, reshape_transform="tokens", normalize=None
    )(images)
    assert_same_state(before, model_state(model))
    for n in range(2):
        target = int(layercam.targets[n])
        acts, grads, _ = activations_and_gradients(
            model, "blocks.0", [images[n]], target, "logits", TokenGrid()
        )
        a, g = acts[0], grads[0]
        assert _rel(layercam.layer_map[n], torch.relu((torch.relu(g) * a).sum(0))) < 1e-9
        denom = 2 * g**2 + a.sum(dim=(1, 2), keepdim=True) * g**3
        alpha = torch.where(denom != 0, g**2 / torch.where(denom != 0, denom, 1), 0)
        weights = (alpha * torch.relu(g)).sum(dim=(1, 2))
        expected = torch.relu((weights[:, None, None] * a).sum(0))
        assert _rel(plusplus.layer_map[n], expected) < 1e-9
    assert integrated.layer_map.shape == (2, 4, 4)
    assert torch.isfinite(integrated.heatmap).all()
