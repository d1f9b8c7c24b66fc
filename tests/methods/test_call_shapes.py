"""The methods' one signature (model and layer positional, the rest keywords), the old
positional shapes' deprecation, and ``explain_variants`` without instance state."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch

from rsigradcam import (
    GradCAM,
    GradCAMPlusPlus,
    IntegratedGradCAM,
    IntegratedGradients,
    LayerCAM,
    RSIGradCAM,
)
from tests.helpers import make_case

#: class, layer, the old positional values, and the keywords they stand for.
OLD_SHAPES = [
    (RSIGradCAM, "conv", (7, "left", "logits"), ("steps", "rule", "output")),
    (IntegratedGradCAM, "conv", (5, "softmax"), ("steps", "output")),
    (IntegratedGradients, "input", (6, "right", "logits"), ("steps", "rule", "output")),
    (GradCAM, "conv", ("softmax",), ("output",)),
    (GradCAMPlusPlus, "conv", ("softmax",), ("output",)),
    (LayerCAM, "conv", ("softmax",), ("output",)),
]
VARIANTS = [{}, {"grad_relu": True}, {"guided": True}, {"grad_relu": True, "guided": True}]
FIELDS = ("heatmap", "layer_map", "weights", "attributions", "scores", "baseline_scores")


@pytest.mark.parametrize(("cls", "layer", "values", "names"), OLD_SHAPES)
def test_old_positional_shapes_still_work_and_warn_at_the_callers_line(cls, layer, values, names):
    model, _ = make_case(5, n=1)
    named = ", ".join(f"{name}=" for name in names)
    with pytest.warns(DeprecationWarning, match=re.escape(f"pass {named} as")) as caught:
        old = cls(model, layer, *values)
    assert [w.filename for w in caught] == [__file__]  # this line, not the library's
    new = cls(model, layer, **dict(zip(names, values, strict=True)))
    for name, value in zip(names, values, strict=True):
        assert getattr(old, name) == value == getattr(new, name)


def test_only_some_of_the_old_positions_may_be_given():
    model, _ = make_case(5, n=1)
    with pytest.warns(DeprecationWarning, match=r"passing steps positionally .* pass steps= as a"):
        cam = RSIGradCAM(model, "conv", 7, output="logits")
    assert (cam.steps, cam.rule, cam.output) == (7, "trapezoid", "logits")


def test_a_subclass_passing_old_positions_is_named_not_the_library():
    model, _ = make_case(5, n=1)

    class Mine(RSIGradCAM):
        def __init__(self, model, layer):
            super().__init__(model, layer, 4)  # the line the warning names

    with pytest.warns(DeprecationWarning, match="pass steps= as a keyword") as caught:
        Mine(model, "conv")
    (warning,) = caught
    assert warning.filename == __file__
    line = Path(__file__).read_text().splitlines()[warning.lineno - 1]
    assert "super().__init__(model, layer, 4)" in line


def test_bad_positional_calls_say_so_in_one_line():
    model, _ = make_case(5, n=1)
    with pytest.raises(TypeError, match=r"GradCAM\(\) takes model and layer positionally"):
        GradCAM(model, "conv", "logits", 3)
    with pytest.raises(TypeError, match="multiple values for argument 'steps'"):
        RSIGradCAM(model, "conv", 4, steps=5)


def _same(a, b) -> None:
    for name in FIELDS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert torch.equal(a.completeness_error.isnan(), b.completeness_error.isnan())


def test_explain_variants_is_reentrant():
    """A variant call made while another is running on the same instance (here from its
    baseline callable, before the outer call's path pass) gives each what it gives alone."""
    model, images = make_case(14)
    inner = []

    def baseline(x):
        if not inner:
            inner.append(None)  # the nested call's own baseline is plain
            inner.append(cam.explain_variants(images, 2, VARIANTS[::-1]))
        return torch.zeros_like(x)

    cam = RSIGradCAM(model, ["conv", "features"], steps=4, batch_size=5, baseline=baseline)
    with warnings.catch_warnings(record=True) as caught:  # zero maps, if any
        warnings.simplefilter("always")
        outer = cam.explain_variants(images, 1, VARIANTS)
        nested = inner[1]
        alone_outer = cam.explain_variants(images, 1, VARIANTS)
        alone_inner = cam.explain_variants(images, 2, VARIANTS[::-1])
    assert all(w.filename == __file__ for w in caught)
    pairs = [*zip(outer, alone_outer, strict=True), *zip(nested, alone_inner, strict=True)]
    assert len(pairs) == 2 * len(VARIANTS)
    for got, expected in pairs:
        for layer in ("conv", "features"):
            _same(got[layer], expected[layer])


def test_explain_variants_leaves_the_instance_as_it_was():
    model, images = make_case(14)
    cam = RSIGradCAM(model, "conv", steps=4, grad_relu=True)
    before = dict(vars(cam))
    first = cam.explain_variants(images, 2, VARIANTS)
    after = dict(vars(cam))
    changed = [k for k in before if k != "compile_seconds" and after[k] is not before[k]]
    assert after.keys() == before.keys() and not changed
    again = cam.explain_variants(images, 2, VARIANTS)
    for a, b in zip(first, again, strict=True):
        _same(a, b)
    _same(cam(images, 2), first[1])  # the instance's own grad_relu=True
