"""
# The authors' variants: grad_relu and guided

The authors' code differs from the paper's formula in one place per notebook: their
PyTorch notebooks put a ReLU on the gradients before they are integrated
(`grad_relu=True`), their Keras notebook keeps the integrated gradients only where the
activation, the integrated gradient and the activation's change along the path are all
positive (`guided=True`). Both are options of `RSIGradCAM`; the defaults are the paper's
formula. See [the authors' notebooks](../../guides/authors-notebooks.md) for what else
their code does.
"""

# %%
# `explain_variants` computes several variants from one set of path passes: each result
# equals a call with that option, for the cost of one call.
import torch
from skimage import data

from rsigradcam import RSIGradCAM
from rsigradcam.io import load_image
from rsigradcam.models import efficientnet_lite0
from rsigradcam.viz import overlay

model = efficientnet_lite0()
image, rgb = load_image(data.chelsea())
variants = [{}, {"grad_relu": True}, {"guided": True}]
labels = ["the paper's formula", "grad_relu=True (PyTorch)", "guided=True (Keras)"]
layers = ["blocks.10", "head"]
results = RSIGradCAM(model, layers).explain_variants(image, variants=variants)

# %%
# Completeness, Σ IG = y(x) − y(x′), holds for the paper's formula only: with either
# variant the clipped values no longer sum to the change of the score, so the error is
# NaN, and the explanation says why.
for label, by_layer in zip(labels, results, strict=True):
    exp = by_layer["head"]
    print(f"{label:26s} completeness error at head {float(exp.completeness_error[0]):.4f}"
          f"  {exp.completeness_note}")

# %%
# How far the variants move the map: the correlation of each variant's heatmap with the
# paper's, per layer.
for name in layers:
    paper = results[0][name].heatmap.flatten()
    for label, by_layer in zip(labels[1:], results[1:], strict=True):
        other = by_layer[name].heatmap.flatten()
        r = float(torch.corrcoef(torch.stack([paper, other]))[0, 1])
        print(f"{name:9s} {label:26s} correlation with the paper's map {r:.3f}")

# %%
# The maps, side by side:
import matplotlib.pyplot as plt

fig, axes = plt.subplots(2, 3, figsize=(9, 6), layout="constrained")
for col, (label, by_layer) in enumerate(zip(labels, results, strict=True)):
    for row, name in enumerate(layers):
        axes[row][col].imshow(overlay(rgb, by_layer[name].heatmap[0]))
        axes[row][col].set_title(f"{label}, {name}", fontsize=9)
        axes[row][col].axis("off")
plt.show()
