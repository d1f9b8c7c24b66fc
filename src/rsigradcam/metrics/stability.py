"""Numerical and input stability of a method's maps.

Three questions, each answered per image:

- **dtype**: how far the float32 map is from the float64 map (rounding);
- **steps**: how far the map at m steps is from the map at a reference m = 512
  (discretisation of the path integral; a method without steps, such as Grad-CAM, gives 0);
- **noise**: max-sensitivity (Yeh et al., NeurIPS 2019): the largest change of the map
  under small uniform input noise, ``max_k ||Φ(x + δ_k) - Φ(x)|| / ||Φ(x)||`` with
  ``δ_k ~ U(-radius, radius)`` in the preprocessed space.

A method is given as a factory ``make(steps, dtype) -> explain`` with
``explain(images, targets) -> heatmaps`` (N, H, W), so the same code measures any method.
:func:`stability` runs all three and splits the images into saturated (top-1 probability
above 0.99) and unsaturated ones, where RSI-Grad-CAM and Grad-CAM are expected to differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from rsigradcam.core.targets import TargetSpec
from rsigradcam.metrics._common import check_batch_size, check_images, class_targets, predict
from rsigradcam.metrics.correlation import pearson
from rsigradcam.progress import Advance, progress_bar
from rsigradcam.serialization import JsonKeys

__all__ = [
    "REFERENCE_STEPS",
    "SATURATION",
    "STEPS",
    "DtypeResult",
    "Explain",
    "MakeExplainer",
    "SaturationSplit",
    "SensitivityResult",
    "StabilityResult",
    "StepsResult",
    "class_probabilities",
    "dtype_difference",
    "max_sensitivity",
    "saturation_groups",
    "saturation_split",
    "split_saturated",
    "stability",
    "steps_spread",
]

Explain = Callable[[Tensor, Tensor], Tensor]
"""``explain(images, targets) -> heatmaps``: (N, C, H, W), (N,) -> (N, H, W)."""

MakeExplainer = Callable[[int, torch.dtype], Explain]
"""``make(steps, dtype) -> explain``; a method without steps ignores ``steps``."""

STEPS: tuple[int, ...] = (8, 16, 32, 50, 100, 200)
"""The step counts m compared with the reference."""

REFERENCE_STEPS = 512
"""The reference m of the steps comparison."""

SATURATION = 0.99
"""Top-1 softmax probability above which an image counts as saturated."""

_PREDICT_BATCH = 64  # images per forward pass when finding the top-1 classes


@dataclass(frozen=True)
class SaturationSplit:
    """Which images the model classifies with a saturated softmax.

    Attributes:
        saturated: (N,) bool, top-1 probability above ``threshold``.
        probabilities: (N,) float64, the top-1 probabilities.
        threshold: The threshold used.
    """

    saturated: Tensor
    probabilities: Tensor
    threshold: float

    def indices(self) -> tuple[Tensor, Tensor]:
        """The indices of the saturated and of the unsaturated images."""
        return self.saturated.nonzero().flatten(), (~self.saturated).nonzero().flatten()

    def groups(self) -> dict[str, Tensor]:
        """The masks of the ``"all"``, ``"saturated"`` and ``"unsaturated"`` images."""
        return saturation_groups(self.saturated)

    # The JSON form (rsigradcam.serialization.encode): these keys, in this order.
    __json_keys__: ClassVar[JsonKeys] = ("threshold", "saturated", "probabilities")


@dataclass(frozen=True)
class DtypeResult:
    """float32 against float64 maps, per image (CPU float64).

    Attributes:
        max_abs: (N,) the largest absolute difference.
        mean_abs: (N,) the mean absolute difference.
        correlation: (N,) Pearson correlation.
        steps: The steps both maps used.
    """

    max_abs: Tensor
    mean_abs: Tensor
    correlation: Tensor
    steps: int

    # The JSON form (rsigradcam.serialization.encode): these keys, in this order.
    __json_keys__: ClassVar[JsonKeys] = ("steps", "max_abs", "mean_abs", "correlation")


@dataclass(frozen=True)
class StepsResult:
    """Maps at each m against the map at the reference m (CPU float64).

    Attributes:
        steps: The step counts compared, S of them.
        reference: The reference step count.
        max_abs: (S, N) the largest absolute difference from the reference map.
        correlation: (S, N) Pearson correlation with the reference map.
    """

    steps: list[int]
    reference: int
    max_abs: Tensor
    correlation: Tensor


@dataclass(frozen=True)
class SensitivityResult:
    """Max-sensitivity under uniform input noise (CPU float64).

    Attributes:
        sensitivity: (N,) ``max_k ||Φ(x + δ_k) - Φ(x)||_2 / ||Φ(x)||_2`` (the numerator
            alone where ``Φ(x)`` is zero).
        max_abs: (N,) the largest absolute pixel change over the samples.
        radius: The noise radius, in the preprocessed space.
        n_samples: Noise samples per image.
        seed: The noise seed.
    """

    sensitivity: Tensor
    max_abs: Tensor
    radius: float
    n_samples: int
    seed: int

    # The JSON form (rsigradcam.serialization.encode): these keys, in this order.
    __json_keys__: ClassVar[JsonKeys] = ("radius", "n_samples", "seed", "sensitivity", "max_abs")


@dataclass(frozen=True)
class StabilityResult:
    """All three stability measures and the saturation split of the images.

    Attributes:
        dtype: float32 against float64.
        steps: m against the reference m.
        noise: max-sensitivity.
        split: saturated and unsaturated images.
        targets: (N,) the explained classes.
    """

    dtype: DtypeResult
    steps: StepsResult
    noise: SensitivityResult
    split: SaturationSplit
    targets: Tensor

    def summary(self) -> dict[str, dict[str, Any] | None]:
        """Means over the ``"all"``, ``"saturated"`` and ``"unsaturated"`` images.

        A group without images is ``None``. Per step count, the steps entries list one
        mean per m in ``self.steps.steps``.
        """
        out: dict[str, dict[str, Any] | None] = {}
        for name, mask in self.split.groups().items():
            if not bool(mask.any()):
                out[name] = None
                continue
            out[name] = {
                "n_images": int(mask.sum()),
                "dtype_max_abs": float(self.dtype.max_abs[mask].mean()),
                "dtype_correlation": float(self.dtype.correlation[mask].mean()),
                "steps_max_abs": self.steps.max_abs[:, mask].mean(dim=1).tolist(),
                "steps_correlation": self.steps.correlation[:, mask].mean(dim=1).tolist(),
                "noise_sensitivity": float(self.noise.sensitivity[mask].mean()),
            }
        return out

    # The JSON form (rsigradcam.serialization.encode): these keys, in this order.
    __json_keys__: ClassVar[JsonKeys] = (
        ("summary", summary), "targets", "split", "dtype", "steps", "noise",
    )


def split_saturated(
    model: nn.Module, images: Tensor, threshold: float = SATURATION, *, batch_size: int = 64
) -> SaturationSplit:
    """Split images by the model's top-1 softmax probability: saturated if above ``threshold``.

    Example:
        >>> split = split_saturated(model, images)     # doctest: +SKIP
        >>> saturated, unsaturated = split.indices()    # doctest: +SKIP
    """
    probabilities = class_probabilities(model, images, batch_size=batch_size)
    return saturation_split(probabilities.max(dim=1).values, threshold)


def class_probabilities(model: nn.Module, images: Tensor, *, batch_size: int = 64) -> Tensor:
    """The softmax probabilities (N, classes) of ``images``, ``batch_size`` images per pass.

    Example:
        >>> class_probabilities(model, images).argmax(dim=1)  # doctest: +SKIP
    """
    images = check_images(images, model)
    return predict(model, images, check_batch_size(batch_size))


def saturation_split(top: Tensor, threshold: float = SATURATION) -> SaturationSplit:
    """Split by top-1 softmax probabilities ``top`` (any shape, flattened): above ``threshold``.

    Example:
        >>> saturation_split(torch.tensor([0.995, 0.5])).saturated
        tensor([ True, False])
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a probability in [0, 1], got {threshold!r}.")
    top = top.detach().to("cpu", torch.float64).flatten()
    return SaturationSplit(saturated=top > threshold, probabilities=top, threshold=threshold)


