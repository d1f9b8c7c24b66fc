"""
# Explaining a dataset

`rsigradcam explain-dataset` explains every image of a folder into resumable shards, and
`load_heatmaps` reads the maps back. Here it runs from Python on a folder of four photos.
The guide, with `torchrun` across processes and machines: [Explaining a dataset](../../guides/dataset.md).

The model is the embedded EfficientNet-Lite0, trained on ImageNet, so these maps are
meaningful; for a model of your own pass `model="mymodels:build"` (the CLI's `--model`).
"""

# %%
# A folder of four scikit-image photos, as PNG files.
import tempfile
from pathlib import Path

from PIL import Image
from skimage import data

folder = Path(tempfile.mkdtemp())
photos = folder / "photos"
(photos / "animals").mkdir(parents=True)
Image.fromarray(data.chelsea()).save(photos / "animals" / "chelsea.png")
Image.fromarray(data.astronaut()).save(photos / "astronaut.png")
Image.fromarray(data.coffee()).save(photos / "coffee.png")
Image.fromarray(data.rocket()).save(photos / "rocket.png")

# %%
# The run: what `rsigradcam explain-dataset photos --out run -m rsi,gradcam -l blocks.10
# --steps 16 --batch-size 4 --workers 0` does, called from Python. A second run with the
# same options resumes it (finished shards are skipped); under `torchrun` each process
# takes its share of the shards.
from rsigradcam.app.dataset import DatasetOptions, explain_dataset

options = DatasetOptions(
    source=photos, out=folder / "run", layers=("blocks.10",), methods=("rsi", "gradcam"),
    steps=16, batch_size=4, workers=0,
)
summary = explain_dataset(options)
print(f"{summary.explained} explained, {summary.failed} failed, {summary.shards} shard(s)")
print(sorted(p.name for p in (folder / "run").iterdir()))

# %%
# The stored maps, by method and layer; each record holds the heatmap at the model's
# input size (224 x 224, stored as uint8), the explained class, its probability and the
# completeness error.
from rsigradcam import load_heatmaps
from rsigradcam.models import imagenet_classes

classes = imagenet_classes()
rsi = load_heatmaps(folder / "run", method="rsi", layer="blocks.10")
grad = load_heatmaps(folder / "run", method="gradcam", layer="blocks.10")
print(len(rsi), "images:", rsi.ids)
for record in rsi:
    print(f"{record.id:22s} {classes[record.target]:20s} p = {record.probability:.3f}, "
          f"completeness error {record.completeness:.4f}")

# %%
# The errors are larger than at m = 50 (the CLI's default): 16 steps keep this page quick.
# `manifest.jsonl` holds the same numbers, one line per image, and `errors.jsonl` the
# images that could not be read (none here).

# %%
# The maps over the photos, resized to the model's input size.
import matplotlib.pyplot as plt
import numpy as np

from rsigradcam.viz import overlay

fig, axes = plt.subplots(2, 4, figsize=(10, 5.5), layout="constrained")
for col, image_id in enumerate(rsi.ids):
    rgb = np.asarray(Image.open(photos / image_id).convert("RGB").resize((224, 224)))
    for row, (label, maps) in enumerate((("Grad-CAM", grad), ("RSI-Grad-CAM", rsi))):
        axes[row][col].imshow(overlay(rgb, maps[image_id].heatmap))
        axes[row][col].set_title(f"{label}\n{image_id}", fontsize=8)
        axes[row][col].axis("off")
plt.show()

# %%
# The folder was temporary:
import shutil

shutil.rmtree(folder)
