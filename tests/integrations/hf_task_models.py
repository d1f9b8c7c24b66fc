"""Tiny Hugging Face segmentation and detection models for the tests, built from configs.

Random weights from a fixed seed; nothing is downloaded. The layers explained in each are
the ones docs/which-layer.md names.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    DetrConfig,
    DetrForObjectDetection,
    ResNetConfig,
    SegformerConfig,
    SegformerForSemanticSegmentation,
    YolosConfig,
    YolosForObjectDetection,
)

LABELS = 3
#: SegFormer's input side (logits at a quarter of it), DETR's (a 4 x 4 last stage) and
#: YOLOS's (a 4 x 4 patch grid).
SEGFORMER_SIZE, DETR_SIZE, YOLOS_SIZE = 64, 128, 32
SEGFORMER_LAYER = "decode_head.linear_fuse"
DETR_LAYER = "model.input_projection"
YOLOS_LAYER = "vit.encoder.layer.0"
YOLOS_DETECTION_TOKENS = 4


def segformer(seed: int = 0) -> nn.Module:
    """SegFormer: four stages of one block, widths 8 to 32, decoder width 16, 3 labels."""
    torch.manual_seed(seed)
    config = SegformerConfig(
        depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], num_attention_heads=[1, 1, 1, 1],
        mlp_ratios=[2, 2, 2, 2], decoder_hidden_size=16, num_labels=LABELS,
        initializer_range=0.3,
    )  # fmt: skip
    return SegformerForSemanticSegmentation(config).eval()


def detr(seed: int = 0) -> nn.Module:
    """DETR with a small Hugging Face ResNet backbone (no timm), d_model 16, 5 queries."""
    torch.manual_seed(seed)
    backbone = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1],
        layer_type="basic", out_features=["stage4"],
    )  # fmt: skip
    config = DetrConfig(
        use_timm_backbone=False, backbone_config=backbone, num_queries=5, d_model=16,
        encoder_layers=1, decoder_layers=1, encoder_ffn_dim=32, decoder_ffn_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, num_labels=LABELS,
        init_std=0.3,
    )  # fmt: skip
    return DetrForObjectDetection(config).eval()


def yolos(seed: int = 0) -> nn.Module:
    """YOLOS: 32 x 32 images, 8 x 8 patches, hidden size 32, 2 layers, 4 detection tokens."""
    torch.manual_seed(seed)
    config = YolosConfig(
        image_size=[YOLOS_SIZE, YOLOS_SIZE], patch_size=8, hidden_size=32,
        num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        num_detection_tokens=YOLOS_DETECTION_TOKENS, num_labels=LABELS,
        initializer_range=0.3,
    )  # fmt: skip
    return YolosForObjectDetection(config).eval()


def yolos_grid(tokens: torch.Tensor) -> torch.Tensor:
    """A YOLOS layer's (N, 1 + 16 + 4, D) tokens -> the (N, D, 4, 4) patch grid.

    The class token leads and the detection tokens trail the patches.
    """
    n, _, d = tokens.shape
    side = YOLOS_SIZE // 8
    patches = tokens[:, 1 : 1 + side * side]
    return patches.reshape(n, side, side, d).permute(0, 3, 1, 2)
