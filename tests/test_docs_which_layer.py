"""docs/which-layer.md: the Hugging Face layer names it gives exist and explain (issue 18, item 4).

Each model is built from a small config with transformers (random weights, nothing
downloaded), with the depths of the sizes the guide names, so that the names are the same
strings (``vit.layers.11.layernorm_before``, ``resnet.encoder.stages.3.layers.2...``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from rsigradcam import GradCAM, RSIGradCAM
from rsigradcam.baselines import BlackBaseline
from rsigradcam.constants import IMAGENET_NORMALIZE
from rsigradcam.core.reshape import TokenGrid
from tests.reference.loop import reference_rsi

transformers = pytest.importorskip("transformers")
# Random weights: some Grad-CAM maps are all zero, which only the shapes tested here allow.
pytestmark = pytest.mark.filterwarnings("ignore:gradcam map at layer .* is zero everywhere")

DOC = Path(__file__).resolve().parents[1] / "docs" / "which-layer.md"


def permute(t: torch.Tensor) -> torch.Tensor:
    """The guide's channels-last transform: (N, H, W, C) -> (N, C, H, W)."""
    return t.permute(0, 3, 1, 2)


def _vit() -> nn.Module:
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=16,
                                    num_hidden_layers=12, num_attention_heads=2,
                                    intermediate_size=32, num_labels=5)
    return transformers.ViTForImageClassification(config)


def _deit() -> nn.Module:
    config = transformers.DeiTConfig(image_size=32, patch_size=8, hidden_size=16,
                                     num_hidden_layers=12, num_attention_heads=2,
                                     intermediate_size=32, num_labels=5)
    return transformers.DeiTForImageClassificationWithTeacher(config)


def _swin() -> nn.Module:
    config = transformers.SwinConfig(image_size=64, patch_size=4, embed_dim=8,
                                     depths=[2, 2, 6, 2], num_heads=[1, 1, 2, 2],
                                     window_size=2, num_labels=5)
    return transformers.SwinForImageClassification(config)


def _convnext() -> nn.Module:
    config = transformers.ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[3, 3, 9, 3],
                                         num_labels=5)
    return transformers.ConvNextForImageClassification(config)


def _resnet() -> nn.Module:
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[16, 16, 32, 32],
                                       depths=[3, 4, 6, 3], layer_type="bottleneck",
                                       num_labels=5)
    return transformers.ResNetForImageClassification(config)


def _efficientnet() -> nn.Module:
    # B0's depth (16 blocks) at a quarter of its width.
    config = transformers.EfficientNetConfig(image_size=64, width_coefficient=0.25,
                                             depth_coefficient=1.0, hidden_dim=320,
                                             num_labels=5)
    return transformers.EfficientNetForImageClassification(config)


BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "vit": _vit, "deit": _deit, "swin": _swin, "convnext": _convnext, "resnet": _resnet,
    "efficientnet": _efficientnet,
}
SIZES = {"vit": 32, "deit": 32, "swin": 64, "convnext": 64, "resnet": 64, "efficientnet": 64}

# (model, layer as the guide writes it, reshape_transform, the map's (h, w))
LAYERS = [
    ("vit", "vit.layers.11.layernorm_before", "tokens", (4, 4)),
    ("deit", "deit.layers.11.layernorm_before", "tokens", (4, 4)),
    ("swin", "swin.layernorm", "tokens", (2, 2)),
    ("swin", "swin.encoder.layers.3", "tokens", (2, 2)),
    ("swin", "swin.encoder.layers.3.blocks.1.layernorm_before", "tokens", (2, 2)),
    ("convnext", "convnext.encoder.stages.3", None, (2, 2)),
    ("convnext", "convnext.encoder.stages.3.layers.2.layernorm", permute, (2, 2)),
    ("resnet", "resnet.encoder.stages.3", None, (2, 2)),
    ("resnet", "resnet.encoder.stages.3.layers.2.layer.2.convolution", None, (2, 2)),
    ("resnet", "resnet.encoder.stages.2.layers.5.layer.2.convolution", None, (4, 4)),
    ("efficientnet", "efficientnet.encoder.top_activation", None, (2, 2)),
    ("efficientnet", "efficientnet.encoder.blocks.15", None, (2, 2)),
]


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return BUILDERS[name]().eval()


def _images(name: str, n: int = 2) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(n, 3, SIZES[name], SIZES[name])


@pytest.mark.parametrize(("arch", "layer", "reshape", "grid"), LAYERS,
                         ids=[f"{a}-{layer}" for a, layer, _, _ in LAYERS])
def test_the_guides_hugging_face_layers_exist_and_explain(arch, layer, reshape, grid):
    assert f"`{layer}`" in DOC.read_text(encoding="utf-8")
    model = _model(arch)
    assert layer in dict(model.named_modules())
    exp = GradCAM(model, layer, reshape_transform=reshape)(_images(arch))
    assert tuple(exp.attributions.shape[2:]) == grid
    assert exp.heatmap.shape == (2, SIZES[arch], SIZES[arch])


class Logits(nn.Module):
    """A Hugging Face classifier as a plain (N, classes) function, for the reference loop."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


@pytest.mark.parametrize(
    ("arch", "layer", "reshape", "reference_reshape"),
    [("swin", "swin.layernorm", "tokens", TokenGrid()),
     ("deit", "deit.layers.11.layernorm_before", "tokens", TokenGrid()),
     ("convnext", "convnext.encoder.stages.3.layers.2.layernorm", permute, permute)],
)
def test_token_and_channels_last_layers_match_reference(arch, layer, reshape,
                                                        reference_reshape):
    """Swin (no class token), DeiT with its distillation token (two prefix tokens) and a
    channels-last ConvNeXt norm with the guide's permute, against the reference loop."""
    model, image = _model(arch), _images(arch, 1)
    exp = RSIGradCAM(model, layer, steps=3, reshape_transform=reshape,
                     dtype=torch.float64)(image)
    wrapped = Logits(copy.deepcopy(model)).double()
    image64 = image.double()
    baseline = BlackBaseline(*IMAGENET_NORMALIZE)(image64)[0]
    ref = reference_rsi(wrapped, f"model.{layer}", image64[0], baseline, 3,
                        reshape=reference_reshape)
    assert int(exp.targets[0]) == ref["target"]
    assert float(ref["layer_map"].max()) > 0
    assert (exp.heatmap[0] - ref["heatmap"]).abs().max() < 1e-6
    assert float((exp.weights[0] - ref["weights"]).norm() / ref["weights"].norm()) < 1e-9


def test_deits_two_prefix_tokens_are_inferred():
    assert TokenGrid().layout(198) == (2, 14, 14)  # class + distillation + 14x14 patches
    assert TokenGrid().layout(197) == (1, 14, 14)  # ViT: class token
    assert TokenGrid().layout(49) == (0, 7, 7)  # Swin: no class token


def test_a_channels_last_map_without_the_permute_explains_the_wrong_axes():
    """What the guide warns of: an (N, H, W, C) output is 4-D, so it runs, with H taken
    as the channels and (W, C) as the map."""
    model = _model("convnext")
    layer = "convnext.encoder.stages.3.layers.2.layernorm"
    wrong = GradCAM(model, layer)(_images("convnext"))
    right = GradCAM(model, layer, reshape_transform=permute)(_images("convnext"))
    assert tuple(wrong.attributions.shape[1:]) == (2, 2, 32)
    assert tuple(right.attributions.shape[1:]) == (32, 2, 2)
