"""The one method registry: names, class metadata, and building every method by name."""

from __future__ import annotations

import pytest

from rsigradcam import (
    METHODS,
    BaseCAM,
    Explanation,
    GradCAM,
    GradCAMPlusPlus,
    IntegratedGradCAM,
    IntegratedGradients,
    LayerCAM,
    RSIGradCAM,
)
from rsigradcam.methods import PathCAM, create_cam, method_class, method_layers
from tests.helpers import make_case

#: name -> (class, label, takes_steps, explains_input)
EXPECTED = {
    "rsi": (RSIGradCAM, "RSI-Grad-CAM", True, False),
    "gradcam": (GradCAM, "Grad-CAM", False, False),
    "gradcam++": (GradCAMPlusPlus, "Grad-CAM++", False, False),
    "layercam": (LayerCAM, "LayerCAM", False, False),
    "integrated-gradcam": (IntegratedGradCAM, "Integrated Grad-CAM", True, False),
    "ig": (IntegratedGradients, "Integrated Gradients", True, True),
}
PATH_ATTRIBUTES = ("normalize", "path", "n_samples", "steps", "partition", "_baselines")


def test_methods_keys_and_class_metadata():
    assert list(METHODS) == list(EXPECTED)
    for name, (cls, label, takes_steps, explains_input) in EXPECTED.items():
        assert METHODS[name] is cls and method_class(name) is cls
        assert cls.method_name == name and cls.label == label
        assert cls.takes_steps is takes_steps and cls.explains_input is explains_input
        assert issubclass(cls, BaseCAM)
        assert issubclass(cls, PathCAM) is takes_steps  # the path state lives on PathCAM
    with pytest.raises(ValueError, match="unknown method 'rsi-gradcam'; use one of rsi, "):
        method_class("rsi-gradcam")


def test_method_layers():
    for name in METHODS:
        expected = ["input"] if name == "ig" else ["features", "conv"]
        assert method_layers(name, ["features", "conv"]) == expected


@pytest.mark.filterwarnings("ignore:.*map at layer.*is zero everywhere:RuntimeWarning")
def test_create_cam_builds_every_method_and_names_its_explanations():
    model, images = make_case(5, n=1)
    for name, (cls, *_) in EXPECTED.items():
        cam = create_cam(name, model, ["conv"], steps=3, batch_size=4)
        assert type(cam) is cls
        if isinstance(cam, PathCAM):
            assert cam.steps == 3
        explanations = cam(images, 2)  # a dict by layer for every method
        assert list(explanations) == method_layers(name, ["conv"])
        for exp in explanations.values():
            assert exp.method == name
            assert exp.n_evaluations == (4 if cls.takes_steps else 1)
            assert exp.heatmap.shape == (1, 12, 12) and int(exp.targets[0]) == 2


def test_every_method_is_built_with_the_same_call():
    model, images = make_case(5, n=1)
    for name, cls in METHODS.items():
        layer = "input" if cls.explains_input else "conv"
        exp = cls(model, layer, batch_size=4)(images, targets=2)
        assert isinstance(exp, Explanation), name
        assert exp.heatmap.shape == (1, 12, 12) and int(exp.targets[0]) == 2
        assert float(exp.heatmap.max()) == pytest.approx(1.0)


def test_gradcam_family_carries_no_path_state():
    model, _ = make_case(5, n=1)
    for cls in (GradCAM, GradCAMPlusPlus, LayerCAM):
        cam = cls(model, "conv")
        assert not isinstance(cam, PathCAM)
        for attribute in (*PATH_ATTRIBUTES, "baseline"):
            assert not hasattr(cam, attribute), (cls.__name__, attribute)
        for option in ("baseline", "steps", "path"):
            with pytest.raises(TypeError, match=option):
                cls(model, "conv", **{option: None})
    for cls in (RSIGradCAM, IntegratedGradCAM, IntegratedGradients):
        cam = cls(model)
        assert isinstance(cam, PathCAM)
        assert all(hasattr(cam, attribute) for attribute in PATH_ATTRIBUTES)
        assert not hasattr(cam, "baseline")  # the spec is checked and kept as _baselines


def test_defaults_are_kept():
    model, _ = make_case(5, n=1)
    default = RSIGradCAM(model)
    assert (default.layer, default.steps, default.rule, default.output) == (
        "auto", 50, "trapezoid", "softmax"
    )
    assert default.normalize is not None and default.n_samples == 1 and default.path is None
    assert not default.grad_relu and not default.guided and default.batch_size is None
    assert IntegratedGradCAM(model).output == "logits"
    ig = IntegratedGradients(model)
    assert (ig.steps, ig.rule, ig.output, ig.pixel_map) == (50, "trapezoid", "softmax", "positive")
    assert GradCAM(model).output == "logits" and GradCAMPlusPlus(model).output == "logits"
    assert LayerCAM(model).output == "logits"
    with pytest.raises(TypeError, match="reshape_transform"):
        IntegratedGradients(model, reshape_transform="tokens")


@pytest.mark.parametrize("cls", [IntegratedGradCAM, IntegratedGradients])
def test_steps_auto_is_refused_where_the_method_has_no_adaptive_partition(cls):
    with pytest.raises(ValueError, match=r"steps='auto' is available for RSIGradCAM only"):
        cls(make_case(5, n=1)[0], steps="auto")
    assert RSIGradCAM.adaptive_steps and not cls.adaptive_steps


def test_create_cam_gives_path_options_and_variants_only_to_the_methods_that_take_them():
    model, _ = make_case(5, n=1)
    common = {"path_options": {"normalize": None}, "variants": {"grad_relu": True}}
    for name, cls in METHODS.items():
        cam = create_cam(name, model, ["conv"], steps=3, **common)
        assert type(cam) is cls
        if cls.takes_steps:
            assert cam.steps == 3 and cam.normalize is None  # type: ignore[attr-defined]
        else:
            assert not hasattr(cam, "normalize")
        assert getattr(cam, "grad_relu", False) is ("grad_relu" in cls.variants)
