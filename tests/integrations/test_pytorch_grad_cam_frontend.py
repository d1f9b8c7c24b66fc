"""The pytorch-grad-cam–style front-end against rsigradcam.RSIGradCAM and the reference loop."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import rsigradcam
from rsigradcam.baselines import BlackBaseline
from rsigradcam.constants import IMAGENET_NORMALIZE
from rsigradcam.integrations.pytorch_grad_cam import (
    AUG_SMOOTH_REFUSED,
    EIGEN_SMOOTH_REFUSED,
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
    RSIGradCAM,
)
from tests.helpers import make_case
from tests.reference.loop import reference_rsi
from tests.vit import make_vit

STEPS = 8

# A map that is zero everywhere would make an equality trivial: such cases fail here.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _core(model, layer, images, targets, **options):
    exp = rsigradcam.RSIGradCAM(model, layer, steps=STEPS, **options)(images, targets)
    return exp.heatmap.numpy()


class _TheirClassifierOutputTarget:
    """Stands for pytorch-grad-cam's class of the same name (matched by module and name)."""

    def __init__(self, category):
        self.category = category

    def __call__(self, model_output):
        return model_output[..., self.category]


_TheirClassifierOutputTarget.__name__ = "ClassifierOutputTarget"
_TheirClassifierOutputTarget.__module__ = "pytorch_grad_cam.utils.model_targets"


class _TheirSoftmaxTarget(_TheirClassifierOutputTarget):
    def __call__(self, model_output):
        return torch.softmax(model_output, dim=-1)[..., self.category]


_TheirSoftmaxTarget.__name__ = "ClassifierOutputSoftmaxTarget"
_TheirSoftmaxTarget.__module__ = "pytorch_grad_cam.utils.model_targets"


def test_call_shape_type_and_equality_with_the_core():
    model, images = make_case(3)
    with RSIGradCAM(model=model, target_layers=[model.conv], steps=STEPS) as cam:
        maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(c) for c in (1, 2, 0)])
    assert isinstance(maps, np.ndarray) and maps.dtype == np.float32
    assert maps.shape == (3, 12, 12)
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    expected = _core(model, "conv", images, [1, 2, 0])  # softmax, as the paper
    np.testing.assert_allclose(maps, expected, atol=1e-6)
    assert "pytorch_grad_cam" not in sys.modules


def test_matches_the_reference_loop():
    model, images = make_case(5, n=2)
    cam = RSIGradCAM(model=model, target_layers=[model.conv], steps=STEPS, output="logits")
    maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(3), ClassifierOutputTarget(1)])
    baselines = BlackBaseline(*IMAGENET_NORMALIZE)(images)
    for i, target in enumerate((3, 1)):
        ref = reference_rsi(
            model, "conv", images[i], baselines[i], STEPS, output="logits", target=target
        )
        np.testing.assert_allclose(maps[i], ref["heatmap"].numpy(), atol=1e-4)


def test_targets_none_is_top1_and_options_pass_through():
    model, images = make_case(2)
    options = {"rule": "left", "baseline": "zeros", "batch_size": 5}
    cam = RSIGradCAM(model, [model.conv], steps=STEPS, **options)
    expected = _core(model, "conv", images, None, **options)
    np.testing.assert_allclose(cam(images), expected, atol=1e-6)
    np.testing.assert_allclose(cam(input_tensor=images, targets=None), expected, atol=1e-6)


def test_target_semantics_and_their_target_objects():
    model, images = make_case(3)
    classes = [1, 2, 0]
    logits = RSIGradCAM(model, [model.conv], steps=STEPS, output="logits")
    softmax = RSIGradCAM(model, [model.conv], steps=STEPS)
    as_logit = _core(model, "conv", images, classes, output="logits")
    as_prob = _core(model, "conv", images, classes, output="softmax")
    # ClassifierOutputTarget: the class under output=; theirs behaves the same.
    for target in (ClassifierOutputTarget, _TheirClassifierOutputTarget, int):
        targets = [target(c) for c in classes]
        np.testing.assert_allclose(logits(images, targets), as_logit, atol=1e-6)
        np.testing.assert_allclose(softmax(images, targets), as_prob, atol=1e-6)
    # ClassifierOutputSoftmaxTarget: the probability whatever output= says.
    for target in (ClassifierOutputSoftmaxTarget, _TheirSoftmaxTarget):
        np.testing.assert_allclose(
            logits(images, [target(c) for c in classes]), as_prob, atol=1e-6
        )
    # NumPy integer categories (pytorch-grad-cam users build them from argmax).
    picked = [ClassifierOutputTarget(np.int64(c)) for c in classes]
    np.testing.assert_allclose(logits(images, picked), as_logit, atol=1e-6)
    for array in (np.array(classes), torch.tensor(classes)):  # one class index per image
        np.testing.assert_allclose(logits(images, array), as_logit, atol=1e-6)


