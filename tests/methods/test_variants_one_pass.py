"""``RSIGradCAM.explain_variants``: the authors' variants from one set of path passes equal
one call per variant, exactly."""

from __future__ import annotations

import pytest
import torch

from rsigradcam import RSIGradCAM
from tests.helpers import make_case

VARIANTS = [{}, {"grad_relu": True}, {"guided": True}, {"grad_relu": True, "guided": True}]
FIELDS = ("heatmap", "layer_map", "weights", "attributions", "scores", "baseline_scores")


def _same(a, b) -> None:
    for name in FIELDS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert torch.equal(a.completeness_error.isnan(), b.completeness_error.isnan())
    both = ~a.completeness_error.isnan()
    assert torch.equal(a.completeness_error[both], b.completeness_error[both])


@pytest.mark.parametrize("output", ["softmax", "logits"])
def test_each_variant_equals_its_own_call(output):
    model, images = make_case(14)
    layers = ["conv", "features"]
    cam = RSIGradCAM(model, layers, steps=6, output=output, batch_size=5)
    found = cam.explain_variants(images, 2, VARIANTS)
    assert len(found) == len(VARIANTS)
    for variant, by_layer in zip(VARIANTS, found, strict=True):
        alone = RSIGradCAM(model, layers, steps=6, output=output, batch_size=5, **variant)
        expected = alone(images, 2)
        assert sorted(by_layer) == sorted(layers)
        for layer in layers:
            _same(by_layer[layer], expected[layer])
    assert not cam.grad_relu and not cam.guided  # the instance's own settings are kept
    _same(cam(images, 2)["conv"], found[0]["conv"])


def test_one_layer_gives_explanations_and_the_order_is_kept():
    model, images = make_case(14)
    cam = RSIGradCAM(model, "conv", steps=4, grad_relu=True)
    relu, plain = cam.explain_variants(images, None, [{"grad_relu": True}, {}])
    _same(relu, cam(images))
    _same(plain, RSIGradCAM(model, "conv", steps=4)(images))
    assert relu.completeness_error.isnan().all() and not plain.completeness_error.isnan().any()


def test_bad_variants_are_refused():
    model, images = make_case(14)
    with pytest.raises(ValueError, match="unknown variant 'relu'"):
        RSIGradCAM(model, "conv", steps=4).explain_variants(images, None, [{"relu": True}])
    with pytest.raises(ValueError, match="variants is empty"):
        RSIGradCAM(model, "conv", steps=4).explain_variants(images, None, [])
    with pytest.raises(ValueError, match="fixed steps"):
        RSIGradCAM(model, "conv", steps="auto").explain_variants(images)


def test_several_random_baselines_per_image_give_the_same_maps():
    model, images = make_case(14)
    options = {"baseline": "noise", "n_samples": 3, "steps": 6}
    torch.manual_seed(0)
    found = RSIGradCAM(model, "features", **options).explain_variants(images, 1, VARIANTS)
    for variant, shared in zip(VARIANTS, found, strict=True):
        torch.manual_seed(0)
        _same(shared, RSIGradCAM(model, "features", **options, **variant)(images, 1))
