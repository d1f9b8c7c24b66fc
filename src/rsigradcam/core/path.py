"""Partitions of [0, 1], integration paths, and the order in which path points are visited.

A *partition* is an increasing 1-D float64 tensor ``0 = t_0 < t_1 < ... < t_m = 1``. A
*path* maps (image index, t) to model inputs; the default is the straight line from the
baseline x' to the input x, ``x_t = x' + t (x - x')``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from rsigradcam.core.limits import MAX_AUTO_STEPS, MAX_STEPS, STEPS_WHY, check_steps

__all__ = [
    "MAX_AUTO_STEPS",
    "MAX_STEPS",
    "CallablePath",
    "Path",
    "PathFn",
    "PathPlan",
    "PathSpec",
    "StraightLinePath",
    "TensorPath",
    "check_partition",
    "check_steps",
    "path_rows",
    "uniform_partition",
]

#: A user path: ``fn(images, t) -> points``, one t per image row.
PathFn = Callable[[Tensor, Tensor], Tensor]
#: What ``path=`` accepts: ``None`` (straight line), a tensor of points, or a callable.
PathSpec = Tensor | PathFn | None

class Path(Protocol):
    """Maps rows (image index, t) to model inputs; ``images`` are the explained inputs."""

    images: Tensor

    def __call__(self, image_index: Tensor, t: Tensor) -> Tensor:
        """The path points of the rows, (B, C, *S)."""


@dataclass(frozen=True)
class PathPlan:
    """The points one call evaluates.

    Attributes:
        path: The path over every (image, baseline) row.
        partition: The increasing float64 parameters t in [0, 1] to evaluate.
        n_baselines: J baselines per image; row ``n * J + j`` is image n from baseline j.
        from_baseline: Whether t = 0 is a baseline whose y(x') and A(x') are kept.
    """

    path: Path
    partition: Tensor
    n_baselines: int = 1
    from_baseline: bool = False


def uniform_partition(steps: int) -> Tensor:
    """The uniform partition ``t_i = i / steps``, i = 0..steps (steps + 1 points).

    Raises:
        ValueError: ``steps`` is not a positive int of at most :data:`MAX_STEPS`.

    Example:
        >>> uniform_partition(4).tolist()
        [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    check_steps(steps)
    return torch.arange(steps + 1, dtype=torch.float64) / steps


def check_partition(partition: Tensor | Sequence[float]) -> Tensor:
    """Validate an explicit partition and return it as a CPU float64 tensor.

    Raises:
        ValueError: It is not 1-D, has more than :data:`MAX_STEPS` intervals, does not start
            at 0 and end at 1, or is not strictly increasing.
    """
    length = partition.numel() if isinstance(partition, Tensor) else len(partition)
    if length - 1 > MAX_STEPS:
        raise ValueError(
            f"partition must have at most {MAX_STEPS} intervals ({MAX_STEPS + 1} values; "
            f"{STEPS_WHY}), got {length - 1}."
        )
    if not isinstance(partition, Tensor):
        partition = torch.as_tensor(partition, dtype=torch.float64)
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
        images: (N, C, *S) inputs x (S: 1, 2 or 3 spatial dimensions).
        baselines: (N, C, *S) baselines x'.

    Example:
        >>> path = StraightLinePath(images, baselines)            # doctest: +SKIP
        >>> x = path(torch.tensor([0, 0]), torch.tensor([0.0, 1.0]))  # x'_0 and x_0
    """

    def __init__(self, images: Tensor, baselines: Tensor) -> None:
        self.images = images
        self.baselines = baselines

    def __call__(self, image_index: Tensor, t: Tensor) -> Tensor:
        """Points ``x'_n + t (x_n - x'_n)`` for each (n, t) pair; exact at t = 0 and t = 1."""
        ones = [1] * (self.images.dim() - 1)
        weight = t.to(self.images.device, self.images.dtype).view(-1, *ones)
        return torch.lerp(self.baselines[image_index], self.images[image_index], weight)


def path_rows(n_images: int, partition: Tensor) -> tuple[Tensor, Tensor]:
    """Every (image, t) pair, ordered image by image and, within an image, from t = 1 to 0.

    Each image's input (t = 1) comes first, so its top-1 class is known by the time its
    first gradient is taken, with no extra forward pass; consecutive rows of an image are
    neighbouring points of the partition, as :class:`~rsigradcam.core.integrate.RiemannStieltjesSum`
    expects.

    Returns:
        ``(image_index, t)``: a long tensor and a float64 tensor of ``n_images * P`` rows,
        16 bytes a row (at most 1.6 MB per image, as P <= :data:`MAX_STEPS` + 1); the model
        evaluates them a chunk at a time.

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


