"""Baselines x' for the integration path.

The ``baseline=`` argument of a CAM accepts

- ``"black"``: a black image after the model's preprocessing, i.e. ``(0 - mean) / std``
  per channel for the ``normalize=(mean, std)`` the images were normalised with (zeros
  when ``normalize=None``);
- ``"zeros"``: an all-zero tensor;
- a tensor (C, H, W), shared by every image, or (N, C, H, W), one per image;
- a callable ``fn(images) -> baselines`` returning (N, C, H, W).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = [
    "BaselineSpec",
    "BlackBaseline",
    "Normalize",
    "TensorBaseline",
    "ZerosBaseline",
    "check_normalize",
    "make_baselines",
]

Normalize = tuple[Sequence[float], Sequence[float]] | None
BaselineFn = Callable[[Tensor], Tensor]
BaselineSpec = str | Tensor | BaselineFn


def check_normalize(normalize: Normalize) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """Validate ``normalize=(mean, std)`` (or ``None``) and return it as float tuples."""
    if normalize is None:
        return None
    try:
        mean, std = normalize
        mean_t, std_t = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    except (TypeError, ValueError) as err:
        raise ValueError(
            "normalize must be (mean, std), two sequences of per-channel floats, or None "
            f"for images in [0, 1]; got {normalize!r}."
        ) from err
    if len(mean_t) != len(std_t) or not mean_t:
        raise ValueError(f"normalize mean and std must have the same length, got {normalize!r}.")
    if any(s <= 0 for s in std_t):
        raise ValueError(f"normalize std values must be positive, got {std_t}.")
    return mean_t, std_t


class BlackBaseline:
    """A black image after preprocessing: ``(0 - mean) / std`` in every pixel.

    Args:
        mean: Per-channel mean the images were normalised with.
        std: Per-channel standard deviation.

    Example:
        >>> BlackBaseline((0.5,), (0.25,))(torch.ones(1, 1, 2, 2))[0, 0, 0, 0].item()
        -2.0
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = tuple(mean)
        self.std = tuple(std)

    def __call__(self, images: Tensor) -> Tensor:
        """Return the (N, C, H, W) black baselines for ``images``."""
        channels = images.shape[1]
        if channels != len(self.mean):
            raise ValueError(
                f"the images have {channels} channels but normalize has {len(self.mean)} "
                "values per channel; pass normalize=(mean, std) with one value per channel, "
                "or normalize=None for images in [0, 1]."
            )
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device)
        return ((0.0 - mean) / std).view(1, -1, 1, 1).expand_as(images).contiguous()


class ZerosBaseline:
    """An all-zero baseline (black only when the images are not normalised)."""

    def __call__(self, images: Tensor) -> Tensor:
        """Return zeros shaped like ``images``."""
        return torch.zeros_like(images)


class TensorBaseline:
    """A fixed baseline tensor, (C, H, W) for every image or (N, C, H, W) per image."""

    def __init__(self, baseline: Tensor) -> None:
        if baseline.dim() not in (3, 4):
            raise ValueError(
                f"baseline tensor must be (C, H, W) or (N, C, H, W), got shape "
                f"{tuple(baseline.shape)}."
            )
        self.baseline = baseline

    def __call__(self, images: Tensor) -> Tensor:
        """Return the baseline broadcast to ``images``' shape."""
        b = self.baseline
        if b.dim() == 3 and tuple(b.shape) == tuple(images.shape[1:]):
            return b.unsqueeze(0).expand_as(images)
        return b  # a mismatch is reported by make_baselines


def _resolve(spec: BaselineSpec, normalize: Normalize) -> BaselineFn:
    if isinstance(spec, str):
        if spec == "black":
            checked = check_normalize(normalize)
            return ZerosBaseline() if checked is None else BlackBaseline(*checked)
        if spec == "zeros":
            return ZerosBaseline()
        raise ValueError(
            f"baseline {spec!r} is unknown: use 'black', 'zeros', a tensor (C, H, W) or "
            "(N, C, H, W), or a callable(images) -> baselines."
        )
    if isinstance(spec, Tensor):
        return TensorBaseline(spec)
    if callable(spec):
        return spec
    raise TypeError(
        f"baseline must be 'black', 'zeros', a tensor or a callable, not {type(spec).__name__}."
    )


def make_baselines(spec: BaselineSpec, images: Tensor, normalize: Normalize) -> Tensor:
    """Compute and check the (N, C, H, W) baselines for ``images``.

    Raises:
        ValueError: The baseline's shape, device or values do not fit the images.
    """
    baselines = _resolve(spec, normalize)(images)
    if not isinstance(baselines, Tensor):
        raise TypeError(f"the baseline callable returned {type(baselines).__name__}, not a tensor.")
    if baselines.device != images.device:
        raise ValueError(
            f"baseline is on {baselines.device} but the images are on {images.device}; move "
            "it with baseline.to(images.device)."
        )
    if tuple(baselines.shape) != tuple(images.shape):
        raise ValueError(
            f"baseline shape {tuple(baselines.shape)} does not match the images' shape "
            f"{tuple(images.shape)}; give (C, H, W) = {tuple(images.shape[1:])} or "
            f"(N, C, H, W) = {tuple(images.shape)}."
        )
    if not baselines.dtype.is_floating_point:
        raise ValueError(f"baseline must be floating point, got dtype {baselines.dtype}.")
    baselines = baselines.detach().to(images.dtype)
    if not bool(torch.isfinite(baselines).all()):
        raise ValueError("baseline contains NaN or Inf values.")
    return baselines
