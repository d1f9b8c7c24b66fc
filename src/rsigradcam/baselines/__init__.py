"""Baselines x' for the integration path.

The ``baseline=`` argument of a CAM accepts a string or an object:

- ``"black"`` (the paper's): a black image after the model's preprocessing, i.e.
  ``(0 - mean) / std`` per channel for the ``normalize=(mean, std)`` the images were
  normalised with (zeros when ``normalize=None``);
- ``"zeros"``: an all-zero tensor;
- ``"blur"``: the image under a strong Gaussian blur (:class:`BlurBaseline`);
- ``"noise"``: uniform random pixels, seeded (:class:`NoiseBaseline`);
- ``"uniform"``: each image's per-channel mean colour (:class:`UniformBaseline`);
- ``"auto"``: an image optimised so that the model's output is uniform
  (:class:`AutoBaseline`, fitted once per input size and cached);
- a tensor (C, *S), shared by every input, or (N, C, *S), one per input (S: the 1, 2 or 3
  spatial dimensions of signals, images, volumes);
- a :class:`Baseline` object or any callable ``fn(images) -> baselines``;
- a list of the above: the explanation is the mean of the per-baseline integrated
  attributions (expected-gradients style), and so is ``y(x) - y(x')`` in the
  completeness check. ``n_samples=k`` does the same with k draws of a random baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
from torch import Tensor

from rsigradcam.baselines.auto import AutoBaseline, AutoBaselineFit
from rsigradcam.baselines.simple import (
    Baseline,
    BlackBaseline,
    BlurBaseline,
    NoiseBaseline,
    Normalize,
    TensorBaseline,
    UniformBaseline,
    ZerosBaseline,
    check_normalize,
    gaussian_blur,
)

__all__ = [
    "BASELINE_NAMES",
    "AutoBaseline",
    "AutoBaselineFit",
    "Baseline",
    "BaselineSpec",
    "BlackBaseline",
    "BlurBaseline",
    "NoiseBaseline",
    "Normalize",
    "TensorBaseline",
    "UniformBaseline",
    "ZerosBaseline",
    "baseline_rows",
    "check_baseline_spec",
    "check_normalize",
    "gaussian_blur",
    "make_baselines",
]

BaselineFn = Callable[[Tensor], Tensor]
SingleSpec = str | Tensor | Baseline | BaselineFn
BaselineSpec = SingleSpec | Sequence[SingleSpec]

#: The baselines that can be named by a string.
BASELINE_NAMES: tuple[str, ...] = ("black", "zeros", "blur", "noise", "uniform", "auto")

_NAMED: dict[str, Callable[[], Baseline]] = {
    "black": BlackBaseline,
    "zeros": ZerosBaseline,
    "blur": BlurBaseline,
    "noise": NoiseBaseline,
    "uniform": UniformBaseline,
}


def _resolve(spec: SingleSpec) -> Baseline | BaselineFn:
    if isinstance(spec, str):
        if spec in _NAMED:
            return _NAMED[spec]()
        hint = " ('auto' needs the model: a CAM resolves it)" if spec == "auto" else ""
        raise ValueError(
            f"baseline {spec!r} is unknown{hint}: use one of {', '.join(map(repr, BASELINE_NAMES))}"
            ", a tensor (C, H, W) or (N, C, H, W), a Baseline, a callable(images) -> "
            "baselines, or a list of these."
        )
    if isinstance(spec, Tensor):
        return TensorBaseline(spec)
    if callable(spec):
        return spec
    raise TypeError(
        f"baseline must be a name ({', '.join(BASELINE_NAMES)}), a tensor, a Baseline, a "
        f"callable, or a list of these; not {type(spec).__name__}."
    )


def check_baseline_spec(spec: BaselineSpec, n_samples: int = 1) -> list[SingleSpec]:
    """Validate ``baseline=`` and ``n_samples=`` early; return the list of single specs.

    Raises:
        ValueError: An unknown name, an empty list, a bad ``n_samples``, or
            ``n_samples > 1`` with a baseline that is not random.
        TypeError: A spec of the wrong type.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}.")
    specs: list[SingleSpec] = (
        list(spec) if isinstance(spec, (list, tuple)) else [cast(SingleSpec, spec)]
    )
    if not specs:
        raise ValueError("baseline list is empty; give at least one baseline.")
    for item in specs:
        if not (isinstance(item, str) and item == "auto"):
            _resolve(item)
    if n_samples > 1:
        if len(specs) > 1:
            raise ValueError(
                "give either a list of baselines or n_samples > 1 with one random baseline, "
                "not both."
            )
        only = specs[0]
        random = getattr(_NAMED.get(only) if isinstance(only, str) else only, "random", False)
        if not random:
            raise ValueError(
                f"n_samples={n_samples} needs a random baseline such as 'noise' or "
                f"NoiseBaseline(...); {only!r} gives the same baseline every time."
            )
    return specs


def make_baselines(
    spec: SingleSpec, images: Tensor, normalize: Normalize, sample: int = 0
) -> Tensor:
    """Compute and check the (N, C, H, W) baselines of one spec for ``images``.

    Args:
        spec: One baseline (not a list).
        images: The (N, C, H, W) images.
        normalize: The CAM's ``(mean, std)``, used by baselines that need the pixel scale.
        sample: Which draw of a random baseline.

    Raises:
        ValueError: The baseline's shape, device or values do not fit the images.
    """
    fn = _resolve(spec)
    if isinstance(fn, Baseline):
        baselines = fn.make(images, check_normalize(normalize), sample)
    else:
        baselines = fn(images)
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


def baseline_rows(
    specs: Sequence[SingleSpec], images: Tensor, normalize: Normalize, n_samples: int = 1
) -> Tensor:
    """Every baseline of every image, image-major: (N * J, C, H, W) with J baselines each.

    Row ``n * J + j`` is baseline j of image n, where J is ``len(specs)`` or
    ``n_samples`` (k draws of one random baseline).
    """
    if n_samples > 1:
        per = [make_baselines(specs[0], images, normalize, j) for j in range(n_samples)]
    else:
        per = [make_baselines(s, images, normalize) for s in specs]
    return torch.stack(per, dim=1).flatten(0, 1)
