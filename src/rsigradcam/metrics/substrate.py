"""Substrates: what replaces an image's pixels when a metric removes them.

A substrate is an (N, C, H, W) image in the same preprocessed space as the model's inputs.
The ``substrate=`` argument of the metrics accepts

- ``"black"``: a black image, ``(0 - mean) / std`` per channel for ``normalize=(mean, std)``
  (zeros when ``normalize=None``). This is the zero substrate of RISE's deletion metric
  (zeros in pixel space) for normalised inputs.
- ``"zeros"``: zeros in the preprocessed space, i.e. the dataset's mean colour for
  normalised inputs.
- ``"blur"``: the image blurred by a Gaussian of kernel 11 and σ = 5 (RISE's insertion
  substrate), reflect padding. The blur is linear with unit gain, so blurring the
  normalised image equals normalising the blurred pixels.
- a tensor (C, H, W) or (N, C, H, W), or a callable ``fn(images) -> substrate``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from rsigradcam.baselines import Normalize, gaussian_blur, make_baselines

__all__ = ["BLUR_KERNEL", "BLUR_SIGMA", "SubstrateSpec", "blur_substrate", "make_substrate"]

SubstrateSpec = str | Tensor | Callable[[Tensor], Tensor]

BLUR_KERNEL = 11
"""Side of the Gaussian kernel of the ``"blur"`` substrate (RISE)."""

BLUR_SIGMA = 5.0
"""Standard deviation, in pixels, of the ``"blur"`` substrate (RISE)."""


def blur_substrate(
    images: Tensor, kernel_size: int = BLUR_KERNEL, sigma: float = BLUR_SIGMA
) -> Tensor:
    """RISE's blur: each channel of (N, C, H, W) ``images`` under a normalised Gaussian.

    :func:`rsigradcam.baselines.gaussian_blur` with reflect padding (replicate padding for
    images whose side is not larger than half the kernel, where reflection is undefined)
    and, as in the RISE protocol, a fixed kernel size rather than one derived from σ.

    Example:
        >>> x = torch.ones(1, 3, 16, 16)
        >>> bool(torch.allclose(blur_substrate(x), x))
        True
    """
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}.")
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd so the blur is centred, got {kernel_size}.")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}.")
    reflectable = min(images.shape[-2:]) > kernel_size // 2
    return gaussian_blur(
        images, sigma, kernel_size, padding="reflect" if reflectable else "replicate"
    )


def make_substrate(spec: SubstrateSpec, images: Tensor, normalize: Normalize) -> Tensor:
    """The (N, C, H, W) substrate for ``images``.

    Args:
        spec: ``"black"``, ``"zeros"``, ``"blur"``, a tensor or a callable (see the module).
        images: (N, C, H, W) preprocessed images.
        normalize: ``(mean, std)`` the images were normalised with, or ``None``.

    Raises:
        ValueError: An unknown name, or a substrate whose shape or device does not fit.
    """
    if isinstance(spec, str) and spec == "blur":
        return blur_substrate(images)
    if isinstance(spec, str) and spec not in ("black", "zeros"):
        raise ValueError(
            f"substrate {spec!r} is unknown: use 'black', 'zeros', 'blur', a tensor (C, H, W) "
            "or (N, C, H, W), or a callable(images) -> substrate."
        )
    try:
        return make_baselines(spec, images, normalize)
    except (TypeError, ValueError) as err:  # the same checks, reported as the substrate
        raise type(err)(str(err).replace("baseline", "substrate")) from err
