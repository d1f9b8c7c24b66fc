"""Grad-CAM: channel weights from the spatial mean of the gradient at the input.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn
from typing_extensions import Unpack

from rsigradcam.core.targets import Output
from rsigradcam.methods.base import BaseCAM, CamOptions, LayerSpec

__all__ = ["GradCAM"]


class GradCAM(BaseCAM):
    """Grad-CAM: :class:`BaseCAM`'s one input point, explaining the logit by default.

    ``exp.attributions`` holds the gradient dy/dA at the input (whose spatial mean gives
    the weights); ``baseline_scores`` and ``completeness_error`` are NaN.

    Args:
        model: Any classifier ``images (N, C, H, W) -> logits (N, classes)``.
        layer: Module name, the module itself, ``"auto"``, or a list of these.
        output: ``"logits"`` (Grad-CAM's default) or ``"softmax"``.
        **options: ``batch_size`` (images per forward/backward chunk), ``dtype``,
            ``memory_budget_mb``, ``reshape_transform``; see :class:`BaseCAM`.

    Example:
        >>> from rsigradcam import GradCAM
        >>> exp = GradCAM(model, "head")(images, targets=285)  # doctest: +SKIP
    """

    method_name: ClassVar[str] = "gradcam"
    label: ClassVar[str] = "Grad-CAM"

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = "auto",
        output: Output = "logits",
        **options: Unpack[CamOptions],
    ) -> None:
        super().__init__(model, layer, output=output, **options)
