"""Partitions of [0, 1], integration paths, and the order in which path points are visited.

A *partition* is an increasing 1-D float64 tensor ``0 = t_0 < t_1 < ... < t_m = 1``. A
*path* maps (image index, t) to model inputs; the default is the straight line from the
baseline x' to the input x, ``x_t = x' + t (x - x')``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["StraightLinePath", "check_partition", "path_rows", "uniform_partition"]


def uniform_partition(steps: int) -> Tensor:
    """The uniform partition ``t_i = i / steps``, i = 0..steps (steps + 1 points).

    Example:
        >>> uniform_partition(4).tolist()
        [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer (number of intervals), got {steps!r}.")
    return torch.arange(steps + 1, dtype=torch.float64) / steps


def check_partition(partition: Tensor | Sequence[float]) -> Tensor:
    """Validate an explicit partition and return it as a CPU float64 tensor.

    Raises:
        ValueError: It is not 1-D, does not start at 0 and end at 1, or is not strictly
            increasing.
    """
    if not isinstance(partition, Tensor):
        partition = torch.as_tensor(partition)
    t = partition.detach().to("cpu", torch.float64)
    if t.dim() != 1 or t.numel() < 2:
        raise ValueError(
            f"partition must be a 1-D tensor of at least 2 values from 0 to 1, got shape "
            f"{tuple(t.shape)}."
        )
    if t[0].item() != 0.0 or t[-1].item() != 1.0:
        raise ValueError(
            f"partition must start at 0 and end at 1, got {t[0].item()} ... {t[-1].item()}."
        )
    if not bool((t[1:] > t[:-1]).all()):
        raise ValueError("partition must be strictly increasing.")
    return t


class StraightLinePath:
    """The straight line from each image's baseline to the image.

    Args:
        images: (N, C, H, W) inputs x.
        baselines: (N, C, H, W) baselines x'.

    Example:
        >>> path = StraightLinePath(images, baselines)            # doctest: +SKIP
        >>> x = path(torch.tensor([0, 0]), torch.tensor([0.0, 1.0]))  # x'_0 and x_0
    """

    def __init__(self, images: Tensor, baselines: Tensor) -> None:
        self.images = images
        self.baselines = baselines

    def __call__(self, image_index: Tensor, t: Tensor) -> Tensor:
        """Points ``x'_n + t (x_n - x'_n)`` for each (n, t) pair; exact at t = 0 and t = 1."""
        weight = t.to(self.images.device, self.images.dtype).view(-1, 1, 1, 1)
        return torch.lerp(self.baselines[image_index], self.images[image_index], weight)


def path_rows(n_images: int, partition: Tensor) -> tuple[Tensor, Tensor]:
    """Every (image, t) pair, ordered image by image and, within an image, from t = 1 to 0.

    Each image's input (t = 1) comes first, so its top-1 class is known by the time its
    first gradient is taken, with no extra forward pass; consecutive rows of an image are
    neighbouring points of the partition, as :class:`~rsigradcam.integrate.RiemannStieltjesSum`
    expects.

    Returns:
        ``(image_index, t)``: a long tensor and a float64 tensor of ``n_images * P`` rows.

    Example:
        >>> n, t = path_rows(2, torch.tensor([0.0, 1.0], dtype=torch.float64))
        >>> n.tolist(), t.tolist()
        ([0, 0, 1, 1], [1.0, 0.0, 1.0, 0.0])
    """
    t_desc = partition.flip(0)
    n_points = t_desc.numel()
    return (
        torch.arange(n_images).repeat_interleave(n_points),
        t_desc.repeat(n_images),
    )