def saturation_groups(saturated: Tensor) -> dict[str, Tensor]:
    """The masks of the ``"all"``, ``"saturated"`` and ``"unsaturated"`` units of a bool mask.

    Example:
        >>> saturation_groups(torch.tensor([True, False]))["unsaturated"]
        tensor([False,  True])
    """
    return {"all": torch.ones_like(saturated), "saturated": saturated, "unsaturated": ~saturated}


def dtype_difference(
    model: nn.Module,
    images: Tensor,
    make: MakeExplainer,
    targets: TargetSpec = None,
    *,
    steps: int = 50,
    progress: bool = True,
) -> DtypeResult:
    """Compare the float32 and float64 maps of ``make(steps, dtype)``.

    Args:
        model: The classifier (for the top-1 classes when ``targets`` is ``None``).
        images: (N, C, H, W) preprocessed images on the model's device.
        make: ``make(steps, dtype) -> explain(images, targets) -> heatmaps``, e.g.
            ``lambda m, d: lambda x, t: RSIGradCAM(model, steps=m, dtype=d)(x, t).heatmap``.
        targets: Class per image (``None``: top-1).
        steps: The steps of both maps.
        progress: Show a progress bar on a terminal.

    Example:
        >>> dtype_difference(model, images, make).max_abs  # doctest: +SKIP
    """
    images, found = _prepare(model, images, targets)
    with progress_bar("stability: dtype", 2, progress) as advance:
        single = _run(make(steps, torch.float32), images, found, advance)
        double = _run(make(steps, torch.float64), images, found, advance)
    return _dtype_result(single, double, steps)


