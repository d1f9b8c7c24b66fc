"""
# Baselines and adaptive steps

Where the path starts changes what the sum attributes: the paper's black image, zeros
(the mean image after normalisation), a blurred copy, noise, or a baseline fitted so that
the model's output is uniform. And where the points lie along the path changes how fast
the sum converges: `steps="auto"` places them where the sum still changes.
"""

# %%
# The same photo and layer from four baselines. A list of baselines averages their
# attributions; here each is explained on its own.
import matplotlib.pyplot as plt
from skimage import data

from rsigradcam import RSIGradCAM
from rsigradcam.io import load_image
from rsigradcam.models import efficientnet_lite0
from rsigradcam.viz import overlay

model = efficientnet_lite0()
image, rgb = load_image(data.chelsea())
names = ["black", "zeros", "blur", "uniform"]
fig, axes = plt.subplots(1, 4, figsize=(11, 3), layout="constrained")
for ax, name in zip(axes, names):
    exp = RSIGradCAM(model, "blocks.10", baseline=name)(image)
    ax.imshow(overlay(rgb, exp.heatmap[0]))
    ax.set_title(f"{name}: error {float(exp.completeness_error[0]):.3f}", fontsize=9)
    ax.axis("off")
plt.show()

# %%
# `steps="auto"` starts from 9 uniform points and bisects, round by round, the intervals
# where the sum still changes, until the map settles and the completeness error is small.
# The points it chose cluster where the score changes fast:
exp = RSIGradCAM(model, "blocks.5", steps="auto")(image)
uniform = RSIGradCAM(model, "blocks.5", steps=50)(image)
print(f"auto: {exp.n_evaluations} evaluations, completeness error "
      f"{float(exp.completeness_error[0]):.4f}")
print(f"uniform m = 50: {uniform.n_evaluations} evaluations, completeness error "
      f"{float(uniform.completeness_error[0]):.4f}")
plt.figure(figsize=(6, 1.6), layout="constrained")
plt.eventplot(exp.partition.flatten().tolist(), lineoffsets=0, linelengths=0.8)
plt.yticks([])
plt.xlabel("t of the points steps='auto' evaluated")
plt.show()
