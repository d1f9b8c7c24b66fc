"""What a method's call returns follows the ``layer`` it was built with: checked by mypy.

Not run by pytest: mypy checks this file (``files`` in pyproject, so ``make lint``) and
fails where a call's type is not the one asserted (``assert_type`` does nothing at run
time).
"""

from __future__ import annotations

from torch import Tensor, nn
from typing_extensions import assert_type

from rsigradcam import (
    Explanation,
    GradCAM,
    GradCAMPlusPlus,
    IntegratedGradCAM,
    IntegratedGradients,
    LayerCAM,
    RSIGradCAM,
)
from rsigradcam.methods import create_cam

ByLayer = dict[str, Explanation]


def one_layer_gives_an_explanation(model: nn.Module, images: Tensor) -> None:
    """A layer name, a module or the default ``"auto"``: an Explanation, no isinstance."""
    assert_type(RSIGradCAM(model, "head", steps=8)(images), Explanation)
    assert_type(RSIGradCAM(model)(images), Explanation)
    assert_type(RSIGradCAM(model, model.get_submodule("head"))(images), Explanation)
    assert_type(GradCAM(model, "head", output="softmax")(images), Explanation)
    assert_type(GradCAMPlusPlus(model, "head", eps=1e-6)(images), Explanation)
    assert_type(LayerCAM(model, "head")(images), Explanation)
    assert_type(IntegratedGradCAM(model, "head", steps=8)(images), Explanation)
    assert_type(IntegratedGradients(model, steps=8)(images), Explanation)
    assert_type(RSIGradCAM(model, "head").explain_variants(images), list[Explanation])


def a_list_gives_a_dict(model: nn.Module, images: Tensor, names: list[str]) -> None:
    """A list or tuple of layers: a dict by layer name."""
    assert_type(RSIGradCAM(model, names, steps=8)(images), ByLayer)
    assert_type(RSIGradCAM(model, ("a", model))(images), ByLayer)
    assert_type(GradCAM(model, names)(images), ByLayer)
    assert_type(GradCAMPlusPlus(model, names)(images), ByLayer)
    assert_type(LayerCAM(model, names)(images), ByLayer)
    assert_type(IntegratedGradCAM(model, names)(images), ByLayer)
    assert_type(IntegratedGradients(model, ["input"])(images), ByLayer)
    assert_type(RSIGradCAM(model, names).explain_variants(images), list[ByLayer])
    assert_type(create_cam("rsi", model, names, steps=8)(images), ByLayer)
