"""Completeness only where it holds: NaN, with the reason, at a layer the score can bypass.

A skip connection past a layer (a residual block's inner convolution) lets the score
depend on the input by a path that avoids the layer, so the integrated gradients there
need not sum to y(x) - y(x'). The layer that holds the whole block, the add included,
cuts the graph and keeps its number.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from rsigradcam import RSIGradCAM
from rsigradcam.core.evaluator import reaches_input
from rsigradcam.methods import (
    BYPASSED_LAYER_REASON,
    NO_COMPLETENESS_REASON,
    GradCAM,
    IntegratedGradients,
)

BYPASSED, BLOCK, STEM = "block.inner", "block", "stem"


class Residual(nn.Module):
    """``x + inner(relu(outer(x)))``: the skip connection bypasses ``inner``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.outer = nn.Conv2d(width, width, 3, padding=1)
        self.inner = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.inner(torch.relu(self.outer(x)))


class ResidualCNN(nn.Module):
    def __init__(self, width: int = 6, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.block = Residual(width)
        self.fc = nn.Linear(width, classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.block(torch.relu(self.stem(x)))
        return self.fc(torch.relu(h).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def model() -> ResidualCNN:
    torch.manual_seed(0)
    return ResidualCNN().eval()


@pytest.fixture(scope="module")
def x() -> Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def test_a_bypassed_layer_reports_nan_with_the_reason(model: nn.Module, x: Tensor) -> None:
    found = RSIGradCAM(model, [BYPASSED, BLOCK, STEM], steps=8)(x)
    bypassed = found[BYPASSED]
    assert torch.isnan(bypassed.completeness_error).all()
    assert bypassed.completeness_note == BYPASSED_LAYER_REASON
    assert torch.isfinite(bypassed.heatmap).all()  # the map itself is still explained
    for layer in (BLOCK, STEM):  # they cut the graph: a number, no note
        assert torch.isfinite(found[layer].completeness_error).all(), layer
        assert found[layer].completeness_note == ""


def test_the_cut_layer_converges_where_the_bypassed_one_does_not(
    model: nn.Module, x: Tensor
) -> None:
    """The number kept at the cut layer is a convergence measure: it falls with m."""
    coarse = RSIGradCAM(model, BLOCK, steps=4, output="logits")(x).completeness_error
    fine = RSIGradCAM(model, BLOCK, steps=128, output="logits")(x).completeness_error
    assert float(fine.max()) < 1e-3 < float(coarse.max())


def test_one_image_of_a_bypassed_explanation_keeps_its_note(model: nn.Module, x: Tensor) -> None:
    exp = RSIGradCAM(model, BYPASSED, steps=4)(x)
    assert exp[1].completeness_note == BYPASSED_LAYER_REASON
    assert exp.cpu().completeness_note == BYPASSED_LAYER_REASON


def test_adaptive_steps_report_the_bypassed_layer_too(model: nn.Module, x: Tensor) -> None:
    found = RSIGradCAM(model, [BYPASSED, BLOCK], steps="auto", max_steps=16)(x)
    assert found[BYPASSED].completeness_note == BYPASSED_LAYER_REASON
    assert torch.isnan(found[BYPASSED].completeness_error).all()
    assert torch.isfinite(found[BLOCK].completeness_error).all()


def test_the_variants_keep_their_own_reason(model: nn.Module, x: Tensor) -> None:
    paper, relu = RSIGradCAM(model, [BYPASSED, BLOCK], steps=4).explain_variants(
        x, variants=[{}, {"grad_relu": True}]
    )
    assert paper[BYPASSED].completeness_note == BYPASSED_LAYER_REASON
    assert paper[BLOCK].completeness_note == ""
    for layer in (BYPASSED, BLOCK):
        assert relu[layer].completeness_note == NO_COMPLETENESS_REASON
        assert torch.isnan(relu[layer].completeness_error).all()
    guided = RSIGradCAM(model, BLOCK, steps=4, guided=True)(x)
    assert guided.completeness_note == NO_COMPLETENESS_REASON


def test_methods_without_the_property_carry_no_note(model: nn.Module, x: Tensor) -> None:
    exp = GradCAM(model, BYPASSED)(x)
    assert torch.isnan(exp.completeness_error).all() and exp.completeness_note == ""
    pixels = IntegratedGradients(model, steps=8)(x)  # the input cuts every graph
    assert torch.isfinite(pixels.completeness_error).all() and pixels.completeness_note == ""


def test_the_reasons_are_one_line_each() -> None:
    for reason in (BYPASSED_LAYER_REASON, NO_COMPLETENESS_REASON):
        assert "\n" not in reason and reason.startswith("completeness_error does not apply")
    assert "bypass" in BYPASSED_LAYER_REASON


def test_reaches_input_follows_the_graph_not_the_gradient_values() -> None:
    x = torch.ones(3, requires_grad=True)
    h = x * 2
    assert reaches_input((h + x).sum(), x, h)  # a skip connection past h
    assert not reaches_input((h * 3).sum(), x, h)  # only through h
    # A bypass whose gradient is zero at this point is still a bypass.
    assert reaches_input((h + torch.relu(-x)).sum(), x, h)
    # A node's other outputs stay open: only the layer's own output is blocked.
    first, second = torch.chunk(x * 1.0, 2)
    assert first.grad_fn is second.grad_fn and first.output_nr != second.output_nr
    assert reaches_input(first.sum() + second.sum(), x, first)
    assert not reaches_input(first.sum(), x, first)


def test_the_bypass_answer_is_found_once_per_model_and_again_when_the_model_changes(
    monkeypatch: pytest.MonkeyPatch, x: Tensor
) -> None:
    """The cut test runs on the first call for a model, layers and input shape; later calls
    reuse it (no extra forward pass), and a changed model (a module swapped) asks again."""
    from rsigradcam.core import evaluator

    torch.manual_seed(0)
    model = ResidualCNN().eval()
    walks: list[int] = []

    def counting(score: Tensor, leaf: Tensor, layer_output: Tensor) -> bool:
        walks.append(1)
        return reaches_input(score, leaf, layer_output)

    monkeypatch.setattr(evaluator, "reaches_input", counting)
    first = RSIGradCAM(model, [BYPASSED, BLOCK], steps=4)(x)
    assert len(walks) == 2
    again = RSIGradCAM(model, [BYPASSED, BLOCK], steps=4)(x)
    assert len(walks) == 2 and again[BYPASSED].completeness_note == BYPASSED_LAYER_REASON
    assert torch.isfinite(again[BLOCK].completeness_error).all()
    model.block = Residual(6)  # another module: the graph may differ
    RSIGradCAM(model, [BYPASSED, BLOCK], steps=4)(x)
    assert len(walks) == 4
    assert first[BLOCK].completeness_note == ""
