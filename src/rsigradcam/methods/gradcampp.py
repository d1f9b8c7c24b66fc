"""Grad-CAM++: channel weights from positive gradients, each position weighted by alpha.

Chattopadhay, Sarkar, Howlader, Balasubramanian, "Grad-CAM++: Generalized Gradient-based
Visual Explanations for Deep Convolutional Networks", WACV 2018.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, ClassVar, overload

from torch import Tensor, nn
from typing_extensions import Unpack

from rsigradcam.core.reduction import spatial_dims
from rsigradcam.core.targets import Output
from rsigradcam.explanation import Explanation
from rsigradcam.methods.base import (
    CamOptions,
    LayerList,
    LayerSpec,
    OneLayer,
    ResultT,
    positional_deprecated,
)
from rsigradcam.methods.gradcam import GradCAM

__all__ = ["GradCAMPlusPlus"]


class GradCAMPlusPlus(GradCAM[ResultT]):
    """Grad-CAM++, sharing the layer capture and CAM reduction of :class:`GradCAM`.

    With ``g = dS/dA`` at the input and the paper's exponential link ``Y = exp(S)`` (whose
    second and third derivatives are then powers of ``g``, up to the factor ``exp(S)``
    that is dropped, as in the common implementations)::

        alpha_k(i, j) = g^2 / (2 g^2 + (sum_ab A^k(a, b)) g^3 + eps)    (0 where that is 0)
        w_k           = sum_ij alpha_k(i, j) ReLU(g_k(i, j))
        map           = ReLU(sum_k w_k A^k(x))

    ``exp.attributions`` holds ``alpha * ReLU(g)``, whose spatial *sum* gives the weights;
    ``baseline_scores`` and ``completeness_error`` are NaN.

    ``eps = 0`` (the default) is the paper's Eq. 19. pytorch-grad-cam adds ``eps = 1e-6``
    to the denominator; where the gradients are small (``g^2`` near ``1e-6`` or below, as
    at middle layers of a trained network) that term dominates alpha and changes the map,
    so ``eps=1e-6`` reproduces pytorch-grad-cam's maps and ``eps=0`` the paper's.

    Args:
        model: Any classifier ``images (N, C, H, W) -> logits (N, classes)``.
        layer: Module name, the module itself, ``"auto"``, or a list of these.
        output: ``"logits"`` (the default: the paper's S, the score before the
            exponential) or ``"softmax"``. ``"sigmoid"`` scores a class by the
            sigmoid of its logit (multi-label).
        eps: A non-negative, finite number added to alpha's denominator: ``0`` (default)
            is the paper's formula, ``1e-6`` pytorch-grad-cam's.
        **options: ``batch_size``, ``dtype``, ``memory_budget_mb``, ``reshape_transform``,
            ``speed``; see :class:`~rsigradcam.methods.base.BaseCAM`.

    Example:
        >>> from rsigradcam import GradCAMPlusPlus
        >>> exp = GradCAMPlusPlus(model, "head")(images, targets=285)  # doctest: +SKIP
    """

    method_name: ClassVar[str] = "gradcam++"
    label: ClassVar[str] = "Grad-CAM++"

    @overload
    def __init__(
        self: GradCAMPlusPlus[Explanation], model: nn.Module, layer: OneLayer = "auto", *,
        output: Output = "logits", eps: float = 0.0, **options: Unpack[CamOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: GradCAMPlusPlus[dict[str, Explanation]], model: nn.Module, layer: LayerList, *,
        output: Output = "logits", eps: float = 0.0, **options: Unpack[CamOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: GradCAMPlusPlus[Any], model: nn.Module, layer: LayerSpec, *,
        output: Output = "logits", eps: float = 0.0, **options: Unpack[CamOptions],
    ) -> None: ...
    @positional_deprecated("output")
    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = "auto",
        *,
        output: Output = "logits",
        eps: float = 0.0,
        **options: Unpack[CamOptions],
    ) -> None:
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not (
            math.isfinite(eps) and eps >= 0
        ):
            raise ValueError(
                f"eps must be a finite number >= 0 (0: the paper's Grad-CAM++, 1e-6: "
                f"pytorch-grad-cam's), got {eps!r}."
            )
        super().__init__(model, layer, output=output, **options)
        self.eps: float = float(eps)

    def _attributions(
        self, accumulated: Tensor, activation: Tensor, baseline_activation: Tensor | None
    ) -> Tensor:
        g = accumulated
        g2 = g * g
        spatial_sum = activation.sum(dim=spatial_dims(activation), keepdim=True)
        denominator = 2 * g2 + spatial_sum * g2 * g + self.eps
        nonzero = denominator != 0
        safe = denominator.masked_fill(~nonzero, 1)
        alpha = (g2 / safe).masked_fill(~nonzero, 0)
        return alpha * g.clamp(min=0)

    def _weights(self, attributions: Tensor) -> Tensor:
        return attributions.sum(dim=spatial_dims(attributions))
