"""Hostile models and numerics: the model comes back unchanged, nothing is NaN, errors are clear."""

from __future__ import annotations

import warnings
from collections import namedtuple

import pytest
import torch
from torch import nn

from rsigradcam import GradCAM, RSIGradCAM
from tests.helpers import SmallCNN, assert_same_state, make_case, make_cnn, model_state


def _same_output_after(model: nn.Module, images: torch.Tensor, call) -> None:
    """Run ``call``; the model's state and its output on ``images`` must not change."""
    modes = [(m, m.training) for m in model.modules()]
    before = model_state(model)
    with torch.no_grad():
        out_before = model.eval()(images)
    for module, mode in modes:
        module.training = mode
    call()
    assert_same_state(before, model_state(model))
    with torch.no_grad():
        assert torch.equal(model.eval()(images), out_before)
    for module, mode in modes:
        module.training = mode


# ------------------------------------------------------------------ unusual layers
Pair = namedtuple("Pair", ["features", "aux"])


class TupleLayer(nn.Module):
    def __init__(self, conv: nn.Conv2d, kind: str) -> None:
        super().__init__()
        self.conv, self.kind = conv, kind

    def forward(self, x: torch.Tensor):
        y = self.conv(x)
        aux = y.mean()
        if self.kind == "tuple":
            return y, aux
        if self.kind == "list":
            return [y, aux]
        return Pair(y, aux)


class TupleModel(nn.Module):
    def __init__(self, base: SmallCNN, kind: str) -> None:
        super().__init__()
        self.features = base.features
        self.conv = TupleLayer(base.conv, kind)
        self.act, self.pool, self.fc = base.act, base.pool, base.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(self.features(x))[0]
        return self.fc(torch.flatten(self.pool(self.act(y)), 1))


@pytest.mark.parametrize("kind", ["tuple", "list", "namedtuple"])
def test_layer_returning_a_tuple_is_explained_through_its_first_item(kind):
    base, images = make_case(13, n=2)
    expected = RSIGradCAM(base, "conv", steps=6)(images)
    model = TupleModel(make_cnn(13), kind)
    result = {}
    _same_output_after(
        model, images, lambda: result.update(exp=RSIGradCAM(model, "conv", steps=6)(images))
    )
    assert torch.allclose(result["exp"].heatmap, expected.heatmap, atol=1e-6)


def test_inplace_relu_right_after_the_layer():
    base, images = make_case(13, n=2)
    expected = RSIGradCAM(base, "conv", steps=6)(images)
    model = make_cnn(13)
    model.act = nn.ReLU(inplace=True)
    result = {}
    _same_output_after(
        model, images, lambda: result.update(exp=RSIGradCAM(model, "conv", steps=6)(images))
    )
    assert torch.allclose(result["exp"].attributions, expected.attributions, atol=1e-6)
    torch.testing.assert_close(result["exp"].attributions, expected.attributions)


