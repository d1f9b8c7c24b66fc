"""Grad-CAM: channel weights from the spatial mean of the gradient at the input.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017.
"""

from __future__ import annotations

from typing import Any, ClassVar, overload

from torch import nn
from typing_extensions import Unpack

from rsigradcam.core.targets import Output
from rsigradcam.explanation import Explanation
from rsigradcam.methods.base import (
    BaseCAM,
    CamOptions,
    LayerList,
    LayerSpec,
    OneLayer,
    ResultT,
    positional_deprecated,
)

__all__ = ["GradCAM"]


class GradCAM(BaseCAM[ResultT]):
    """Grad-CAM: :class:`BaseCAM`'s one input point, explaining the logit by default.

    ``exp.attributions`` holds the gradient dy/dA at the input (whose spatial mean gives
    the weights); ``baseline_scores`` and ``completeness_error`` are NaN.

    Args:
        model: Any classifier ``images (N, C, H, W) -> logits (N, classes)``.
        layer: Module name, the module itself, ``"auto"``, or a list of these (the call
            then returns a dict by name).
        output: ``"logits"`` (the default) or ``"softmax"``. The paper explains y^c, the
            score before the softmax, so the Grad-CAM family defaults to the logit where
            the path methods that follow their papers (RSI-Grad-CAM, Integrated Gradients)
            default to the probability. ``"sigmoid"`` scores a class by the
            sigmoid of its logit (multi-label).
        **options: ``batch_size`` (images per forward/backward chunk), ``dtype``,
            ``memory_budget_mb``, ``reshape_transform``, ``speed``; see :class:`BaseCAM`.

    Example:
        >>> from rsigradcam import GradCAM
        >>> exp = GradCAM(model, "head")(images, targets=285)  # doctest: +SKIP
    """

    method_name: ClassVar[str] = "gradcam"
    label: ClassVar[str] = "Grad-CAM"

    @overload
    def __init__(
        self: GradCAM[Explanation], model: nn.Module, layer: OneLayer = "auto", *,
        output: Output = "logits", **options: Unpack[CamOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: GradCAM[dict[str, Explanation]], model: nn.Module, layer: LayerList, *,
        output: Output = "logits", **options: Unpack[CamOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: GradCAM[Any], model: nn.Module, layer: LayerSpec, *,
        output: Output = "logits", **options: Unpack[CamOptions],
    ) -> None: ...
    @positional_deprecated("output")
    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = "auto",
        *,
        output: Output = "logits",
        **options: Unpack[CamOptions],
    ) -> None:
        super().__init__(model, layer, output=output, **options)
