"""Baselines computed from the images alone: black, zeros, blur, noise, mean colour, tensor.

Every baseline is a :class:`Baseline`: ``baseline(images) -> baselines`` of the same
(N, C, H, W) shape. Those that depend on the pixel scale (black, noise) work in the
*preprocessed* space given by ``normalize=(mean, std)``; inside a CAM they use the CAM's
``normalize=`` unless one was given to the baseline itself.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Baseline",
    "BlackBaseline",
    "BlurBaseline",
    "CheckedNormalize",
    "NoiseBaseline",
    "Normalize",
    "TensorBaseline",
    "UniformBaseline",
    "ZerosBaseline",
    "check_normalize",
]

Normalize = tuple[Sequence[float], Sequence[float]] | None
#: ``normalize`` after :func:`check_normalize`: tuples of floats, or ``None``.
CheckedNormalize = tuple[tuple[float, ...], tuple[float, ...]] | None


def check_normalize(normalize: Normalize) -> CheckedNormalize:
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


def channel_affine(normalize: CheckedNormalize, images: Tensor) -> tuple[Tensor, Tensor]:
    """``(mean, std)`` as (1, C, 1, 1) tensors on the images' device (0 and 1 for ``None``).

    Raises:
        ValueError: ``normalize`` has a different number of channels than the images.
    """
    channels = images.shape[1]
    if normalize is None:
        zero = images.new_zeros((1, channels, 1, 1))
        return zero, torch.ones_like(zero)
    mean, std = normalize
    if channels != len(mean):
        raise ValueError(
            f"the images have {channels} channels but normalize has {len(mean)} values per "
            "channel; pass normalize=(mean, std) with one value per channel, or "
            "normalize=None for images in [0, 1]."
        )
    view = (1, channels, 1, 1)
    return (
        torch.tensor(mean, dtype=images.dtype, device=images.device).view(view),
        torch.tensor(std, dtype=images.dtype, device=images.device).view(view),
    )


class Baseline(ABC):
    """A baseline x' computed from the images: ``baseline(images) -> (N, C, H, W)``.

    Args:
        normalize: ``(mean, std)`` of the images' preprocessing, or ``None`` for images in
            [0, 1]. Left unset, a CAM passes its own ``normalize=``.
    """

    #: Whether calls draw random samples (so that ``n_samples > 1`` makes sense).
    random: ClassVar[bool] = False

    def __init__(self, normalize: Normalize = None) -> None:
        self.normalize = check_normalize(normalize)

    @abstractmethod
    def make(self, images: Tensor, normalize: CheckedNormalize, sample: int = 0) -> Tensor:
        """The baselines for ``images`` preprocessed with ``normalize``.

        ``sample`` numbers the draws of a random baseline; others ignore it.
        """

    def __call__(self, images: Tensor) -> Tensor:
        """The baselines for ``images``, using this baseline's own ``normalize``."""
        return self.make(images, self.normalize)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BlackBaseline(Baseline):
    """A black image after preprocessing: ``(0 - mean) / std`` in every pixel (the paper's).

    Args:
        mean: Per-channel mean the images were normalised with (with ``std``; otherwise the
            CAM's ``normalize=`` is used).
        std: Per-channel standard deviation.

    Example:
        >>> BlackBaseline((0.5,), (0.25,))(torch.ones(1, 1, 2, 2))[0, 0, 0, 0].item()
        -2.0
    """

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std to BlackBaseline, or neither.")
        super().__init__(None if mean is None or std is None else (mean, std))

    def make(self, images: Tensor, normalize: CheckedNormalize, sample: int = 0) -> Tensor:
        """``(0 - mean) / std`` broadcast to the images' shape."""
        mean, std = channel_affine(self.normalize or normalize, images)
        return ((0.0 - mean) / std).expand_as(images).contiguous()


class ZerosBaseline(Baseline):
    """An all-zero baseline (black only when the images are not normalised)."""

    def make(self, images: Tensor, normalize: CheckedNormalize, sample: int = 0) -> Tensor:
        """Zeros shaped like ``images``."""
        return torch.zeros_like(images)


class UniformBaseline(Baseline):
    """Each image's per-channel mean colour, constant over the image."""

    def make(self, images: Tensor, normalize: CheckedNormalize, sample: int = 0) -> Tensor:
        """The spatial mean of each image and channel, broadcast to the image."""
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images).contiguous()


