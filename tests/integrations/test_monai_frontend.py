"""The MONAI front-end: MONAI's maps from MONAI's calls, and RSI-Grad-CAM in that shape.

Against ``monai.visualize`` (skipped, saying why, where MONAI is missing): the normalised
maps agree within ``MAP_ATOL``, the raw ``compute_map`` maps within ``RAW_RTOL`` of their
largest value (float32 sums in another order). The rest runs without MONAI.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from typing import Any

import pytest
import torch

import rsigradcam
from rsigradcam.integrations import monai as ours
from tests.helpers import make_spatial_case

#: MONAI's maps are float32 in [0, 1] after its normaliser.
MAP_ATOL = 1e-5
#: Raw maps, relative to each call's largest value.
RAW_RTOL = 1e-5
MONAI_MISSING = "MONAI is not installed (pip install 'rsigradcam[medical]')"


def _monai() -> Any:
    return pytest.importorskip("monai.visualize", reason=MONAI_MISSING)


def _nets() -> Any:
    return pytest.importorskip("monai.networks.nets", reason=MONAI_MISSING)


def _assert_same(theirs: Any, ours_: Any, raw: bool) -> None:
    assert ours_.shape == theirs.shape and ours_.dtype == theirs.dtype
    if raw:
        theirs = theirs.detach()
        scale = float(theirs.abs().max())
        assert scale > 0  # not a map that is zero everywhere
        torch.testing.assert_close(ours_, theirs, rtol=0, atol=RAW_RTOL * scale)
    else:
        torch.testing.assert_close(ours_, theirs, rtol=0, atol=MAP_ATOL)


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():  # MONAI's hooks warn about hooks on module outputs
        warnings.simplefilter("ignore", UserWarning)
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def resnet3d() -> tuple[torch.nn.Module, torch.Tensor]:
    nets = _nets()
    torch.manual_seed(0)
    model = nets.resnet10(spatial_dims=3, n_input_channels=1, num_classes=3).eval()
    return model, torch.randn(2, 1, 16, 16, 16)


@pytest.mark.parametrize("layer", ["layer2", "layer3"])
def test_gradcam_equals_monais_on_a_3d_resnet(resnet3d, layer):
    visualize = _monai()
    model, x = resnet3d
    theirs, mine = visualize.GradCAM(model, layer), ours.GradCAM(model, layer)
    for class_idx in (1, 2):
        got = _quiet(theirs, x, class_idx=class_idx)
        assert got.shape == (2, 1, 16, 16, 16)
        _assert_same(got, mine(x, class_idx=class_idx), raw=False)
        _assert_same(
            _quiet(theirs.compute_map, x, class_idx=class_idx),
            mine.compute_map(x, class_idx=class_idx), raw=True,
        )
    # One class per image here is MONAI's map of each image with its class.
    per_image = mine(x, class_idx=[2, 1])
    for i, c in enumerate((2, 1)):
        _assert_same(_quiet(theirs, x[i : i + 1], class_idx=c), per_image[i : i + 1], raw=False)
        _assert_same(_quiet(theirs, x[i : i + 1]), mine(x[i : i + 1]), raw=False)  # top-1
    assert mine.feature_map_size(tuple(x.shape)) == _quiet(theirs.feature_map_size, x.shape)


@pytest.mark.parametrize("layer", ["class_layers.relu", "features.transition2"])
def test_gradcam_equals_monais_on_a_2d_densenet(layer):
    visualize, nets = _monai(), _nets()
    torch.manual_seed(0)
    model = nets.DenseNet121(spatial_dims=2, in_channels=1, out_channels=3).eval()
    x = torch.randn(2, 1, 64, 64)
    mine = ours.GradCAM(model, layer)(x, class_idx=2)  # before MONAI's hooks touch the net
    raw = ours.GradCAM(model, layer).compute_map(x, class_idx=2)
    theirs = visualize.GradCAM(nn_module=model, target_layers=layer)
    _assert_same(_quiet(theirs, x=x, class_idx=2), mine, raw=False)
    _assert_same(_quiet(theirs.compute_map, x, class_idx=2), raw, raw=True)


@pytest.mark.parametrize("layer", ["layer2", "layer3"])
def test_gradcampp_equals_monais_for_each_image(resnet3d, layer):
    visualize = _monai()
    model, x = resnet3d
    theirs, mine = visualize.GradCAMpp(model, layer), ours.GradCAMpp(model, layer)
    for i in range(x.shape[0]):
        one = x[i : i + 1]
        for class_idx in (None, 0):
            _assert_same(_quiet(theirs, one, class_idx=class_idx),
                         mine(one, class_idx=class_idx), raw=False)  # fmt: skip
            _assert_same(_quiet(theirs.compute_map, one, class_idx=class_idx),
                         mine.compute_map(one, class_idx=class_idx), raw=True)  # fmt: skip
    # A batch: each image's map is its own, with its own exp(score) (a batched convolution
    # rounds otherwise in float32, which alpha's g^3 sums amplify: 1e-3 of the largest value).
    batch = mine.compute_map(x, class_idx=0)
    for i in range(x.shape[0]):
        alone = mine.compute_map(x[i : i + 1], class_idx=0)
        scale = float(alone.max())
        torch.testing.assert_close(batch[i : i + 1], alone, rtol=0, atol=1e-3 * scale)


def test_default_normalizer_is_monais():
    visualize = _monai()
    torch.manual_seed(0)
    maps = torch.rand(3, 1, 4, 5, 6) * 3
    maps[1] = 0.25  # a constant map stays as it is
    got = ours.default_normalizer(maps)
    torch.testing.assert_close(got, visualize.default_normalizer(maps), rtol=0, atol=0)
    assert float(got[0].max()) == 1.0 and float(got[0].min()) == 0.0


def test_rsi_through_the_front_end_is_the_librarys_rsi():
    model, x = make_spatial_case((1, 12, 12, 12), n=2)
    cam = ours.RSIGradCAM(model, "conv", steps=16)
    result = cam(x, class_idx=[1, 3])
    exp = rsigradcam.RSIGradCAM(model, "conv", steps=16, baseline="zeros", output="logits")(
        x, [1, 3]
    )
    raw = cam.compute_map(x, class_idx=[1, 3])
    assert raw.shape == (2, 1, 6, 6, 6) and result.shape == (2, 1, 12, 12, 12)
    torch.testing.assert_close(raw, exp.layer_map.unsqueeze(1))
    up = ours.default_upsampler((12, 12, 12))(raw)
    torch.testing.assert_close(result, ours.default_normalizer(up))
    assert cam.explanation is not None
    torch.testing.assert_close(cam.explanation.completeness_error, exp.completeness_error)
    assert bool(torch.isfinite(exp.completeness_error).all())  # the layer cuts the graph
    # Signals too, and MONAI's keywords: upsampler, postprocessing, layer_idx, kwargs.
    model1, signal = make_spatial_case((2, 40), n=3)
    cam1 = ours.RSIGradCAM(
        model1, ["features.0", "conv"], ours.default_upsampler, lambda m: m, steps=8
    )
    assert cam1(signal, class_idx=0, layer_idx=-1).shape == (3, 1, 40)
    assert cam1.compute_map(signal, class_idx=0, layer_idx=0).shape == (3, 1, 40)
    assert cam1.feature_map_size((3, 2, 40)) == (3, 1, 20)


def test_keywords_reach_the_network():
    class Scaled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
            return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3))) * scale

    torch.manual_seed(0)
    model, x = Scaled().eval(), torch.randn(2, 1, 8, 8)
    cam = ours.GradCAM(model, "conv")
    plain, scaled = cam.compute_map(x, class_idx=1), cam.compute_map(x, class_idx=1, scale=3.0)
    torch.testing.assert_close(scaled, 3.0 * plain)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda m, x: ours.GradCAM(m, "conf"), ValueError,
         "layer 'conf' does not exist in SpatialCNN. Close matches: 'conv'"),
        (lambda m, x: ours.RSIGradCAM(m, "conv")(x, class_idx=7), ValueError,
         "target class 7 is out of range: the model has 4 classes (valid indices 0..3)."),
        (lambda m, x: ours.GradCAM(m, "conv")(x, class_idx=-1), ValueError,
         "class_idx must be a class index >= 0, got -1"),
        (lambda m, x: ours.GradCAM(m, "conv")(x, class_idx=[0, 1, 2]), ValueError,
         "targets has 3 values but there are 2 images"),
        (lambda m, x: ours.GradCAM(m, "conv")(x, class_idx=1.5), TypeError,
         "class_idx must be None (each image's top-1 class), an int, or one int per image"),
        (lambda m, x: ours.GradCAM(m, ["conv"])(x, layer_idx=1), IndexError,
         "layer_idx 1 is out of range for 1 target layer(s)"),
        (lambda m, x: ours.GradCAM(m, []), ValueError, "target_layers must be a layer's name"),
    ],
)
def test_bad_input_is_one_line(call, error, message):
    model, x = make_spatial_case((1, 8, 8, 8), n=2)
    with pytest.raises(error) as found:
        call(model, x)
    assert message in str(found.value) and "\n" not in str(found.value)


def test_the_front_end_imports_without_monai():
    code = (
        "import sys; sys.modules['monai'] = None\n"
        "import rsigradcam.integrations.monai as m\n"
        "assert 'monai' not in [k for k, v in sys.modules.items() if v is not None]\n"
        "print(m.GradCAM.__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "GradCAM\n"
