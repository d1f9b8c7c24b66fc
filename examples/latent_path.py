"""Integrate along a path through an autoencoder's latent space instead of a straight line.

The straight line from a black image to the input passes through dimmed copies of the
image, which a classifier never saw. A path through the latent space of an autoencoder
passes through images the decoder can make instead. This example

1. trains a small convolutional autoencoder on crops of scikit-image's photos (well under
   a minute on a CPU; it is fully convolutional, so it decodes 224 x 224 images);
2. defines ``path(images, t)``: decode the latent interpolation from the black image's
   code to the input's code, plus ``t`` times the decoder's residual, so that the path
   starts at the decoded black image and ends exactly at the input;
3. explains the embedded EfficientNet-Lite0 on chelsea with RSI-Grad-CAM along both
   paths, and saves a figure with the path's images and both heatmaps.

Run:  .venv/bin/python examples/latent_path.py --out latent-path.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from skimage import data
from torch import Tensor, nn

from rsigradcam import RSIGradCAM
from rsigradcam.constants import IMAGENET_MEAN, IMAGENET_STD
from rsigradcam.io import load_image
from rsigradcam.models import efficientnet_lite0
from rsigradcam.viz import GridCell, overlay, save_grid

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


class AutoEncoder(nn.Module):
    """Images in [0, 1] -> latent maps at 1/8 resolution -> images in [0, 1]."""

    def __init__(self, width: int = 32, latent: int = 16) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width, width, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width, latent, 4, 2, 1),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(latent, width, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(width, width, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(width, 3, 4, 2, 1), nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


def training_crops(n: int, size: int, generator: torch.Generator) -> Tensor:
    """Random crops of the photos, plus a few black and flat images, in [0, 1]."""
    photos = []
    for name in PHOTOS:
        array = getattr(data, name)()
        if array.ndim == 2:
            array = np.stack([array] * 3, axis=-1)
        photos.append(torch.from_numpy(np.ascontiguousarray(array[..., :3])).permute(2, 0, 1))
    crops = []
    for i in range(n):
        photo = photos[i % len(photos)]
        y = int(torch.randint(0, photo.shape[1] - size, (1,), generator=generator))
        x = int(torch.randint(0, photo.shape[2] - size, (1,), generator=generator))
        crops.append(photo[:, y : y + size, x : x + size].float() / 255)
    batch = torch.stack(crops)
    batch[: n // 16] = 0.0  # the path starts at black: the decoder must know it
    return batch


def train(seconds: float = 40.0, steps: int = 600, seed: int = 0) -> AutoEncoder:
    """Train the autoencoder for at most ``steps`` Adam steps or ``seconds``."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = AutoEncoder()
    crops = training_crops(512, 48, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    start = time.perf_counter()
    for step in range(steps):
        batch = crops[torch.randint(0, crops.shape[0], (16,), generator=generator)]
        loss = nn.functional.mse_loss(model(batch), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            print(f"step {step:4d}  reconstruction MSE {loss.item():.4f}")
        if time.perf_counter() - start > seconds:
            break
    print(f"trained {step + 1} steps in {time.perf_counter() - start:.1f} s")
    return model.eval()


def latent_path(autoencoder: AutoEncoder):
    """``path(images, t)`` for normalised model inputs, through the autoencoder's latents."""

    def path(images: Tensor, t: Tensor) -> Tensor:
        with torch.no_grad():
            pixels = images * STD + MEAN
            z_x = autoencoder.encoder(pixels)
            z_0 = autoencoder.encoder(torch.zeros_like(pixels))
            tt = t.view(-1, 1, 1, 1)
            decoded = autoencoder.decoder(torch.lerp(z_0, z_x, tt))
            residual = pixels - autoencoder.decoder(z_x)  # so that t = 1 gives the input
            return (decoded + tt * residual - MEAN) / STD

    return path


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("latent-path.png"))
    parser.add_argument("--train-seconds", type=float, default=40.0)
    parser.add_argument("--train-steps", type=int, default=600)
    parser.add_argument("--steps", type=int, default=32, help="RSI-Grad-CAM steps m")
    args = parser.parse_args(argv)

    autoencoder = train(args.train_seconds, args.train_steps)
    path = latent_path(autoencoder)
    model = efficientnet_lite0()
    image, rgb = load_image(data.chelsea())
    kw = dict(layer="head", steps=args.steps)
    straight = RSIGradCAM(model, **kw)(image)
    curved = RSIGradCAM(model, **kw, path=path)(image)
    errors = straight.completeness_error.item(), curved.completeness_error.item()
    print(
        f"class {int(straight.targets)}: completeness error {errors[0]:.3f} on the straight "
        f"line, {errors[1]:.3f} on the latent path"
    )
    ts = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    points = path(image.expand(5, -1, -1, -1), ts)
    to_rgb = lambda x: (  # noqa: E731
        ((x * STD + MEAN).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    )
    row_path = [GridCell(to_rgb(points[i : i + 1]), f"t = {t:.2f}") for i, t in enumerate(ts)]
    row_maps = [
        GridCell(rgb, "input"),
        GridCell(overlay(rgb, straight.heatmap[0]), "straight line"),
        GridCell(overlay(rgb, curved.heatmap[0]), "latent path"),
    ]
    out = save_grid([row_path, row_maps], args.out, row_labels=["latent path", "RSI-Grad-CAM"])
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
