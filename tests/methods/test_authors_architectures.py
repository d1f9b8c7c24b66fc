"""The authors' ResNet-50 and VGG-19 at their notebooks' layers (issue 18, item 4).

The models are the pure-torch copies of torchvision's in tests/architectures.py (random
weights, torchvision's module names). RSIGradCAM and GradCAM are compared with the slow
reference loop (tests/reference/loop.py: one point at a time, full backward pass to the
input) at ``layer4.2.conv3``, ``layer3.5.conv3``, ``features.36`` and ``features.27``,
and at layers whose output the model then changes in place (the residual add and the
in-place ReLUs). Most tests use a quarter of torchvision's channel widths and 64x64
images to stay fast; the graph and the names are the same.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

from rsigradcam import GradCAM, RSIGradCAM
from rsigradcam.baselines import BlackBaseline
from rsigradcam.constants import IMAGENET_NORMALIZE
from tests.architectures import (
    RESNET50_AUTHORS_LAYERS,
    VGG19,
    VGG19_AUTHORS_LAYERS,
    VGG19_LAST_CONVS,
    VGG19_POOLS,
    Bottleneck,
    ResNet50,
    resnet50,
    vgg19,
)
from tests.helpers import assert_same_state, model_state
from tests.reference.loop import activations_and_gradients, reference_rsi

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

SIZE = 64
STEPS = 4
# Seeds whose random maps are not all zero at every layer tested, for both images.
BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "resnet50": lambda: resnet50(10, width=16, seed=1),
    "vgg19": lambda: vgg19(10, width=16, hidden=64, seed=1),
}


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    return {name: build() for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """chelsea and coffee, the whole image resized to 64x64, ImageNet mean and std."""
    from skimage import data

    from rsigradcam.io import load_image

    return torch.cat([load_image(data.chelsea(), size=SIZE)[0],
                      load_image(data.coffee(), size=SIZE)[0]])


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def _compare_rsi(model: nn.Module, layer: str, images: torch.Tensor, steps: int,
                 grad_relu: bool = False) -> None:
    """RSIGradCAM in float64 against the reference loop, image by image."""
    exp = RSIGradCAM(model, layer, steps=steps, grad_relu=grad_relu, dtype=torch.float64)(images)
    model64, images64 = copy.deepcopy(model).double(), images.double()
    baselines = BlackBaseline(*IMAGENET_NORMALIZE)(images64)
    for n in range(images.shape[0]):
        ref = reference_rsi(model64, layer, images64[n], baselines[n], steps,
                            grad_relu=grad_relu)
        assert int(exp.targets[n]) == ref["target"]
        assert float(ref["layer_map"].max()) > 0, "a test on an all-zero map proves little"
        assert (exp.heatmap[n] - ref["heatmap"]).abs().max() < 1e-6
        assert _rel(exp.attributions[n], ref["attributions"]) < 1e-9
        assert _rel(exp.weights[n], ref["weights"]) < 1e-9
        assert _rel(exp.layer_map[n], ref["layer_map"]) < 1e-9
        assert exp.scores[n].item() == pytest.approx(ref["score"], rel=1e-12)
        assert exp.baseline_scores[n].item() == pytest.approx(ref["baseline_score"], rel=1e-12)


AUTHORS_LAYERS = [("resnet50", layer) for layer in RESNET50_AUTHORS_LAYERS] + [
    ("vgg19", layer) for layer in VGG19_AUTHORS_LAYERS
]


@pytest.mark.parametrize("grad_relu", [False, True], ids=["paper", "notebooks"])
@pytest.mark.parametrize(("arch", "layer"), AUTHORS_LAYERS)
def test_rsi_at_the_notebooks_layers_matches_reference(models, images, arch, layer, grad_relu):
    """The paper's formula and the notebooks' ReLU on the gradients, at their four layers.
    After ``conv3`` come ``bn3``, the in-place residual add and the in-place ReLU; the
    reference takes the gradient through all of them to the input."""
    _compare_rsi(models[arch], layer, images if not grad_relu else images[1:], STEPS, grad_relu)


@pytest.mark.parametrize(
    ("arch", "layer"),
    [("resnet50", "layer4.2.bn3"),  # its output is changed in place by ``out += identity``
     ("resnet50", "layer4.2"),  # a block's output, after the in-place ReLU
     ("resnet50", "layer4"),  # the usual Grad-CAM layer (``layer4[-1]``)
     ("vgg19", "features.34"),  # the last conv, changed in place by ReLU features.35
     ("vgg19", "features.35")],  # that in-place ReLU itself
)
def test_layers_changed_in_place_after_them_match_reference(models, images, arch, layer):
    _compare_rsi(models[arch], layer, images[:1], 4)


@pytest.mark.parametrize(("arch", "layer"), AUTHORS_LAYERS)
def test_gradcam_at_the_notebooks_layers_matches_reference(models, images, arch, layer):
    """Grad-CAM (logits): w_k = the spatial mean of dy/dA^k from one full backward pass."""
    model = models[arch]
    exp = GradCAM(model, layer, dtype=torch.float64)(images)
    model64 = copy.deepcopy(model).double()
    for n in range(images.shape[0]):
        target = int(exp.targets[n])
        (act,), (grad,), _ = activations_and_gradients(
            model64, layer, [images[n].double()], target, "logits"
        )
        weights = grad.mean(dim=(1, 2))
        layer_map = torch.relu((weights[:, None, None] * act).sum(dim=0))
        assert float(layer_map.max()) > 0
        assert _rel(exp.weights[n], weights) < 1e-9
        assert _rel(exp.layer_map[n], layer_map) < 1e-9


@pytest.mark.slow
def test_full_width_resnet50_matches_reference(images):
    """torchvision's own channel counts (25.6 M parameters), the notebooks' variant."""
    model = resnet50(10, width=64, seed=1)
    _compare_rsi(model, "layer4.2.conv3", images[:1], 2, grad_relu=True)


def test_module_objects_as_the_notebooks_write_them(models, images):
    """``model.layer4[-1].conv3`` and ``model.features[36]`` name the same layers."""
    resnet, vgg = models["resnet50"], models["vgg19"]
    for model, module, name in [(resnet, resnet.layer4[-1].conv3, "layer4.2.conv3"),
                                (resnet, resnet.layer3[-1].conv3, "layer3.5.conv3"),
                                (vgg, vgg.features[36], "features.36"),
                                (vgg, vgg.features[27], "features.27")]:
        by_module = RSIGradCAM(model, module, steps=3)(images[:1])
        by_name = RSIGradCAM(model, name, steps=3)(images[:1])
        assert by_module.layer == name
        assert torch.equal(by_module.heatmap, by_name.heatmap)


@pytest.mark.parametrize("arch", ["resnet50", "vgg19"])
def test_the_model_is_left_as_it_was(images, arch):
    """A model in train mode with frozen parameters: parameters, BatchNorm running
    statistics, train/eval flags, requires_grad flags, gradients and hooks are unchanged,
    and the maps are the eval-mode maps (no Dropout, BatchNorm from running statistics)."""
    model = BUILDERS[arch]()
    layers = list(RESNET50_AUTHORS_LAYERS if arch == "resnet50" else VGG19_AUTHORS_LAYERS)
    eval_maps = GradCAM(model, layers)(images)
    model.train()
    first = next(iter(model.children()))
    for p in first.parameters():
        p.requires_grad_(False)
    before = model_state(model)
    rsi = RSIGradCAM(model, layers, steps=3, grad_relu=True)(images)
    rsi64 = RSIGradCAM(model, layers[0], steps=2, grad_relu=True, dtype=torch.float64)(images)
    grad = GradCAM(model, layers)(images)
    assert_same_state(before, model_state(model))
    assert model.training and not any(p.requires_grad for p in first.parameters())
    for layer in layers:
        assert torch.equal(grad[layer].heatmap, eval_maps[layer].heatmap)
    assert set(rsi) == set(layers) and rsi64.layer == layers[0]


def test_the_shared_relu_of_a_bottleneck_is_refused(models, images):
    """torchvision's Bottleneck runs one ReLU module three times: not one activation."""
    with pytest.raises(ValueError, match=r"^layer 'layer4\.2\.relu' ran more than once in one "
                       r"forward pass \(a module reused in the graph\)"):
        RSIGradCAM(models["resnet50"], "layer4.2.relu", steps=2)(images[:1])


