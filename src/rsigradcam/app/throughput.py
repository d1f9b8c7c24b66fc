"""How many images per second ``explain-dataset`` explains, against the forward's rate.

:func:`dataset_throughput` runs the real ``explain-dataset`` engine (decoding workers,
batches, shards written) on the first images of a folder, into a temporary folder, and
times the no-gradient forward of the same path points in the same batches (the floor: the
m + 1 points of every image of a batch, one point per image at a time, no decoding):

* ``images_per_s``: images explained per second (the run's own timer: after the set-up,
  up to the last shard written);
* ``floor_images_per_s``: images whose path points the plain forward runs per second.

Example:
    >>> found = dataset_throughput(Path("photos"), "cuda", batch_size=64)  # doctest: +SKIP
    >>> found.images_per_s / found.floor_images_per_s                      # doctest: +SKIP
    0.61
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rsigradcam.app.dataset.parameters import DatasetOptions
from rsigradcam.app.dataset.run import explain_dataset
from rsigradcam.app.errors import InputError
from rsigradcam.app.images import list_images
from rsigradcam.app.loading.models import load_model
from rsigradcam.app.speed import synchronize
from rsigradcam.baselines import BlackBaseline
from rsigradcam.constants import IMAGENET_NORMALIZE
from rsigradcam.core.path import StraightLinePath, uniform_partition
from rsigradcam.io import load_image

__all__ = ["DatasetThroughput", "dataset_throughput"]


@dataclass(frozen=True)
class DatasetThroughput:
    """One dataset run and its floor, measured side by side.

    Attributes:
        images: Images explained.
        batch_size: Images per batch (both sides).
        layer: The explained layer.
        steps: m (m + 1 path points per image).
        seconds: The run's explaining time.
        images_per_s: Images explained per second.
        floor_seconds: The no-gradient forward of the same points in the same batches.
        floor_images_per_s: Images per second of that forward.
    """

    images: int
    batch_size: int
    layer: str
    steps: int
    seconds: float
    images_per_s: float
    floor_seconds: float
    floor_images_per_s: float


def _floor_seconds(
    paths: list[Path], device: torch.device, batch_size: int, steps: int
) -> float:
    """Seconds of the no-gradient forward of every batch's path points (decoded first)."""
    model = load_model("efficientnet_lite0", str(device)).model
    images = torch.cat([load_image(p)[0] for p in paths])
    partition = uniform_partition(steps)
    black = BlackBaseline(*IMAGENET_NORMALIZE)
    with torch.no_grad():  # warm-up: one batch's first point
        model(images[:batch_size].to(device))
    synchronize(device)
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size].to(device)
            path = StraightLinePath(x, black(x))
            rows = torch.arange(x.shape[0], device=device)
            for t in partition:
                model(path(rows, t.expand(rows.numel())))
    synchronize(device)
    return time.perf_counter() - start


def dataset_throughput(
    folder: Path,
    device: str = "cpu",
    images: int = 256,
    layer: str = "head",
    steps: int = 50,
    batch_size: int = 8,
    workers: int = 2,
) -> DatasetThroughput:
    """Time ``explain-dataset`` on the first ``images`` images of ``folder`` and its floor.

    Raises:
        InputError: ``folder`` holds fewer than ``images`` images.
    """
    found = sorted(Path(p.path) for p in list_images(folder))[:images]
    if len(found) < images:
        raise InputError(
            f"'{folder}' holds {len(found)} images, fewer than the {images} asked for; pass "
            "a smaller number or a larger folder"
        )
    with tempfile.TemporaryDirectory(prefix="rsigradcam-throughput-") as tmp:
        source = Path(tmp) / "images"
        source.mkdir()
        for k, path in enumerate(found):
            (source / f"{k:05d}{path.suffix.lower()}").symlink_to(path.resolve())
        options = DatasetOptions(
            source, Path(tmp) / "out", layers=(layer,), methods=("rsi",), steps=steps,
            batch_size=batch_size, shard_size=max(batch_size, 64), device=device,
            workers=workers,
        )
        summary = explain_dataset(options)
    floor = _floor_seconds(found, torch.device(device), batch_size, steps)
    return DatasetThroughput(
        images=images,
        batch_size=batch_size,
        layer=layer,
        steps=steps,
        seconds=summary.seconds,
        images_per_s=summary.images_per_second,
        floor_seconds=floor,
        floor_images_per_s=images / floor,
    )
