"""
# Hugging Face models

Explain a `transformers` ViT at a token layer and a `transformers` ResNet at a stage,
as they are, without a wrapper. The guide: [Hugging Face models](../../guides/huggingface.md).

The models here are built from small configs with random weights, so nothing is
downloaded and the maps mean nothing; for a trained model replace each
`...ForImageClassification(config)` by `...ForImageClassification.from_pretrained(name)`
and the inputs by that model's preprocessed images, and keep the calls.
"""

# %%
# Two small models for 128 x 128 images: a ViT with 16 x 16 patches (an 8 x 8 grid of
# patch tokens after the class token) and a ResNet of four basic stages.
import torch
from skimage import data
from transformers import (
    ResNetConfig,
    ResNetForImageClassification,
    ViTConfig,
    ViTForImageClassification,
)

from rsigradcam import GradCAM, RSIGradCAM
from rsigradcam.io import load_image
from rsigradcam.viz import overlay

torch.manual_seed(0)
vit = ViTForImageClassification(ViTConfig(
    image_size=128, patch_size=16, hidden_size=32, num_hidden_layers=2,
    num_attention_heads=2, intermediate_size=64, num_labels=5, initializer_range=0.3,
)).eval()
torch.manual_seed(0)
resnet = ResNetForImageClassification(ResNetConfig(
    embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
    layer_type="basic", num_labels=5,
)).eval()
image, rgb = load_image(data.chelsea(), size=128)  # (1, 3, 128, 128), ImageNet-normalised
print("ViT logits:", tuple(vit(image).logits.shape), "ResNet logits:",
      tuple(resnet(image).logits.shape))

# %%
# The model's output is a `ModelOutput`; its `logits` are the scores, with no wrapper.
# A ViT layer gives tokens (N, 1 + 64, 32): `reshape_transform="tokens"` drops the class
# token and lays the 64 patch tokens out as an (N, 32, 8, 8) map. The layer names are
# those of transformers 5.x (`vit.encoder.layer.N` in 4.x).
layer = "vit.layers.1.layernorm_before"
vit_rsi = RSIGradCAM(vit, layer, reshape_transform="tokens", steps=32)(image)
vit_grad = GradCAM(vit, layer, reshape_transform="tokens")(image)
print("ViT layer map", tuple(vit_rsi.layer_map.shape), "heatmap", tuple(vit_rsi.heatmap.shape))
print(f"class {int(vit_rsi.targets[0])}, completeness error "
      f"{float(vit_rsi.completeness_error[0]):.4f}")
print(vit_rsi.completeness_note)

# %%
# The error is NaN, and the note says why: the residual stream and the dropped class token
# let the score bypass the layer's map, so the sum need not equal y(x) − y(x′) there.

# %%
# The ResNet's stages are spatial maps already: no reshape. The last stage cuts the graph
# (every path to the score runs through it), so completeness holds there.
stage = "resnet.encoder.stages.3"
res_rsi = RSIGradCAM(resnet, stage, steps=32)(image)
res_grad = GradCAM(resnet, stage)(image)
print("ResNet layer map", tuple(res_rsi.layer_map.shape))
print(f"class {int(res_rsi.targets[0])}, completeness error "
      f"{float(res_rsi.completeness_error[0]):.4f}")

# %%
# The maps over the photo. With random weights they show where these weights happen to
# respond, not where a cat is.
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 5, figsize=(12, 2.8), layout="constrained")
panels = [
    ("input (128 x 128)", rgb),
    ("ViT, Grad-CAM", overlay(rgb, vit_grad.heatmap[0])),
    ("ViT, RSI-Grad-CAM", overlay(rgb, vit_rsi.heatmap[0])),
    ("ResNet, Grad-CAM", overlay(rgb, res_grad.heatmap[0])),
    ("ResNet, RSI-Grad-CAM", overlay(rgb, res_rsi.heatmap[0])),
]
for ax, (title, picture) in zip(axes, panels, strict=True):
    ax.imshow(picture)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
plt.show()