def test_auto_layers(models, images):
    """``layer="auto"`` is the last layer with a spatial output that runs once: ``layer4``
    for ResNet-50 and ``avgpool`` for VGG-19, which at 224x224 is the identity on
    ``features.36``'s 7x7 output, so it gives the same map there."""
    assert GradCAM(models["resnet50"], "auto")(images).layer == "layer4"
    vgg = models["vgg19"]
    assert GradCAM(vgg, "auto")(images).layer == "avgpool"
    torch.manual_seed(0)
    big = torch.randn(1, 3, 224, 224)
    at_pool = GradCAM(vgg, "avgpool", dtype=torch.float64)(big)
    at_features = GradCAM(vgg, "features.36", dtype=torch.float64)(big)
    torch.testing.assert_close(at_pool.layer_map, at_features.layer_map, rtol=1e-12, atol=0)


def test_torchvisions_structure():
    """Names, block counts, in-place ReLUs, the ``features`` indices, the parameter counts
    of torchvision's resnet50 and vgg19 (1000 classes) and the notebook layers' shapes at
    224x224 (built on the meta device: no memory, no arithmetic)."""
    assert VGG19_POOLS == [4, 9, 18, 27, 36] and VGG19_LAST_CONVS == [2, 7, 16, 25, 34]
    with torch.device("meta"):
        resnet, vgg = ResNet50(1000).eval(), VGG19(1000).eval()
    assert sum(p.numel() for p in resnet.parameters()) == 25_557_032
    assert sum(p.numel() for p in vgg.parameters()) == 143_667_240
    assert [len(getattr(resnet, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    names = dict(resnet.named_modules())
    for name in ("conv1", "bn1", "relu", "maxpool", "avgpool", "fc", "layer1.0.downsample.0",
                 "layer1.0.downsample.1", "layer4.2.conv3", "layer4.2.bn3", "layer3.5.conv3"):
        assert name in names
    assert "layer1.1.downsample" not in names and "layer2.0.downsample" in names
    block = resnet.layer4[2]
    assert isinstance(block, Bottleneck) and block.relu.inplace
    assert len(vgg.features) == 37 and len(vgg.classifier) == 7
    kinds = [type(m).__name__ for m in vgg.features]
    assert [i for i, k in enumerate(kinds) if k == "MaxPool2d"] == VGG19_POOLS
    assert all(kinds[i] == "Conv2d" and kinds[i + 1] == "ReLU" for i in VGG19_LAST_CONVS)
    assert all(m.inplace for m in vgg.features if isinstance(m, nn.ReLU))
    shapes: dict[str, tuple[int, ...]] = {}
    for model, layers in ((resnet, RESNET50_AUTHORS_LAYERS), (vgg, VGG19_AUTHORS_LAYERS)):
        for name in layers:
            model.get_submodule(name).register_forward_hook(
                lambda m, a, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:]))
            )
        with torch.no_grad():
            assert model(torch.zeros(1, 3, 224, 224, device="meta")).shape == (1, 1000)
    assert shapes == {"layer4.2.conv3": (2048, 7, 7), "layer3.5.conv3": (1024, 14, 14),
                      "features.36": (512, 7, 7), "features.27": (512, 14, 14)}