def test_train_mode_model_gives_eval_results_and_stays_in_train_mode():
    model, images = make_case(13, n=2)
    expected = RSIGradCAM(model, "conv", steps=6)(images)
    model.train()
    running = model.features[3].running_mean.clone()
    exp = RSIGradCAM(model, "conv", steps=6)(images)
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(model.features[3].running_mean, running)  # no statistics update
    assert torch.equal(exp.heatmap, expected.heatmap)
    torch.testing.assert_close(exp.attributions, expected.attributions)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_models_on_other_dtypes(dtype):
    model = make_cnn(13).to(dtype)
    _, images = make_case(13, n=2)
    images = images.to(dtype)
    result = {}
    _same_output_after(
        model, images, lambda: result.update(exp=RSIGradCAM(model, "conv", steps=6)(images))
    )
    exp = result["exp"]
    assert exp.attributions.dtype == dtype
    assert torch.isfinite(exp.heatmap).all() and 0 <= exp.heatmap.min() <= exp.heatmap.max() <= 1


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_torch_compiled_model():
    base, images = make_case(13, n=2)
    expected = RSIGradCAM(base, "conv", steps=4)(images)
    compiled = torch.compile(make_cnn(13), backend="eager")
    result = {}
    _same_output_after(
        compiled,
        images,
        lambda: result.update(exp=RSIGradCAM(compiled, "conv", steps=4)(images)),
    )
    assert result["exp"].layer == "_orig_mod.conv"
    assert torch.allclose(result["exp"].heatmap, expected.heatmap, atol=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_is_refused_clearly():
    _, images = make_case(13, n=1)
    for scripted in (torch.jit.script(make_cnn(13)), torch.jit.trace(make_cnn(13), images)):
        with pytest.raises(TypeError, match=r"TorchScript.*torch\.export"):
            RSIGradCAM(scripted, "conv")
        with pytest.raises(TypeError, match="TorchScript"):
            GradCAM(scripted, "conv")


# ------------------------------------------------------------------ bad tensors
def test_baseline_on_another_device():
    model, images = make_case(13, n=1)
    with pytest.raises(ValueError, match=r"baseline is on meta.*baseline\.to"):
        RSIGradCAM(model, "conv", steps=2, baseline=torch.zeros(3, 12, 12, device="meta"))(images)


def test_images_with_inf_and_on_another_device():
    model, images = make_case(13, n=1)
    bad = images.clone()
    bad[0, 1, 2, 3] = float("inf")
    with pytest.raises(ValueError, match="NaN or Inf"):
        RSIGradCAM(model, "conv", steps=2)(bad)
    with pytest.raises(ValueError, match=r"images are on meta.*images\.to"):
        RSIGradCAM(model, "conv", steps=2)(images.to("meta"))


# ------------------------------------------------------------------ numerics
class Saturated(nn.Module):
    """p = 1.0 exactly in float32 for class 0."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.fc.weight.mul_(1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def test_saturated_softmax_gives_no_nan():
    model = Saturated()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 8, 8) * 5
    assert (torch.softmax(model(x), dim=1).amax(dim=1) == 1.0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for cam in (RSIGradCAM(model, "conv", steps=8), GradCAM(model, "conv", output="softmax")):
            exp = cam(x)
            assert torch.isfinite(exp.heatmap).all() and torch.isfinite(exp.weights).all()
            assert exp.heatmap.min() >= 0 and exp.heatmap.max() <= 1


def _zero_activations() -> tuple[nn.Module, torch.Tensor, RSIGradCAM]:
    model = Saturated()
    with torch.no_grad():
        model.conv.weight.zero_()
        model.conv.bias.zero_()
    return model, torch.randn(1, 3, 8, 8), RSIGradCAM(model, "conv", steps=8)


def _no_positive_evidence() -> tuple[nn.Module, torch.Tensor, GradCAM]:
    # All-negative head weights on non-negative activations: no positive evidence.
    model, images = make_case(13, n=2)
    with torch.no_grad():
        model.fc.weight.copy_(-model.fc.weight.abs())
    return model, images, GradCAM(model, "act")


@pytest.mark.parametrize("case", [_zero_activations, _no_positive_evidence])
def test_zero_map_warns_and_gives_zeros(case):
    _, images, cam = case()
    with pytest.warns(RuntimeWarning, match="zero everywhere"):
        exp = cam(images)
    assert torch.equal(exp.heatmap, torch.zeros_like(exp.heatmap))
    assert not bool(torch.isnan(exp.heatmap).any())
    if isinstance(cam, RSIGradCAM):
        assert torch.isfinite(exp.completeness_error).all()


def test_all_zero_gradients_warn_and_give_zeros():
    model = Saturated()
    with torch.no_grad():
        model.fc.weight[2].zero_()  # class 2's score does not depend on the layer
    x = torch.randn(1, 3, 8, 8)
    with pytest.warns(RuntimeWarning, match="vanishing gradients"):
        exp = RSIGradCAM(model, "conv", steps=8, output="logits")(x, targets=2)
    assert torch.equal(exp.heatmap, torch.zeros_like(exp.heatmap))
    assert torch.equal(exp.attributions, torch.zeros_like(exp.attributions))
