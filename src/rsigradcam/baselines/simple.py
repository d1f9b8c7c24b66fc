"""Baselines computed from the images alone: black, zeros, blur, noise, mean colour, tensor.

Every baseline is a :class:`Baseline`: ``baseline(images) -> baselines`` of the same
(N, C, *S) shape, for signals (N, C, L), images (N, C, H, W) and volumes or video
(N, C, D, H, W) alike. Those that depend on the pixel scale (black, noise) work in the
*preprocessed* space given by ``normalize=(mean, std)``; inside a CAM they use the CAM's
``normalize=`` unless one was given to the baseline itself.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
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
    """``(mean, std)`` as (1, C, 1, ...) tensors on the images' device (0 and 1 for ``None``).

    Raises:
        ValueError: ``normalize`` has a different number of channels than the images.
    """
    channels = images.shape[1]
    view = (1, channels, *([1] * (images.dim() - 2)))
    if normalize is None:
        zero = images.new_zeros(view)
        return zero, torch.ones_like(zero)
    mean, std = normalize
    if channels != len(mean):
        raise ValueError(
            f"the images of shape {tuple(images.shape)} have {channels} channel"
            f"{'s' * (channels != 1)} but normalize has {len(mean)} values per channel; the "
            "'black' and 'noise' baselines need the inputs' own normalize=(mean, std), one "
            "value per channel (normalize=None for inputs in [0, 1]), or use "
            "baseline='zeros'."
        )
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
    """An all-zero baseline (black only when the images are not normalised); any shape."""

    def make(self, images: Tensor, normalize: CheckedNormalize, sample: int = 0) -> Tensor:
        """Zeros shaped like ``images``."""
        return torch.zeros_like(images)


class UniformBaseline(Baseline):
    """Each image's per-channel mean colour, constant over the image (or signal, volume)."""

    def make(self, images: Tensor, normalize: CheckedNormalize, sample: int = 0) -> Tensor:
        """The mean over all spatial dimensions of each image and channel, broadcast."""
        spatial = tuple(range(2, images.dim()))
        return images.mean(dim=spatial, keepdim=True).expand_as(images).contiguous()


class BlurBaseline(Baseline):
    """The image under a strong Gaussian blur, which removes the object but keeps colours.

    Blurring commutes with the per-channel normalisation, so it is applied to the
    preprocessed images directly (replicate padding at the borders).

    Args:
        sigma: Standard deviation in pixels; ``None`` uses a tenth of the longest spatial
            side (22.4 pixels at 224 x 224).
    """

    def __init__(self, sigma: float | None = None) -> None:
        super().__init__(None)
        if sigma is not None and not (isinstance(sigma, (int, float)) and sigma > 0):
            raise ValueError(f"BlurBaseline sigma must be positive or None, got {sigma!r}.")
        self.sigma = None if sigma is None else float(sigma)

    def make(self, images: Tensor, normalize: CheckedNormalize, sample: int = 0) -> Tensor:
        """Separable Gaussian blur of every channel, over every spatial dimension."""
        sigma = self.sigma if self.sigma is not None else max(images.shape[2:]) / 10.0
        return gaussian_blur(images, sigma)

    def __repr__(self) -> str:
        return f"BlurBaseline(sigma={self.sigma})"


def gaussian_blur(
    images: Tensor,
    sigma: float,
    kernel_size: int | None = None,
    padding: Literal["replicate", "reflect"] = "replicate",
) -> Tensor:
    """Blur (N, C, *S) inputs channel by channel with a normalised N-D Gaussian kernel.

    A separable depthwise convolution, one spatial dimension at a time: signals (N, C, L),
    images (N, C, H, W) and volumes (N, C, D, H, W).

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
    channels, rank = images.shape[1], images.dim() - 2
    convolve = _CONVOLUTIONS.get(rank)
    if convolve is None:
        raise ValueError(
            f"gaussian_blur takes (N, C, *S) inputs with 1 to 3 spatial dimensions, got shape "
            f"{tuple(images.shape)}."
        )
    out = images
    for dim in range(2, images.dim()):
        shape = [1] * images.dim()
        shape[dim] = size
        weight = kernel.view(shape).repeat(channels, *([1] * (rank + 1)))
        pad = [0] * (2 * rank)  # F.pad's pairs run from the last dimension backwards
        pad[2 * (images.dim() - 1 - dim)] = pad[2 * (images.dim() - 1 - dim) + 1] = half
        out = convolve(F.pad(out, tuple(pad), mode=padding), weight, groups=channels)
    return out


#: The depthwise convolution of :func:`gaussian_blur` by the number of spatial dimensions.
_CONVOLUTIONS: dict[int, Callable[..., Tensor]] = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


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
    """A fixed baseline tensor, (C, *S) for every input or (N, C, *S) per input."""

    def __init__(self, baseline: Tensor) -> None:
        super().__init__(None)
        if baseline.dim() not in (2, 3, 4, 5):
            raise ValueError(
                f"baseline tensor must be (C, *S) or (N, C, *S) like the inputs, e.g. "
                f"(C, H, W) or (N, C, H, W), got shape {tuple(baseline.shape)}."
            )
        self.baseline = baseline

    def make(self, images: Tensor, normalize: CheckedNormalize, sample: int = 0) -> Tensor:
        """The baseline broadcast to ``images``' shape (a mismatch is reported later)."""
        b = self.baseline
        if b.dim() == images.dim() - 1 and tuple(b.shape) == tuple(images.shape[1:]):
            return b.unsqueeze(0).expand_as(images)
        return b
