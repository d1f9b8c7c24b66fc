"""The model is borrowed, never changed; bad input gets one clear error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rsigradcam import GradCAM, RSIGradCAM
from tests.helpers import assert_same_state, make_case, make_cnn, model_state


def _prepared_model():
    model, images = make_case(13, n=2)
    model.train()
    model.features.eval()  # mixed modes must come back exactly
    model.fc.weight.requires_grad_(False)  # mixed flags too
    model.conv.weight.grad = torch.full_like(model.conv.weight, 0.5)  # an existing .grad
    return model, images


@pytest.mark.parametrize("method", ["rsi", "rsi-multi", "rsi-float64", "gradcam", "auto"])
def test_state_restored_after_success(method):
    model, images = _prepared_model()
    before = model_state(model)
    with torch.no_grad():
        out_before = model.eval()(images)
    model.train()
    model.features.eval()
    if method == "rsi":
        RSIGradCAM(model, "conv", steps=5)(images)
    elif method == "rsi-multi":
        RSIGradCAM(model, ["features", "conv"], steps=5)(images)
    elif method == "rsi-float64":
        RSIGradCAM(model, model.conv, steps=5, dtype=torch.float64)(images)
    elif method == "gradcam":
        GradCAM(model, "act")(images)
    else:
        RSIGradCAM(model, "auto", steps=3, batch_size=None)(images)
    assert_same_state(before, model_state(model))
    assert model.conv.bias.grad is None
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(images), out_before)


def _raising_calls(model, images):
    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom in the middle of the forward pass")

    yield lambda: RSIGradCAM(model, "conv", steps=4)(images, targets=99)  # after 1st forward
    yield lambda: RSIGradCAM(model, "pool", steps=4)(images)  # not a spatial 4-D output
    yield lambda: RSIGradCAM(model, "fc", steps=4)(images)  # 2-D output
    yield lambda: RSIGradCAM(model, "conv", steps=4)(images, targets=lambda out: out)  # bad fn
    yield lambda: RSIGradCAM(model, "conv", baseline=torch.zeros(3, 5, 5))(images)
    model.act = Boom()
    yield lambda: RSIGradCAM(model, "conv", steps=4)(images)


def test_state_restored_after_exceptions():
    model, images = _prepared_model()
    before = model_state(model)
    act = model.act
    for call in _raising_calls(model, images):
        with pytest.raises((ValueError, TypeError, RuntimeError)):
            call()
        swapped = model.act
        model.act = act
        assert_same_state(before, model_state(model))
        model.act = swapped


def test_state_restored_after_keyboard_interrupt():
    model, images = _prepared_model()
    before = model_state(model)

    def interrupt(out):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        RSIGradCAM(model, "conv", steps=4)(images, targets=interrupt)
    assert_same_state(before, model_state(model))


# ---------------------------------------------------------------------- clear errors
def test_unknown_layer_lists_close_matches():
    model = make_cnn()
    with pytest.raises(ValueError, match=r"'conv2' does not exist.*Close matches: 'conv'"):
        RSIGradCAM(model, "conv2")
    with pytest.raises(ValueError, match="not a submodule"):
        RSIGradCAM(model, nn.Conv2d(3, 3, 1))
    with pytest.raises(TypeError, match="layer must be"):
        RSIGradCAM(model, 3)  # type: ignore[arg-type]


def test_layer_output_not_4d_says_what_it_is():
    model, images = make_case(13)
    with pytest.raises(ValueError, match=r"'fc' returned a 2-D tensor of shape \(\d+, 5\)"):
        RSIGradCAM(model, "fc", steps=2)(images)
    with pytest.raises(ValueError, match=r"1x1 spatial output"):
        RSIGradCAM(model, "pool", steps=2)(images)


def test_layer_used_twice_is_refused():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            x = self.conv(self.conv(x))
            return self.fc(x.mean(dim=(2, 3)))

    with pytest.raises(ValueError, match="ran more than once"):
        RSIGradCAM(Twice(), "conv", steps=2)(torch.randn(1, 3, 6, 6))


def test_targets_out_of_range_and_wrong_length():
    model, images = make_case(13)
    with pytest.raises(ValueError, match=r"target class 5 is out of range.*5 classes"):
        RSIGradCAM(model, "conv", steps=2)(images, targets=5)
    with pytest.raises(ValueError, match="3 images"):
        RSIGradCAM(model, "conv", steps=2)(images, targets=[1, 2])
    with pytest.raises(ValueError, match="non-negative"):
        RSIGradCAM(model, "conv", steps=2)(images, targets=-1)
    with pytest.raises(ValueError, match="integer class"):
        RSIGradCAM(model, "conv", steps=2)(images, targets=torch.tensor([0.5, 1.0, 2.0]))


def test_images_must_be_nchw_floating_point():
    model, images = make_case(13)
    cam = RSIGradCAM(model, "conv", steps=2)
    with pytest.raises(ValueError, match=r"4-D \(N, C, H, W\).*unsqueeze\(0\)"):
        cam(images[0])
    with pytest.raises(TypeError, match="floating point"):
        cam((images * 100).to(torch.uint8))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        cam(images.numpy())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty batch"):
        cam(images[:0])
    bad = images.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        cam(bad)


def test_baseline_shape_mismatch():
    model, images = make_case(13)
    with pytest.raises(ValueError, match=r"baseline shape \(3, 5, 5\) does not match"):
        RSIGradCAM(model, "conv", steps=2, baseline=torch.zeros(3, 5, 5))(images)
    with pytest.raises(ValueError, match=r"baseline shape \(2, 3, 12, 12\) does not match"):
        RSIGradCAM(model, "conv", steps=2, baseline=torch.zeros(2, 3, 12, 12))(images)
    with pytest.raises(ValueError, match="baseline 'white' is unknown"):
        RSIGradCAM(model, "conv", steps=2, baseline="white")(images)
    with pytest.raises(ValueError, match="4 values per channel"):
        RSIGradCAM(model, "conv", steps=2, normalize=((0.5,) * 4, (0.2,) * 4))(images)


def test_argument_validation():
    model = make_cnn()
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        RSIGradCAM(model, "conv", steps=0)
    with pytest.raises(ValueError, match="rule must be one of"):
        RSIGradCAM(model, "conv", rule="simpson")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="output must be"):
        RSIGradCAM(model, "conv", output="probs")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        RSIGradCAM(model, "conv", batch_size=0)
    with pytest.raises(ValueError, match="dtype"):
        RSIGradCAM(model, "conv", dtype=torch.int64)
    with pytest.raises(TypeError, match=r"nn\.Module"):
        RSIGradCAM(lambda x: x, "conv")  # type: ignore[arg-type]


def test_model_without_2d_output():
    class Seg(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3, padding=1)

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(ValueError, match=r"needs \(N, classes\) scores"):
        RSIGradCAM(Seg(), "conv", steps=2)(torch.randn(1, 3, 6, 6))
