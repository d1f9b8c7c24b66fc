"""
# The path, the sum and completeness

RSI-Grad-CAM evaluates the model at m + 1 points on the straight line from a baseline x′
(a black image) to the input x, and sums, for every channel and position of the layer,
the gradient times the change of the activation between neighbouring points (a
Riemann–Stieltjes sum, trapezoid rule). Where the layer cuts the network, the sum over
all elements tends to the change of the score, y(x) − y(x′): *completeness*. Its error is
every explanation's convergence diagnostic.
"""

# %%
# The score along the path: with the softmax score it often rises steeply over a short
# stretch and saturates after it. That is where plain gradients at x vanish, and where
# the sum needs its points.
import matplotlib.pyplot as plt
import torch
from skimage import data

from rsigradcam import RSIGradCAM
from rsigradcam.baselines import BlackBaseline
from rsigradcam.constants import IMAGENET_NORMALIZE
from rsigradcam.io import load_image
from rsigradcam.models import efficientnet_lite0

model = efficientnet_lite0()
image, _ = load_image(data.coffee())
baseline = BlackBaseline(*IMAGENET_NORMALIZE)(image)
t = torch.linspace(0, 1, 41)
with torch.no_grad():
    probs = torch.softmax(model(baseline + t.view(-1, 1, 1, 1) * (image - baseline)), dim=1)
target = int(probs[-1].argmax())
plt.figure(figsize=(6, 3.2), layout="constrained")
plt.plot(t, probs[:, target])
plt.xlabel("t (0: black baseline, 1: the photo)")
plt.ylabel("softmax probability of the class")
plt.show()

# %%
# Completeness: the error of the sum falls as m grows. At `head` it falls fast; in the
# middle of the network, where the gradient jumps at every ReLU6 that switches, slowly.
steps = [8, 16, 32, 64, 128]
errors = {layer: [] for layer in ("blocks.10", "head")}
for m in steps:
    for layer, exp in RSIGradCAM(model, list(errors), steps=m)(image).items():
        errors[layer].append(float(exp.completeness_error[0]))
plt.figure(figsize=(6, 3.2), layout="constrained")
for layer, values in errors.items():
    plt.loglog(steps, values, "o-", label=layer)
plt.xlabel("m (intervals)")
plt.ylabel("completeness error")
plt.legend()
plt.show()
for layer, values in errors.items():
    print(layer, " ".join(f"m={m}: {e:.4f}" for m, e in zip(steps, values)))