def steps_spread(
    model: nn.Module,
    images: Tensor,
    make: MakeExplainer,
    targets: TargetSpec = None,
    *,
    steps: Sequence[int] = STEPS,
    reference: int = REFERENCE_STEPS,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> StepsResult:
    """Compare the maps at each m in ``steps`` with the map at ``reference`` steps.

    Args:
        model: The classifier (for the top-1 classes when ``targets`` is ``None``).
        images: (N, C, H, W) preprocessed images on the model's device.
        make: ``make(steps, dtype) -> explain(images, targets) -> heatmaps``.
        targets: Class per image (``None``: top-1).
        steps: The step counts to compare (default 8, 16, 32, 50, 100, 200).
        reference: The reference step count (default 512).
        dtype: The dtype of every map.
        progress: Show a progress bar on a terminal.

    Example:
        >>> steps_spread(model, images, make, steps=(8, 50)).max_abs  # doctest: +SKIP
    """
    images, found = _prepare(model, images, targets)
    counts = [int(m) for m in steps]
    with progress_bar("stability: steps", len(counts) + 1, progress) as advance:
        reference_maps = _run(make(reference, dtype), images, found, advance)
        maps = [_run(make(m, dtype), images, found, advance) for m in counts]
    return _steps_result(maps, reference_maps, counts, reference)


def max_sensitivity(
    model: nn.Module,
    images: Tensor,
    make: MakeExplainer,
    targets: TargetSpec = None,
    *,
    radius: float = 0.02,
    n_samples: int = 10,
    steps: int = 50,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    progress: bool = True,
) -> SensitivityResult:
    """Max-sensitivity of the maps under uniform noise of ``radius`` (preprocessed units).

    The explained classes are those of the clean images, so the noise changes the input,
    never the question.

    Args:
        model: The classifier (for the top-1 classes when ``targets`` is ``None``).
        images: (N, C, H, W) preprocessed images on the model's device.
        make: ``make(steps, dtype) -> explain(images, targets) -> heatmaps``.
        targets: Class per image (``None``: top-1 of the clean images).
        radius: Half-width of the uniform noise, in the preprocessed space (0.02 is about
            1/255 of the pixel range with ImageNet normalisation).
        n_samples: Noise samples per image.
        steps: The steps of every map.
        dtype: The dtype of every map.
        seed: Seed of the noise; the same seed gives the same result.
        progress: Show a progress bar on a terminal.

    Example:
        >>> max_sensitivity(model, images, make, radius=0.02, seed=0).sensitivity  # doctest: +SKIP
    """
    images, found = _prepare(model, images, targets)
    if not radius >= 0:
        raise ValueError(f"radius must be non-negative, got {radius!r}.")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
    explain = make(steps, dtype)
    generator = torch.Generator().manual_seed(seed)
    with progress_bar("stability: noise", n_samples + 1, progress) as advance:
        clean = _run(explain, images, found, advance)
        noisy = []
        for _ in range(n_samples):
            noise = torch.rand(images.shape, generator=generator, dtype=torch.float64)
            delta = ((noise * 2.0 - 1.0) * radius).to(device=images.device, dtype=images.dtype)
            noisy.append(_run(explain, images + delta, found, advance))
    return _sensitivity_result(clean, noisy, radius, n_samples, seed)


def stability(
    model: nn.Module,
    images: Tensor,
    make: MakeExplainer,
    targets: TargetSpec = None,
    *,
    steps: int = 50,
    steps_list: Sequence[int] = STEPS,
    reference: int = REFERENCE_STEPS,
    radius: float = 0.02,
    n_samples: int = 10,
    seed: int = 0,
    threshold: float = SATURATION,
    progress: bool = True,
) -> StabilityResult:
    """Run :func:`dtype_difference`, :func:`steps_spread` and :func:`max_sensitivity`.

    The images are also split by :func:`split_saturated` (``threshold``), so that
    :meth:`StabilityResult.summary` reports each measure for saturated and unsaturated
    images. Arguments as for the three functions; ``steps`` is the m of the dtype and
    noise measures, ``steps_list`` the m compared with ``reference``.

    Example:
        >>> result = stability(model, images, make, steps_list=(8, 50))  # doctest: +SKIP
        >>> result.summary()["saturated"]                                 # doctest: +SKIP
    """
    images = check_images(images, model)
    probabilities = predict(model, images, _PREDICT_BATCH)
    split = saturation_split(probabilities.max(dim=1).values, threshold)
    found = class_targets(targets, probabilities)
    kwargs: dict[str, Any] = {"progress": progress}
    return StabilityResult(
        dtype=dtype_difference(model, images, make, found, steps=steps, **kwargs),
        steps=steps_spread(
            model, images, make, found, steps=steps_list, reference=reference, **kwargs
        ),
        noise=max_sensitivity(
            model, images, make, found, radius=radius, n_samples=n_samples, steps=steps,
            seed=seed, **kwargs,
        ),
        split=split,
        targets=found.cpu(),
    )


def _prepare(model: nn.Module, images: Tensor, targets: TargetSpec) -> tuple[Tensor, Tensor]:
    images = check_images(images, model)
    return images, class_targets(targets, predict(model, images, _PREDICT_BATCH))


def _run(explain: Explain, images: Tensor, targets: Tensor, advance: Advance) -> Tensor:
    maps = explain(images, targets)
    n, _, h, w = images.shape
    if not isinstance(maps, Tensor) or tuple(maps.shape) != (n, h, w):
        got = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(
            f"the explainer must return (N, H, W) = {(n, h, w)} heatmaps, got {got}; return "
            "Explanation.heatmap."
        )
    advance(1)
    return maps.detach().to("cpu", torch.float64)


def _dtype_result(single: Tensor, double: Tensor, steps: int) -> DtypeResult:
    diff = (single - double).abs().flatten(1)
    return DtypeResult(
        max_abs=diff.max(dim=1).values,
        mean_abs=diff.mean(dim=1),
        correlation=pearson(single, double),
        steps=steps,
    )


def _steps_result(
    maps: list[Tensor], reference_maps: Tensor, counts: list[int], reference: int
) -> StepsResult:
    n = reference_maps.shape[0]
    if not maps:
        empty = torch.empty(0, n, dtype=torch.float64)
        return StepsResult(steps=[], reference=reference, max_abs=empty, correlation=empty)
    return StepsResult(
        steps=counts,
        reference=reference,
        max_abs=torch.stack([(m - reference_maps).abs().flatten(1).amax(dim=1) for m in maps]),
        correlation=torch.stack([pearson(m, reference_maps) for m in maps]),
    )


def _sensitivity_result(
    clean: Tensor, noisy: list[Tensor], radius: float, n_samples: int, seed: int
) -> SensitivityResult:
    norm = clean.flatten(1).norm(dim=1)
    scale = torch.where(norm > 0, norm, torch.ones_like(norm))
    changes = torch.stack([(m - clean).flatten(1) for m in noisy])  # (K, N, HW)
    return SensitivityResult(
        sensitivity=(changes.norm(dim=2) / scale).max(dim=0).values,
        max_abs=changes.abs().amax(dim=(0, 2)),
        radius=float(radius),
        n_samples=n_samples,
        seed=seed,
    )