class CallablePath:
    """A user-defined path ``fn(images, t) -> points`` for t in [0, 1].

    ``fn`` receives a batch of inputs (B, C, *S) and their t values (B,) and
    returns the path point of each row. ``fn(x, 0)`` is the baseline and ``fn(x, 1)``
    should be x itself; a path that ends elsewhere (e.g. a decoder's reconstruction)
    explains its own end point, and a warning says so.

    Args:
        images: (N, C, H, W) inputs x.
        fn: The path.
    """

    def __init__(self, images: Tensor, fn: PathFn) -> None:
        self.images = images
        self.fn = fn
        self._checked_end = False

    def __call__(self, image_index: Tensor, t: Tensor) -> Tensor:
        """Evaluate ``fn`` on the rows' images and t, and check what it returns."""
        x = self.images[image_index]
        t = t.to(device=x.device, dtype=x.dtype)
        points = self.fn(x, t)
        if not isinstance(points, Tensor) or tuple(points.shape) != tuple(x.shape):
            got = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
            raise ValueError(
                f"path(images, t) must return one point per row, shape {tuple(x.shape)}, got "
                f"{got}."
            )
        points = points.detach().to(x.dtype)
        if not bool(torch.isfinite(points).all()):
            raise ValueError("path(images, t) returned NaN or Inf values.")
        at_end = t == 1.0
        if not self._checked_end and bool(at_end.any()):
            self._checked_end = True
            gap = (points[at_end] - x[at_end]).abs().max().item()
            scale = max(x[at_end].abs().max().item(), 1.0)
            if gap > 1e-4 * scale:
                warnings.warn(
                    f"path(x, 1) differs from the input x (max |difference| {gap:.3g}); the "
                    "explanation is of the path's end point. Add t * (x - fn(x, 1)) to the "
                    "path to make it end exactly at x.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return points


class TensorPath:
    """A path given as its points: (P, C, H, W) for one image, or (N, P, C, H, W).

    The first point is the baseline and the last the input. The points are visited at
    the nominal parameters ``t_i = i / (P - 1)``; a Riemann–Stieltjes sum depends only on
    the points, not on these labels.

    Args:
        images: (N, C, H, W) inputs x.
        points: The path's points.
        tolerance: Largest accepted ``|points[-1] - x|``, relative to ``max |x|``.

    Raises:
        ValueError: The points' shape does not fit the images, or the last point is not
            the input.
    """

    def __init__(self, images: Tensor, points: Tensor, tolerance: float = 1e-5) -> None:
        n_images = images.shape[0]
        if points.dim() == images.dim() and n_images == 1:
            points = points.unsqueeze(0)
        if points.dim() != images.dim() + 1 or tuple(points.shape[2:]) != tuple(images.shape[1:]):
            raise ValueError(
                f"path tensor must be (P, C, H, W) for one image or (N, P, C, H, W) with "
                f"(C, H, W) = {tuple(images.shape[1:])} and N = {n_images}; got shape "
                f"{tuple(points.shape)}."
            )
        if points.shape[0] != n_images:
            raise ValueError(
                f"path tensor has paths for {points.shape[0]} image(s) but {n_images} were "
                "given; pass (N, P, C, H, W) with one path per image."
            )
        if points.shape[1] < 2:
            raise ValueError("path tensor needs at least 2 points (the baseline and the input).")
        if points.device != images.device:
            raise ValueError(
                f"path tensor is on {points.device} but the images are on {images.device}; "
                "move it with path.to(images.device)."
            )
        if not points.dtype.is_floating_point or not bool(torch.isfinite(points).all()):
            raise ValueError("path tensor must be floating point with finite values.")
        points = points.detach().to(images.dtype)
        gap = (points[:, -1] - images).flatten(1).abs().amax(dim=1)
        scale = images.flatten(1).abs().amax(dim=1).clamp(min=1.0)
        bad = (gap > tolerance * scale).nonzero().flatten().tolist()
        if bad:
            raise ValueError(
                f"the path's last point is not the input for image(s) {bad} (max |difference| "
                f"{gap.max().item():.3g}); a path runs from the baseline (first point) to the "
                "input (last point). Append the input, or reverse a path that starts at it."
            )
        self.images = images
        self.points = points
        self.n_points = points.shape[1]

    def partition(self) -> Tensor:
        """The nominal parameters ``i / (P - 1)`` of the points."""
        return uniform_partition(self.n_points - 1)

    def __call__(self, image_index: Tensor, t: Tensor) -> Tensor:
        """The stored points at the rows' nominal t."""
        index = torch.round(t.to(torch.float64) * (self.n_points - 1)).long()
        return self.points[image_index.to(self.points.device), index.to(self.points.device)]