def test_our_targets_behave_like_theirs_when_called():
    row = torch.tensor([0.5, 2.0, -1.0])
    assert ClassifierOutputTarget(1)(row).item() == 2.0
    assert ClassifierOutputTarget(2)(row.expand(4, 3)).tolist() == [-1.0] * 4
    prob = ClassifierOutputSoftmaxTarget(1)(row)
    assert prob.item() == pytest.approx(torch.softmax(row, 0)[1].item())
    assert repr(ClassifierOutputTarget(281)) == "ClassifierOutputTarget(281)"


def test_any_callable_target_on_one_row():
    model, images = make_case(9)

    def margin(row):
        return row[2] - row[0]

    cam = RSIGradCAM(model, [model.conv], steps=STEPS)
    maps = cam(images, [margin] * 3)
    expected = _core(model, "conv", images, lambda out: out[:, 2] - out[:, 0])
    np.testing.assert_allclose(maps, expected, atol=1e-6)


def test_mixed_targets_equal_one_image_at_a_time():
    model, images = make_case(11)
    targets = [ClassifierOutputTarget(1), lambda row: row[3], ClassifierOutputSoftmaxTarget(2)]
    cam = RSIGradCAM(model, [model.conv], steps=STEPS, output="logits")
    maps = cam(images, targets)
    for i, target in enumerate(targets):
        alone = cam(images[i : i + 1], [target])
        np.testing.assert_allclose(maps[i], alone[0], atol=1e-5)
    np.testing.assert_allclose(
        maps[0], _core(model, "conv", images[:1], [1], output="logits")[0], atol=1e-6
    )
    np.testing.assert_allclose(
        maps[2], _core(model, "conv", images[2:], [2], output="softmax")[0], atol=1e-6
    )


def test_several_layers_mean_of_normalised_maps_then_rescaled():
    model, images = make_case(2)
    cam = RSIGradCAM(model, [model.features[4], model.conv], steps=STEPS)
    maps = cam(images, [0, 1, 2])
    per_layer = rsigradcam.RSIGradCAM(model, ["features.4", "conv"], steps=STEPS)(
        images, [0, 1, 2]
    )
    mean = (per_layer["features.4"].heatmap + per_layer["conv"].heatmap).numpy() / 2
    low = mean.min(axis=(1, 2), keepdims=True)
    expected = (mean - low) / (mean.max(axis=(1, 2), keepdims=True) - low)
    np.testing.assert_allclose(maps, expected, atol=1e-6)
    assert maps.min() == 0.0 and maps.max() == pytest.approx(1.0)


def test_reshape_transform_callable_on_a_vit():
    vit = make_vit()
    torch.manual_seed(2)
    images = torch.randn(2, 3, 32, 32)

    def reshape_transform(tensor, height=4, width=4):  # as pytorch-grad-cam's ViT tutorial
        result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
        return result.transpose(2, 3).transpose(1, 2)

    layer = vit.blocks[1].norm1
    cam = RSIGradCAM(vit, [layer], reshape_transform=reshape_transform, steps=STEPS)
    maps = cam(images, [ClassifierOutputTarget(1), ClassifierOutputTarget(4)])
    expected = _core(vit, "blocks.1.norm1", images, [1, 4], reshape_transform="tokens")
    assert maps.shape == (2, 32, 32)
    np.testing.assert_allclose(maps, expected, atol=1e-6)


def test_refusals_are_one_clear_line():
    model, images = make_case(3)
    cam = RSIGradCAM(model, [model.conv], steps=STEPS)
    with pytest.raises(ValueError) as err:
        cam(images, aug_smooth=True)
    assert str(err.value) == AUG_SMOOTH_REFUSED
    assert str(err.value).startswith("aug_smooth=True is not supported")
    with pytest.raises(ValueError) as err:
        cam(images, eigen_smooth=True)
    assert str(err.value) == EIGEN_SMOOTH_REFUSED
    with pytest.raises(ValueError) as err:
        cam(images, [ClassifierOutputTarget(1)])
    assert str(err.value) == (
        "targets has 1 item(s) but input_tensor has 3 image(s); give one target per image, "
        "or targets=None for each image's top-1 class."
    )
    with pytest.raises(TypeError, match="target 1 is str"):
        cam(images, [1, "cat", 2])
    with pytest.raises(ValueError, match="target_layers is empty"):
        RSIGradCAM(model, [])
    with pytest.raises(ValueError, match="steps"):
        RSIGradCAM(model, [model.conv], steps=0)
    with pytest.raises(ValueError, match="a target must return one score"):
        cam(images, [lambda row: row[:2]] * 3)
    with pytest.raises(ValueError, match="out of range"):
        cam(images, [ClassifierOutputTarget(99)] * 3)

