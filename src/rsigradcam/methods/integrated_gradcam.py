"""Integrated Grad-CAM: Grad-CAM maps taken against the baseline, summed along the path.

Sattarzadeh, Sudhakar, Plataniotis, Jang, Jeong, Kim, "Integrated Grad-CAM: Sensitivity-
Aware Visual Explanation of Deep Convolutional Networks via Integrated Gradient-Based
Scoring", ICASSP 2021, arXiv:2102.07805.
"""

from __future__ import annotations

from typing import Any, ClassVar, overload

import torch
from torch import Tensor, nn
from typing_extensions import Unpack

from rsigradcam.core.reduction import spatial_dims
from rsigradcam.core.targets import Output
from rsigradcam.explanation import Explanation
from rsigradcam.methods.base import (
    LayerList,
    LayerSpec,
    OneLayer,
    PathCAM,
    PathOptions,
    ResultT,
    positional_deprecated,
)

__all__ = ["IntegratedGradCAM", "PathGradCAMSum", "baseline_second_rows"]


def baseline_second_rows(n_images: int, partition: Tensor) -> tuple[Tensor, Tensor]:
    """Every (image, t) pair, image by image; within an image t = 1, then 0, then the rest.

    The input comes first (its top-1 class is needed before any gradient), the baseline
    second, so that every later point can be compared with A(x') as soon as it arrives.

    Example:
        >>> n, t = baseline_second_rows(1, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
        >>> t.tolist()
        [1.0, 0.0, 0.5]
    """
    order = torch.cat([partition[-1:], partition[:1], partition[1:-1]])
    return torch.arange(n_images).repeat_interleave(order.numel()), order.repeat(n_images)


class PathGradCAMSum:
    """Accumulate each path point's Grad-CAM map against the baseline, channel by channel.

    At a point ``t_i`` (i >= 1) with ``D^k = A^k(x_{t_i}) - A^k(x')``, the Grad-CAM
    weights ``a_k`` (the spatial mean of ``dy/dA^k`` there) and ``s = sum_k a_k D^k``, it
    adds ``(t_i - t_(i-1)) * [s > 0] * a_k * D^k``. Summed over k this is
    ``(t_i - t_(i-1)) * ReLU(s)``, the point's map.

    Rows must come in the order of :func:`baseline_second_rows` for the same partition;
    the t of each row is read from that schedule. Only a row that arrives before its
    image's baseline (the input, t = 1) is held back, so memory is O(chunk).

    Args:
        n_images: N, the number of images (paths).
        partition: The increasing float64 partition ``0 = t_0 < ... < t_m = 1``.
    """

    def __init__(self, n_images: int, partition: Tensor) -> None:
        self.n_images = n_images
        self.partition = partition
        _, self._t = baseline_second_rows(n_images, partition)
        self._cursor = 0
        self._total: Tensor | None = None
        self._baseline: Tensor | None = None
        self._has_baseline = torch.zeros(n_images, dtype=torch.bool)
        self._pending: tuple[Tensor, Tensor, Tensor, Tensor] | None = None

    def update(self, image_index: Tensor, activations: Tensor, gradients: Tensor) -> None:
        """Take the next rows of the schedule."""
        rows = image_index.numel()
        t = self._t[self._cursor : self._cursor + rows].to(image_index.device)
        self._cursor += rows
        if self._total is None or self._baseline is None:
            self._total = activations.new_zeros((self.n_images, *activations.shape[1:]))
            self._baseline = torch.zeros_like(self._total)
            self._has_baseline = self._has_baseline.to(image_index.device)
        if self._pending is not None:
            held_n, held_t, held_a, held_g = self._pending
            self._pending = None
            image_index, t = torch.cat([held_n, image_index]), torch.cat([held_t, t])
            activations = torch.cat([held_a, activations])
            gradients = torch.cat([held_g, gradients])
        at_base = t == 0
        self._baseline[image_index[at_base]] = activations[at_base]
        self._has_baseline[image_index[at_base]] = True
        ready = ~at_base & self._has_baseline[image_index]
        waiting = ~at_base & ~ready
        if bool(waiting.any()):
            self._pending = (
                image_index[waiting], t[waiting], activations[waiting], gradients[waiting]
            )
        if bool(ready.any()):
            self._add(image_index[ready], t[ready], activations[ready], gradients[ready])

    def _add(self, image_index: Tensor, t: Tensor, activations: Tensor, gradients: Tensor) -> None:
        assert self._total is not None and self._baseline is not None
        partition = self.partition.to(t.device)
        width = (t - partition[torch.searchsorted(partition, t) - 1]).to(activations.dtype)
        weights = gradients.mean(dim=spatial_dims(gradients))
        difference = activations - self._baseline[image_index]
        point_map = torch.einsum("nk,nk...->n...", weights, difference)
        ones = [1] * (difference.dim() - 2)
        scale = width.view(-1, *ones) * (point_map > 0)
        terms = scale.unsqueeze(1) * weights.view(*weights.shape, *ones) * difference
        self._total.index_add_(0, image_index, terms)

    def result(self) -> Tensor:
        """The (N, K, *s) per-channel contributions; their channel sum is the layer map."""
        if self._total is None:
            raise RuntimeError("no path points were accumulated.")
        return self._total


