"""
# Multi-label and regression heads

A multi-label classifier scores each label on its own, through a sigmoid; a regression
head outputs numbers, not classes. Explain the first with `output="sigmoid"` and the
second with `RegressionTarget`. The guide: [Volumes and other tasks](../../guides/volumes-and-tasks.md#segmentation-detection-multi-label-and-regression).

The two small networks have random weights, so their maps mean nothing; for trained
models load their weights (`model.load_state_dict(torch.load(path))`) and pass images
preprocessed as in their training, and keep the calls.
"""

# %%
# Two photos at 64 x 64, and one small network body with two heads: four labels, and one
# regression unit (say, an age or a count).
import torch
from skimage import data
from torch import nn

from rsigradcam import ClassTarget, GradCAM, RegressionTarget, RSIGradCAM
from rsigradcam.io import load_image
from rsigradcam.viz import overlay


class SmallCNN(nn.Module):
    """(N, 3, H, W) -> (N, outputs): two convolutions, global average pooling, a linear head."""

    def __init__(self, outputs: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU())
        self.conv = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(32, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(self.stem(x)).mean(dim=(2, 3)))


torch.manual_seed(0)
multilabel = SmallCNN(4).eval()
regressor = SmallCNN(1).eval()
photos = [load_image(photo, size=64) for photo in (data.chelsea(), data.coffee())]
images = torch.cat([tensor for tensor, _ in photos])  # (2, 3, 64, 64)
rgbs = [rgb for _, rgb in photos]


def rounded(values: torch.Tensor) -> list[float]:
    """Values as a list, to 3 decimals, for printing."""
    return [round(float(v), 3) for v in values.flatten()]


with torch.no_grad():
    print("label probabilities", [rounded(p) for p in torch.sigmoid(multilabel(images))])
    print("regression outputs", rounded(regressor(images)))

# %%
# Multi-label: `output="sigmoid"` explains each label's probability on its own (a softmax
# would make the labels compete). `targets` gives one label per image; to see every label
# of one image, repeat the image.
exp = RSIGradCAM(multilabel, "conv", output="sigmoid", steps=32)(images, targets=[3, 0])
print("explained sigmoid scores", rounded(exp.scores))
first = images[:1].expand(4, -1, -1, -1)
per_label = RSIGradCAM(multilabel, "conv", output="sigmoid", steps=32)(first, [0, 1, 2, 3])
print("completeness errors, labels 0-3 of the first photo",
      [f"{float(e):.1e}" for e in per_label.completeness_error])
# the one-point methods take the same score as a target
grad = GradCAM(multilabel, "conv")(first, ClassTarget([0, 1, 2, 3], output="sigmoid"))

# %%
# Regression: `RegressionTarget(unit)` explains the output unit as it is, whatever its
# sign. The baseline `"zeros"` (the mean image after normalisation) starts the path at an
# input that is not black. The layer map keeps positive evidence only (a ReLU), so a map
# says where the activations raise the value.
reg = RSIGradCAM(regressor, "conv", baseline="zeros", steps=32)(images, RegressionTarget(0))
print("outputs y(x)", rounded(reg.scores),
      "at the baseline y(x')", rounded(reg.baseline_scores))
print("completeness errors", [f"{float(e):.1e}" for e in reg.completeness_error])

# %%
# Both errors are tiny: after `conv` these heads are a mean and a linear layer (and a
# sigmoid), nearly linear in the layer's activations, so the sum is close to exact.

# %%
# The first photo's map for each label, and each photo's regression map.
import matplotlib.pyplot as plt

fig, axes = plt.subplots(2, 4, figsize=(9, 5), layout="constrained")
for label in range(4):
    axes[0][label].imshow(overlay(rgbs[0], per_label.heatmap[label]))
    axes[0][label].set_title(f"label {label}: p = {float(per_label.scores[label]):.2f}",
                             fontsize=9)
for n in range(2):
    axes[1][n].imshow(rgbs[n])
    axes[1][n].set_title(f"photo {n}", fontsize=9)
    axes[1][2 + n].imshow(overlay(rgbs[n], reg.heatmap[n]))
    axes[1][2 + n].set_title(f"regression: {float(reg.scores[n]):.3f}", fontsize=9)
for ax in axes.flat:
    ax.axis("off")
plt.show()
