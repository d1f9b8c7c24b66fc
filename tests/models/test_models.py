"""Tests for the embedded EfficientNet-Lite0 and the ImageNet class names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skdata
from torch import nn

import rsigradcam.models.efficientnet_lite as effnet
from rsigradcam.io import load_image
from rsigradcam.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EfficientNetLite0,
    efficientnet_lite0,
    imagenet_classes,
)

PAPER_SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "paper-samples"
DOG_CLASSES = range(151, 269)
DOMESTIC_CAT_CLASSES = range(281, 286)


@pytest.fixture(scope="module")
def model() -> EfficientNetLite0:
    return efficientnet_lite0()


@pytest.fixture(scope="module")
def names() -> list[str]:
    return imagenet_classes()


def _top1(model: nn.Module, x: torch.Tensor) -> tuple[int, float]:
    with torch.no_grad():
        probs = model(x).softmax(dim=1)[0]
    prob, index = probs.max(dim=0)
    return int(index), float(prob)


# ------------------------------------------------------------------------------------------
# Architecture and weights
# ------------------------------------------------------------------------------------------


def test_weights_file_is_found_inside_the_package() -> None:
    path = effnet.weights_path()
    assert path.is_file()
    assert path.name == "efficientnet-lite0-57934424.pth"


def test_every_reference_key_maps_onto_the_model_exactly() -> None:
    state = torch.load(effnet.weights_path(), map_location="cpu", weights_only=True)
    renamed = {effnet._rename_key(key): value for key, value in state.items()}
    expected = EfficientNetLite0().state_dict()
    assert set(renamed) == set(expected)
    for key, value in renamed.items():
        assert value.shape == expected[key].shape, key


def test_pretrained_weights_are_loaded(model: EfficientNetLite0) -> None:
    state = torch.load(effnet.weights_path(), map_location="cpu", weights_only=True)
    loaded = model.state_dict()
    assert torch.equal(loaded["stem.0.weight"], state["_conv_stem.weight"])
    assert torch.equal(
        loaded["blocks.7.depthwise.1.running_var"], state["_blocks.7._bn1.running_var"]
    )
    assert torch.equal(loaded["head.1.bias"], state["_bn1.bias"])
    assert torch.equal(loaded["classifier.bias"], state["_fc.bias"])


def test_model_is_in_eval_mode_with_expected_bn_epsilon(model: EfficientNetLite0) -> None:
    assert not model.training
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.eps == pytest.approx(1e-3) for m in norms)


def test_module_names_are_the_documented_contract(model: EfficientNetLite0) -> None:
    modules = dict(model.named_modules())
    for name in ["stem", "blocks", "head", "pool", "classifier"]:
        assert name in modules
    for index in range(16):
        assert f"blocks.{index}" in modules
    assert "blocks.16" not in modules
    assert isinstance(modules["classifier"], nn.Linear)
    assert modules["classifier"].in_features == 1280
    assert modules["classifier"].out_features == 1000
    # Only the first block (expansion ratio 1) has no expansion stage.
    assert model.blocks[0].expand is None
    assert all(model.blocks[i].expand is not None for i in range(1, 16))


def test_no_activation_is_in_place(model: EfficientNetLite0) -> None:
    activations = [m for m in model.modules() if isinstance(m, nn.ReLU6)]
    assert len(activations) == 1 + 15 + 16 + 1  # stem, expansions, depthwise, head
    assert not any(m.inplace for m in activations)


def test_layer_output_shapes_at_224(model: EfficientNetLite0) -> None:
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    wanted = {"stem", "blocks.0", "blocks.1", "blocks.5", "blocks.10", "blocks.15", "head"}
    for name, module in model.named_modules():
        if name in wanted:

            def hook(_m: nn.Module, _i: object, out: torch.Tensor, name: str = name) -> None:
                shapes[name] = tuple(out.shape)

            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            logits = model(torch.zeros(1, 3, 224, 224))
    finally:
        for handle in handles:
            handle.remove()
    assert logits.shape == (1, 1000)
    assert shapes == {
        "stem": (1, 32, 112, 112),
        "blocks.0": (1, 16, 112, 112),
        "blocks.1": (1, 24, 56, 56),
        "blocks.5": (1, 80, 14, 14),
        "blocks.10": (1, 112, 14, 14),
        "blocks.15": (1, 320, 7, 7),
        "head": (1, 1280, 7, 7),
    }


def test_residuals_only_where_shape_is_kept(model: EfficientNetLite0) -> None:
    with_residual = [i for i, block in enumerate(model.blocks) if block.has_residual]
    assert with_residual == [2, 4, 6, 7, 9, 10, 12, 13, 14]


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (224, 3, 2, (0, 1)),
        (224, 5, 2, (1, 2)),
        (225, 3, 2, (1, 1)),
        (7, 3, 1, (1, 1)),
        (7, 1, 1, (0, 0)),
    ],
)
def test_same_padding_matches_tensorflow(
    size: int, kernel: int, stride: int, expected: tuple[int, int]
) -> None:
    assert effnet._same_padding(size, kernel, stride) == expected


@pytest.mark.parametrize("kernel,stride,dilation", [(3, 2, 1), (5, 2, 1), (3, 1, 1), (3, 2, 2)])
@pytest.mark.parametrize("size", [(16, 16), (17, 16), (16, 17), (17, 17)])
@pytest.mark.parametrize("nhwc", [False, True])
def test_kernel_padding_reads_the_same_pixels(
    kernel: int, stride: int, dilation: int, size: tuple[int, int], nhwc: bool
) -> None:
    """Uneven "same" padding done by a kernel grown with zeros gives the padded output."""
    torch.manual_seed(0)
    conv = effnet.SameConv2d(6, 6, kernel, stride=stride, groups=3, bias=True)
    conv.dilation = (dilation, dilation)
    x = torch.randn(2, 6, *size)
    if nhwc:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(
            memory_format=torch.channels_last
        )
    with torch.no_grad():
        padded = conv(x)
        conv.prepare_inference_copy(torch.device("cpu"))
        grown = conv(x)
    assert grown.shape == padded.shape
    torch.testing.assert_close(grown, padded, rtol=1e-6, atol=1e-6)


def test_kernel_padding_keeps_the_gradients() -> None:
    conv = effnet.SameConv2d(4, 5, 3, stride=2, bias=True)
    x = torch.randn(1, 4, 10, 9, requires_grad=True)
    grads = []
    for on in (False, True):
        if on:
            conv.prepare_inference_copy(torch.device("cpu"))
        conv.zero_grad()
        (gx,) = torch.autograd.grad(conv(x).square().sum(), x)
        grads.append((gx, torch.autograd.grad(conv(x).sum(), conv.weight)[0]))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_any_input_size_works(model: EfficientNetLite0) -> None:
    with torch.no_grad():
        logits = model(torch.zeros(2, 3, 161, 97))
        features = model.forward_features(torch.zeros(1, 3, 161, 97))
    assert logits.shape == (2, 1000)
    assert features.shape == (1, 1280, 6, 4)


def test_batch_items_are_independent(model: EfficientNetLite0) -> None:
    x = torch.randn(3, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        batched = model(x)
        single = model(x[1:2])
    torch.testing.assert_close(batched[1:2], single, rtol=1e-4, atol=1e-4)


def test_random_init_reads_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("pretrained=False must not read the weights")

    monkeypatch.setattr(effnet, "weights_path", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    torch.manual_seed(0)
    random_model = efficientnet_lite0(pretrained=False)
    assert not random_model.training
    with torch.no_grad():
        logits = random_model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 1000)
    assert torch.isfinite(logits).all()


# ------------------------------------------------------------------------------------------
# Class names
# ------------------------------------------------------------------------------------------


def test_class_names(names: list[str]) -> None:
    assert len(names) == 1000
    assert all(isinstance(name, str) and name for name in names)
    assert len(set(names)) >= 998  # "crane" and "maillot" are each two classes
    assert names[285] == "Egyptian cat"
    assert names[967] == "espresso"
    assert names[872] == "tripod"
    assert names[714] == "pick"
    assert names[986] == "yellow lady's slipper"


def test_class_names_cache_cannot_be_corrupted() -> None:
    first = imagenet_classes()
    first[0] = "corrupted"
    first.clear()
    again = imagenet_classes()
    assert len(again) == 1000
    assert again[0] == "tench"


def test_normalisation_constants() -> None:
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert IMAGENET_STD == (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------------------------
# Predictions
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_name", "expected"),
    [
        ("chelsea", {"Egyptian cat", "tabby", "tiger cat"}),
        ("coffee", {"espresso"}),
        ("camera", {"tripod"}),
    ],
)
def test_scikit_image_samples_are_classified(
    model: EfficientNetLite0, names: list[str], image_name: str, expected: set[str]
) -> None:
    image: np.ndarray = getattr(skdata, image_name)()
    x, _ = load_image(image)
    index, prob = _top1(model, x)
    assert names[index] in expected
    assert prob > 0.5


@pytest.mark.skipif(not PAPER_SAMPLES.is_dir(), reason=f"{PAPER_SAMPLES} not available")
@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        ("beagle.jpg", "beagle"),
        ("dog-and-cat.jpg", None),
        ("pick.jpg", "pick"),
        ("soccer_ball.jpg", "soccer ball"),
        ("space_shuttle.jpg", "space shuttle"),
        ("yellow_ladys_slipper.jpg", "yellow lady's slipper"),
    ],
)
def test_paper_samples_are_classified(
    model: EfficientNetLite0, names: list[str], file_name: str, expected: str | None
) -> None:
    path = PAPER_SAMPLES / file_name
    if not path.is_file():
        pytest.skip(f"{path} not available")
    x, _ = load_image(path)
    index, _prob = _top1(model, x)
    if expected is None:
        assert index in DOG_CLASSES or index in DOMESTIC_CAT_CLASSES, names[index]
    else:
        assert names[index] == expected


def test_chelsea_confidence_with_full_resize(model: EfficientNetLite0, names: list[str]) -> None:
    chelsea: np.ndarray = skdata.chelsea()  # type: ignore[no-untyped-call]
    x, _ = load_image(chelsea)
    index, prob = _top1(model, x)
    assert names[index] == "Egyptian cat"
    assert prob == pytest.approx(0.80, abs=0.03)
    # A centre crop cuts off the cat's head: lower confidence.
    x_crop, _ = load_image(chelsea, mode="crop")
    _, prob_crop = _top1(model, x_crop)
    assert prob_crop < prob - 0.2
