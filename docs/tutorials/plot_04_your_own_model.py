"""
# Your own model

Any `nn.Module` that maps images to scores works. Name the layer (a module name, the
module itself, or `"auto"` for the last layer with a spatial map). A path method runs a
private copy of the model prepared for speed, checked against the model's own output; the
explanation says what ran.
"""

# %%
# A small residual network, written the way one writes a model, with random weights (a
# trained model explains better, but the calls are the same).
import torch
from torch import nn

from rsigradcam import GradCAM, RSIGradCAM, SpeedOptions


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.bn(self.conv(x)))


torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
    Block(16), Block(16), nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
).eval()
images = torch.randn(4, 3, 64, 64)

# %%
# The last convolution's output ("5") cuts the graph: every path from the input to the
# score runs through it, so completeness holds there.
exp = RSIGradCAM(model, "5", steps=32)(images)
print("heatmaps", tuple(exp.heatmap.shape), "targets", exp.targets.tolist())
print("completeness errors", [round(float(e), 4) for e in exp.completeness_error])
print("ran:", exp.model_run.describe())

# %%
# `speed="off"` runs the model as given; the maps agree to float rounding.
plain = RSIGradCAM(model, "5", steps=32, speed="off")(images)
print("max heatmap difference:", float((exp.heatmap - plain.heatmap).abs().max()))
print("ran:", plain.model_run.describe())

# %%
# The one-point methods run the model as given unless asked; `SpeedOptions` says how.
grad = GradCAM(model, "5", speed=SpeedOptions(compile=False))(images)
print("Grad-CAM ran:", grad.model_run.describe())
