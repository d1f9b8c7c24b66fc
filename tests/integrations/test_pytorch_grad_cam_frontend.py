"""The pytorch-grad-cam–style front-ends against rsigradcam's methods and the reference loop.

The real pytorch-grad-cam is compared in test_frontends_match_their_libraries.py.
"""

from __future__ import annotations

import sys
import warnings

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
    GradCAM,
    RSIGradCAM,
    scale_cam,
)
from tests.helpers import make_case
from tests.reference.loop import reference_rsi
from tests.vit import make_vit

STEPS = 8

# A map that is zero everywhere would make an equality trivial: such cases fail here.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _core(model, layer, images, targets, method=rsigradcam.RSIGradCAM, **options):
    """The library's heatmaps (for one layer, pytorch-grad-cam's scaling gives them)."""
    if method is rsigradcam.RSIGradCAM:
        options = {"steps": STEPS, "output": "logits", **options}
    exp = method(model, layer, **options)(images, targets)
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
    before = set(sys.modules)
    with RSIGradCAM(model=model, target_layers=[model.conv], steps=STEPS) as cam:
        maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(c) for c in (1, 2, 0)])
    assert isinstance(maps, np.ndarray) and maps.dtype == np.float32
    assert maps.shape == (3, 12, 12)
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    expected = _core(model, "conv", images, [1, 2, 0])  # the logit, as pytorch-grad-cam
    np.testing.assert_allclose(maps, expected, atol=1e-6)
    # The front-end never imports pytorch-grad-cam (other tests may have, to compare).
    assert not {m for m in set(sys.modules) - before if m.startswith("pytorch_grad_cam")}


def test_grad_cam_front_end_is_the_library_s_grad_cam():
    model, images = make_case(3)
    with GradCAM(model=model, target_layers=[model.conv]) as cam:
        maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(c) for c in (1, 2, 0)])
    expected = _core(model, "conv", images, [1, 2, 0], method=rsigradcam.GradCAM)
    np.testing.assert_allclose(maps, expected, atol=1e-6)
    softmax = GradCAM(model, [model.conv], output="softmax")(images, [1, 2, 0])
    np.testing.assert_allclose(
        softmax,
        _core(model, "conv", images, [1, 2, 0], method=rsigradcam.GradCAM, output="softmax"),
        atol=1e-6,
    )
    assert not np.allclose(softmax, maps, atol=1e-3)  # the score matters here


def test_matches_the_reference_loop():
    model, images = make_case(5, n=2)
    cam = RSIGradCAM(model=model, target_layers=[model.conv], steps=STEPS)
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
    logits = RSIGradCAM(model, [model.conv], steps=STEPS)  # pytorch-grad-cam's default
    softmax = RSIGradCAM(model, [model.conv], steps=STEPS, output="softmax")
    as_logit = _core(model, "conv", images, classes, output="logits")
    as_prob = _core(model, "conv", images, classes, output="softmax")
    # ClassifierOutputTarget: the logit, or the probability with output="softmax"; theirs
    # behaves the same.
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

    cam = RSIGradCAM(model, [model.conv], steps=STEPS, output="softmax")  # does not apply
    maps = cam(images, [margin] * 3)
    expected = _core(model, "conv", images, lambda out: out[:, 2] - out[:, 0])
    np.testing.assert_allclose(maps, expected, atol=1e-6)


def test_mixed_targets_equal_one_image_at_a_time():
    model, images = make_case(11)
    targets = [ClassifierOutputTarget(1), lambda row: row[3], ClassifierOutputSoftmaxTarget(2)]
    cam = RSIGradCAM(model, [model.conv], steps=STEPS)
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


def test_several_layers_mean_of_scaled_maps_then_rescaled():
    model, images = make_case(2)
    cam = RSIGradCAM(model, [model.features[4], model.conv], steps=STEPS, output="softmax")
    maps = cam(images, [0, 1, 2])
    per_layer = rsigradcam.RSIGradCAM(
        model, ["features.4", "conv"], steps=STEPS, output="softmax"
    )(images, [0, 1, 2])
    size = tuple(images.shape[2:])
    # As pytorch-grad-cam: each map scaled, then resized (not rescaled); their mean scaled.
    scaled = [scale_cam(per_layer[name].layer_map, size) for name in ("features.4", "conv")]
    assert max(float(m.max()) for m in scaled) < 1.0 - 1e-3  # resizing lowered the peaks
    expected = scale_cam((scaled[0] + scaled[1]) / 2).numpy()
    np.testing.assert_allclose(maps, expected, atol=1e-6)
    assert maps.min() == 0.0 and maps.max() == pytest.approx(1.0, abs=1e-6)


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



def test_keywords_of_earlier_releases_warn_and_say_what_to_do():
    model, images = make_case(3)
    expected = GradCAM(model, [model.conv])(images, [1, 2, 0])
    with pytest.warns(DeprecationWarning, match=r"use_cuda is deprecated and ignored") as got:
        cam = GradCAM(model=model, target_layers=[model.conv], use_cuda=False)
    assert "move the model first (model.to('cpu'))" in str(got[0].message)
    assert got[0].filename == __file__  # names the caller's line
    np.testing.assert_allclose(cam(images, [1, 2, 0]), expected, atol=1e-6)
    with pytest.warns(DeprecationWarning, match=r"model\.to\('cuda'\)"):
        RSIGradCAM(model, [model.conv], use_cuda=True, steps=STEPS)
    with pytest.warns(DeprecationWarning, match="use_cuda"):  # 1.4's positional use_cuda
        cam = GradCAM(model, [model.conv], False)
    assert cam.reshape_transform is None
    with pytest.warns(DeprecationWarning, match=r"pass target_layers=\[layer\]"):
        cam = GradCAM(model=model, target_layer=model.conv)
    np.testing.assert_allclose(cam(images, [1, 2, 0]), expected, atol=1e-6)
    with pytest.warns(DeprecationWarning, match=r"targets=\[ClassifierOutputTarget\(c\)"):
        maps = cam(input_tensor=images, target_category=[1, 2, 0])
    np.testing.assert_allclose(maps, expected, atol=1e-6)
    every_image = GradCAM(model, [model.conv])(images, [2] * 3)
    for call in (lambda: cam(images, target_category=2), lambda: cam(images, 2)):
        with pytest.warns(DeprecationWarning, match="target_category"):
            np.testing.assert_allclose(call(), every_image, atol=1e-6)
    with pytest.warns(DeprecationWarning, match="target_category"):
        maps = cam(images, target_category=np.array([1, 2, 0]))
    np.testing.assert_allclose(maps, expected, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # today's keywords do not warn
        GradCAM(model=model, target_layers=[model.conv], reshape_transform=None)
    with pytest.raises(TypeError, match="got both target_layers and target_layer"):
        GradCAM(model, [model.conv], target_layer=model.conv)
    with pytest.raises(TypeError, match="missing target_layers"):
        GradCAM(model)
