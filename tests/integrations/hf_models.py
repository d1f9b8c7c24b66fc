"""Tiny Hugging Face ``transformers`` classifiers for the tests, built from configs.

Random weights from a fixed seed; nothing is downloaded. Each factory is a
``--model tests.integrations.hf_models:NAME`` callable; its forward returns an
``ImageClassifierOutput`` (a ``ModelOutput``), not a tensor. ``*_logits`` are the same
models behind :class:`Logits`, whose forward returns the logits tensor.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    ConvNextConfig,
    ConvNextForImageClassification,
    ResNetConfig,
    ResNetForImageClassification,
    ViTConfig,
    ViTForImageClassification,
)

LABELS = 4
#: Input sides: the ViT's 32 x 32 gives a 4 x 4 patch grid; the CNNs' last stage is 2 x 2
#: at 64 x 64.
VIT_SIZE, CNN_SIZE = 32, 64


class Logits(nn.Module):
    """A model whose forward returns ``model(x).logits``; its layers are ``model.NAME``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(x).logits
        return logits


def vit(seed: int = 0) -> nn.Module:
    """ViT: 32 x 32 images, 8 x 8 patches, hidden size 32, 2 layers, 4 labels."""
    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=VIT_SIZE, patch_size=8, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, num_labels=LABELS, initializer_range=0.3,
    )  # fmt: skip
    return ViTForImageClassification(config).eval()


def convnext(seed: int = 0) -> nn.Module:
    """ConvNeXt: four stages of one block, widths 8 to 32, 4 labels."""
    torch.manual_seed(seed)
    config = ConvNextConfig(
        hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], num_labels=LABELS,
        initializer_range=0.3,
    )  # fmt: skip
    return ConvNextForImageClassification(config).eval()


def resnet(seed: int = 0) -> nn.Module:
    """ResNet: basic blocks, four stages of one block, widths 8 to 32, 4 labels."""
    torch.manual_seed(seed)
    config = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
        layer_type="basic", num_labels=LABELS,
    )  # fmt: skip
    return ResNetForImageClassification(config).eval()


def resnet_logits(seed: int = 0) -> nn.Module:
    """:func:`resnet` behind :class:`Logits`."""
    return Logits(resnet(seed)).eval()


def resnet_base(seed: int = 0) -> nn.Module:
    """:func:`resnet`'s backbone without a head: its output holds no ``logits``."""
    return resnet(seed).resnet.eval()
