"""The front-ends against the libraries they stand in for: one snippet, the same maps.

Each snippet is the migration code as a user has it. It runs twice in fresh namespaces,
once with pytorch-grad-cam 1.5.7's (or Captum's) classes and once with ours imported under
the same names, and the Grad-CAM maps agree: within ``MAP_ATOL`` for pytorch-grad-cam's
[0, 1] maps, within ``RTOL`` / ``ATOL`` for Captum's raw layer maps (float32 sums whose
order differs). The comparison is skipped, saying why, where the library is missing.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pytest
import torch

from rsigradcam.integrations import captum as our_captum
from rsigradcam.integrations import pytorch_grad_cam as our_pgc
from tests.helpers import PYTORCH_GRAD_CAM_MISSING, import_pytorch_grad_cam, make_case

#: pytorch-grad-cam's maps are float32 in [0, 1]: OpenCV's and torch's bilinear resize
#: and NumPy's and torch's reductions differ by float32 rounding only.
MAP_ATOL = 1e-5
#: Captum's layer maps are unscaled sums over channels.
RTOL, ATOL = 1e-4, 1e-6

PYTORCH_GRAD_CAM_SNIPPET = """
targets = [ClassifierOutputTarget(3), ClassifierOutputSoftmaxTarget(1), ClassifierOutputTarget(0)]
with GradCAM(model=model, target_layers=[model.conv]) as cam:
    one_layer = cam(input_tensor=input_tensor, targets=targets)
with GradCAM(model=model, target_layers=[model.features[4], model.conv]) as cam:
    two_layers = cam(input_tensor=input_tensor, targets=None)
"""

CAPTUM_SNIPPET = """
layer_gc = LayerGradCam(model, model.conv)
signed = layer_gc.attribute(inputs, target=[3, 1, 0])
relu = layer_gc.attribute(inputs, target=2, relu_attributions=True)
per_channel = layer_gc.attribute(inputs, target=torch.tensor([1, 2, 4]), attr_dim_summation=False)
"""


def _run(snippet: str, **names: Any) -> dict[str, Any]:
    namespace: dict[str, Any] = {"torch": torch, **names}
    exec(snippet, namespace)
    return namespace


def _names(cams: Any, targets: Any) -> dict[str, Any]:
    """What the snippet's imports bind: the CAM class from ``cams``, targets from ``targets``."""
    return {
        "GradCAM": cams.GradCAM,
        "ClassifierOutputTarget": targets.ClassifierOutputTarget,
        "ClassifierOutputSoftmaxTarget": targets.ClassifierOutputSoftmaxTarget,
    }


def test_pytorch_grad_cam_snippet_gives_the_same_maps():
    theirs = import_pytorch_grad_cam()
    if theirs is None:
        pytest.skip(PYTORCH_GRAD_CAM_MISSING)
    targets = importlib.import_module("pytorch_grad_cam.utils.model_targets")
    model, images = make_case(4, n=3, size=20)
    case = {"model": model, "input_tensor": images}
    got = _run(PYTORCH_GRAD_CAM_SNIPPET, **case, **_names(theirs, targets))
    ours = _run(PYTORCH_GRAD_CAM_SNIPPET, **case, **_names(our_pgc, our_pgc))
    for name in ("one_layer", "two_layers"):
        assert ours[name].shape == got[name].shape == (3, 20, 20)
        assert ours[name].dtype == got[name].dtype == np.float32
        assert got[name].max() > 0.9  # not a map that is zero everywhere
        np.testing.assert_allclose(ours[name], got[name], rtol=0, atol=MAP_ATOL)
    # Their targets given to our front-end score as they do there.
    their_targets = _run(PYTORCH_GRAD_CAM_SNIPPET, **case, **_names(our_pgc, targets))
    np.testing.assert_allclose(their_targets["one_layer"], got["one_layer"], atol=MAP_ATOL)


def test_scale_cam_is_their_scale_cam_image():
    if import_pytorch_grad_cam() is None:
        pytest.skip(PYTORCH_GRAD_CAM_MISSING)
    image = importlib.import_module("pytorch_grad_cam.utils.image")
    torch.manual_seed(0)
    maps = torch.relu(torch.randn(4, 5, 7))
    maps[3] = 0.0  # a map that is zero everywhere stays zero
    for size in (None, (5, 7), (23, 16)):
        theirs = image.scale_cam_image(maps.numpy(), None if size is None else size[::-1])
        ours = our_pgc.scale_cam(maps, size).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=MAP_ATOL)


def test_captum_snippet_gives_the_same_maps():
    captum_attr = pytest.importorskip("captum.attr", reason="Captum is not installed")
    model, images = make_case(4, n=3, size=20)
    got = _run(CAPTUM_SNIPPET, model=model, inputs=images, LayerGradCam=captum_attr.LayerGradCam)
    ours = _run(CAPTUM_SNIPPET, model=model, inputs=images, LayerGradCam=our_captum.LayerGradCam)
    assert (got["signed"] < 0).any()  # Captum's default is the signed map
    for name, shape in (("signed", (3, 1, 10, 10)), ("relu", (3, 1, 10, 10))):
        assert ours[name].shape == got[name].shape == shape
    assert ours["per_channel"].shape == got["per_channel"].shape == (3, 12, 10, 10)
    for name in ("signed", "relu", "per_channel"):
        torch.testing.assert_close(ours[name], got[name].detach(), rtol=RTOL, atol=ATOL)
