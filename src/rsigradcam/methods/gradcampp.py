"""Grad-CAM++: channel weights from positive gradients, each position weighted by alpha.

Chattopadhay, Sarkar, Howlader, Balasubramanian, "Grad-CAM++: Generalized Gradient-based
Visual Explanations for Deep Convolutional Networks", WACV 2018.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from rsigradcam.methods.gradcam import GradCAM

__all__ = ["GradCAMPlusPlus"]


class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++, sharing the layer capture and CAM reduction of :class:`GradCAM`.

    With ``g = dS/dA`` at the input and the paper's exponential link ``Y = exp(S)`` (whose
    second and third derivatives are then powers of ``g``, up to the factor ``exp(S)``
    that is dropped, as in the common implementations)::

        alpha_k(i, j) = g^2 / (2 g^2 + (sum_ab A^k(a, b)) g^3)    (0 where that is 0)
        w_k           = sum_ij alpha_k(i, j) ReLU(g_k(i, j))
        map           = ReLU(sum_k w_k A^k(x))

    ``exp.attributions`` holds ``alpha * ReLU(g)``, whose spatial *sum* gives the weights;
    ``baseline_scores`` and ``completeness_error`` are NaN.

    Args:
        model: Any classifier ``images (N, C, H, W) -> logits (N, classes)``.
        layer: Module name, the module itself, ``"auto"``, or a list of these.
        output: ``"logits"`` (the paper's S, the score before the exponential) or
            ``"softmax"``.
        **options: ``batch_size``, ``dtype``, ``memory_budget_mb``, ``reshape_transform``;
            see :class:`~rsigradcam.methods.base.BaseCAM`.

    Example:
        >>> from rsigradcam import GradCAMPlusPlus
        >>> exp = GradCAMPlusPlus(model, "head")(images, targets=285)  # doctest: +SKIP
    """

    method_name: ClassVar[str] = "gradcam++"
    label: ClassVar[str] = "Grad-CAM++"

    def _attributions(
        self, accumulated: Tensor, activation: Tensor, baseline_activation: Tensor | None
    ) -> Tensor:
        g = accumulated
        g2 = g * g
        denominator = 2 * g2 + activation.sum(dim=(2, 3), keepdim=True) * g2 * g
        nonzero = denominator != 0
        safe = denominator.masked_fill(~nonzero, 1)
        alpha = (g2 / safe).masked_fill(~nonzero, 0)
        return alpha * g.clamp(min=0)

    def _weights(self, attributions: Tensor) -> Tensor:
        return attributions.sum(dim=(2, 3))