class BlurBaseline(Baseline):
    """The image under a strong Gaussian blur, which removes the object but keeps colours.

    Blurring commutes with the per-channel normalisation, so it is applied to the
    preprocessed images directly (replicate padding at the borders).

    Args:
        sigma: Standard deviation in pixels; ``None`` uses a tenth of the longer image side
            (22.4 pixels at 224 x 224).
    """

    def __init__(self, sigma: float | None = None) -> None:
        super().__init__(None)
        if sigma is not None and not (isinstance(sigma, (int, float)) and sigma > 0):
            raise ValueError(f"BlurBaseline sigma must be positive or None, got {sigma!r}.")
        self.sigma = None if sigma is None else float(sigma)

    def make(self, images: Tensor, normalize: CheckedNormalize, sample: int = 0) -> Tensor:
        """Separable Gaussian blur of every channel."""
        sigma = self.sigma if self.sigma is not None else max(images.shape[-2:]) / 10.0
        return gaussian_blur(images, sigma)

    def __repr__(self) -> str:
        return f"BlurBaseline(sigma={self.sigma})"


def gaussian_blur(
    images: Tensor,
    sigma: float,
    kernel_size: int | None = None,
    padding: Literal["replicate", "reflect"] = "replicate",
) -> Tensor:
    """Blur (N, C, H, W) images channel by channel with a normalised Gaussian kernel.

    A separable depthwise convolution, one spatial dimension at a time.

    Args:
        images: The images.
        sigma: Standard deviation in pixels.
        kernel_size: Odd kernel size; default ``2 * ceil(3 sigma) + 1``.
        padding: How the borders are extended (``F.pad`` mode).
    """
    size = kernel_size if kernel_size is not None else 2 * math.ceil(3 * sigma) + 1
    half = size // 2
    x = torch.arange(size, dtype=images.dtype, device=images.device) - half
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    out = images
    for dim in (2, 3):
        shape = [1, 1, 1, 1]
        shape[dim] = size
        weight = kernel.view(shape).repeat(channels, 1, 1, 1)
        pad = (0, 0, half, half) if dim == 2 else (half, half, 0, 0)
        out = F.conv2d(F.pad(out, pad, mode=padding), weight, groups=channels)
    return out


class NoiseBaseline(Baseline):
    """Random baselines, reproducible from a seed.

    - ``kind="uniform"``: every pixel drawn uniformly in [0, 1] (then preprocessed);
    - ``kind="gaussian"``: the image plus Gaussian noise of standard deviation ``sigma``
      in [0, 1] pixel units, clipped to the valid pixel range.

    Sample j is drawn from a generator seeded with ``(seed, j)`` and is the same noise for
    every image, so results do not depend on how images are batched; ``n_samples=k``
    in a CAM averages over samples 0..k-1.

    Args:
        kind: ``"uniform"`` or ``"gaussian"``.
        sigma: Noise level of ``"gaussian"``.
        seed: Seed of the generator.
        normalize: See :class:`Baseline`.
    """

    random: ClassVar[bool] = True

    def __init__(
        self,
        kind: Literal["uniform", "gaussian"] = "uniform",
        sigma: float = 0.1,
        seed: int = 0,
        normalize: Normalize = None,
    ) -> None:
        super().__init__(normalize)
        if kind not in ("uniform", "gaussian"):
            raise ValueError(f"NoiseBaseline kind must be 'uniform' or 'gaussian', got {kind!r}.")
        if not sigma > 0:
            raise ValueError(f"NoiseBaseline sigma must be positive, got {sigma!r}.")
        self.kind, self.sigma, self.seed = kind, float(sigma), int(seed)

    def make(self, images: Tensor, normalize: CheckedNormalize, sample: int = 0) -> Tensor:
        """Draw noise sample ``sample`` for ``images``."""
        mean, std = channel_affine(self.normalize or normalize, images)
        generator = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + sample)
        draw = torch.rand if self.kind == "uniform" else torch.randn
        noise = draw((1, *images.shape[1:]), generator=generator, dtype=torch.float64).to(
            device=images.device, dtype=images.dtype
        )
        if self.kind == "uniform":
            return ((noise - mean) / std).expand_as(images).contiguous()
        pixels = (images * std + mean + self.sigma * noise).clamp(0.0, 1.0)
        return (pixels - mean) / std

    def __repr__(self) -> str:
        return f"NoiseBaseline(kind={self.kind!r}, sigma={self.sigma}, seed={self.seed})"


class TensorBaseline(Baseline):
    """A fixed baseline tensor, (C, H, W) for every image or (N, C, H, W) per image."""

    def __init__(self, baseline: Tensor) -> None:
        super().__init__(None)
        if baseline.dim() not in (3, 4):
            raise ValueError(
                f"baseline tensor must be (C, H, W) or (N, C, H, W), got shape "
                f"{tuple(baseline.shape)}."
            )
        self.baseline = baseline

    def make(self, images: Tensor, normalize: CheckedNormalize, sample: int = 0) -> Tensor:
        """The baseline broadcast to ``images``' shape (a mismatch is reported later)."""
        b = self.baseline
        if b.dim() == 3 and tuple(b.shape) == tuple(images.shape[1:]):
            return b.unsqueeze(0).expand_as(images)
        return b
