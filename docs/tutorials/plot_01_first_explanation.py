"""
# A first explanation

Explain what the embedded EfficientNet-Lite0 saw in a photo, with Grad-CAM and
RSI-Grad-CAM at three depths, and read the explanation's own diagnostic.
"""

# %%
# Load the model and a photo. `load_image` resizes to 224 x 224 and normalises with the
# ImageNet statistics; it also returns the RGB pixels for the figures.
from skimage import data

from rsigradcam import GradCAM, RSIGradCAM
from rsigradcam.io import load_image
from rsigradcam.models import efficientnet_lite0, imagenet_classes
from rsigradcam.viz import overlay

model = efficientnet_lite0()
image, rgb = load_image(data.chelsea())
classes = imagenet_classes()

# %%
# One call explains several layers from one set of forward passes: a list of layers gives
# a dict of explanations by layer name.
layers = ["blocks.5", "blocks.10", "head"]
rsi = RSIGradCAM(model, layers)(image)
grad = GradCAM(model, layers)(image)
top = int(rsi["head"].targets[0])
print(f"top-1: {classes[top]} (p = {float(rsi['head'].scores[0]):.3f})")
for name, exp in rsi.items():
    print(f"{name:10s} completeness error {float(exp.completeness_error[0]):.4f}, "
          f"{exp.n_evaluations} model evaluations")

# %%
# The completeness error says how far the Riemann–Stieltjes sum is from the change of the
# score, y(x) − y(x′): a few percent at m = 50 on the middle layers, less at `head`.
# The maps, side by side (`overlay` blends a heatmap onto the RGB photo):
import matplotlib.pyplot as plt

fig, axes = plt.subplots(2, 3, figsize=(9, 6), layout="constrained")
for row, (label, by_layer) in enumerate((("Grad-CAM", grad), ("RSI-Grad-CAM", rsi))):
    for col, (name, exp) in enumerate(by_layer.items()):
        axes[row][col].imshow(overlay(rgb, exp.heatmap[0]))
        axes[row][col].set_title(f"{label}, {name}", fontsize=9)
        axes[row][col].axis("off")
plt.show()
