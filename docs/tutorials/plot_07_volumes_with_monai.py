"""
# Volumes with MONAI

Explain MONAI's 3-D ResNet-10 on a volume (N, 1, D, H, W), with `rsigradcam.RSIGradCAM`
and with the MONAI-shaped front-end `rsigradcam.integrations.monai`, and look at the maps
slice by slice. The guides: [Volumes and other tasks](../../guides/volumes-and-tasks.md)
and [Coming from MONAI](../../from-monai.md).

The network has random weights and the volume is synthetic, so the maps mean nothing
about anatomy; for a trained model load its weights into the network
(`model.load_state_dict(torch.load(path))`) and pass your volumes after the transforms it
was trained with, and keep the calls.
"""

# %%
# The network and a volume: a bright sphere, off centre, in Gaussian noise.
import torch
from monai.networks.nets import resnet10

torch.manual_seed(0)
model = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()

side = 32
z, y, x = torch.meshgrid(*(torch.arange(side, dtype=torch.float32),) * 3, indexing="ij")
centre = (12, 20, 16)
sphere = ((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) <= 6**2
volume = (0.3 * torch.randn(side, side, side) + 2.0 * sphere)[None, None]  # (1, 1, 32, 32, 32)
with torch.no_grad():
    print("logits", [round(v, 3) for v in model(volume)[0].tolist()])

# %%
# RSI-Grad-CAM at `layer2`, whose (N, 128, 8, 8, 8) output every path to the score runs
# through. The default baseline, `"black"`, needs ImageNet-style normalisation of three
# channels; a one-channel volume takes `"zeros"` (or `"blur"`, `"noise"`, a tensor).
from rsigradcam import RSIGradCAM

rsi = RSIGradCAM(model, "layer2", steps=32, baseline="zeros", output="logits")(volume, 1)
print("layer map", tuple(rsi.layer_map.shape), "heatmap", tuple(rsi.heatmap.shape))
print(f"logit of class 1: {float(rsi.scores[0]):.3f}, "
      f"completeness error {float(rsi.completeness_error[0]):.4f}")

# %%
# The same model through the front-end with MONAI's constructor and call. Its `GradCAM`
# gives `monai.visualize.GradCAM`'s maps; `postprocessing` turns MONAI's normaliser
# (largest value mapped to 0) round, so that the evidence is high.
from monai.visualize import GradCAM as MonaiGradCAM

from rsigradcam.integrations.monai import GradCAM, default_normalizer

cam = GradCAM(nn_module=model, target_layers="layer2",
              postprocessing=lambda m: 1 - default_normalizer(m))
grad = cam(x=volume, class_idx=1)  # (1, 1, 32, 32, 32)
theirs = 1 - MonaiGradCAM(nn_module=model, target_layers="layer2")(x=volume, class_idx=1)
print("front-end", tuple(grad.shape), "largest difference from MONAI's:",
      f"{float((grad - torch.as_tensor(theirs)).abs().max()):.2e}")

# %%
# One slice through the sphere's centre along each axis: the volume, then each map over
# it. With random weights the maps show where these weights respond, not the sphere.
import matplotlib.pyplot as plt
import numpy as np

from rsigradcam.viz import overlay


def grey_rgb(picture: np.ndarray) -> np.ndarray:
    """A 2-D slice scaled to [0, 255] as an RGB image."""
    scaled = (picture - volume.min().item()) / (volume.max() - volume.min()).item()
    return np.repeat((255 * scaled).astype(np.uint8)[..., None], 3, axis=-1)


rows = [
    ("volume", None),
    ("RSI-Grad-CAM", rsi.heatmap[0]),
    ("Grad-CAM (MONAI-shaped)", grad[0, 0]),
]
fig, axes = plt.subplots(3, 3, figsize=(7.5, 7.5), layout="constrained")
for col, index in enumerate(centre):
    picture = grey_rgb(volume[0, 0].numpy().take(index, axis=col))
    for row, (label, heatmap) in enumerate(rows):
        ax = axes[row][col]
        ax.imshow(picture if heatmap is None else
                  overlay(picture, heatmap.numpy().take(index, axis=col)))
        ax.set_title(f"{label}\naxis {col}, slice {index}", fontsize=8)
        ax.axis("off")
plt.show()