class IntegratedGradCAM(PathCAM[ResultT]):
    """Integrated Grad-CAM: the path average of Grad-CAM maps taken against the baseline.

    On the straight path ``x_t = x' + t (x - x')`` and a partition ``0 = t_0 < ... <
    t_m = 1`` (uniform: ``t_i = i / m``), with ``a_k(t)`` the spatial mean of
    ``dy/dA^k`` at ``x_t``::

        map = sum_{i=1..m} (t_i - t_(i-1)) ReLU(sum_k a_k(t_i) (A^k(x_{t_i}) - A^k(x')))

    This is the method's architecture as the authors draw it: a Grad-CAM map per path
    point ``x' + (i/m)(x - x')``, i = 1..m, built on the feature maps minus the baseline's,
    each through a ReLU, then added. (Their demo notebook evaluates t = 0, ..., (m-1)/m
    instead and its helper subtracts a zero baseline activation.) The uniform factor 1/m
    makes the map the path average instead of the plain sum, which scales ``layer_map``
    by a constant and leaves the heatmap unchanged; with an explicit ``partition`` each
    point counts by the width of its interval.

    ``exp.attributions`` holds the per-channel parts of that sum,
    ``sum_i (t_i - t_(i-1)) [point map > 0] a_k(t_i) (A^k(x_{t_i}) - A^k(x'))``: their
    channel sum is ``layer_map`` and their spatial mean is ``exp.weights``. There is no
    completeness property (``completeness_error`` is NaN).

    Args:
        model: Any classifier ``images (N, C, H, W) -> logits (N, classes)``.
        layer: Module name, the module itself, ``"auto"``, or a list of these (returns a
            dict by name, from one set of passes).
        steps: m, the number of intervals; m + 1 path points ``t_i = i / m`` (t = 0 only
            gives A(x')).
        output: ``"logits"`` (the default: the paper's class score, as for Grad-CAM, whose
            maps it integrates) or ``"softmax"``. ``"sigmoid"`` scores a class by the
            sigmoid of its logit (multi-label).
        **options: The path options ``baseline`` (the paper's is ``"black"``, the
            default), ``normalize``, ``partition``, ``path``, ``n_samples``, and
            ``batch_size``, ``dtype``, ``memory_budget_mb``, ``reshape_transform``, ``speed``; see
            :class:`~rsigradcam.methods.base.PathCAM`.

    Example:
        >>> from rsigradcam import IntegratedGradCAM
        >>> exp = IntegratedGradCAM(model, "blocks.10", steps=50)(images)  # doctest: +SKIP
    """

    method_name: ClassVar[str] = "integrated-gradcam"
    label: ClassVar[str] = "Integrated Grad-CAM"

    @overload
    def __init__(
        self: IntegratedGradCAM[Explanation], model: nn.Module, layer: OneLayer = "auto", *,
        steps: int = 50, output: Output = "logits", **options: Unpack[PathOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: IntegratedGradCAM[dict[str, Explanation]], model: nn.Module, layer: LayerList,
        *, steps: int = 50, output: Output = "logits", **options: Unpack[PathOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: IntegratedGradCAM[Any], model: nn.Module, layer: LayerSpec, *,
        steps: int = 50, output: Output = "logits", **options: Unpack[PathOptions],
    ) -> None: ...
    @positional_deprecated("steps", "output")
    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = "auto",
        *,
        steps: int = 50,
        output: Output = "logits",
        **options: Unpack[PathOptions],
    ) -> None:
        super().__init__(model, layer, steps=steps, output=output, **options)

    def _accumulator(self, n_images: int, partition: Tensor) -> PathGradCAMSum:
        return PathGradCAMSum(n_images, partition)

    def _rows(self, n_images: int, partition: Tensor) -> tuple[Tensor, Tensor]:
        return baseline_second_rows(n_images, partition)

    def _layer_map(self, weights: Tensor, attributions: Tensor, activation: Tensor) -> Tensor:
        return attributions.sum(dim=1).clamp(min=0)
