"""LayerCAM: element-wise weights, the positive gradient at each position.

Jiang, Zhang, Hou, Cheng, Wei, "LayerCAM: Exploring Hierarchical Class Activation Maps
for Localization", IEEE Transactions on Image Processing 30, 2021.
"""

from __future__ import annotations

from typing import Any, ClassVar, overload

import torch
from torch import Tensor, nn
from typing_extensions import Unpack

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

__all__ = ["LayerCAM"]


class LayerCAM(GradCAM[ResultT]):
    """LayerCAM, sharing the layer capture of :class:`GradCAM`.

    Each position of each channel gets its own weight, the positive part of the gradient
    at the input::

        w_k(i, j) = ReLU(dS/dA^k(i, j))
        map       = ReLU(sum_k w_k(i, j) A^k(i, j))

    ``exp.attributions`` holds the element-wise weights ``w_k(i, j)`` and ``exp.weights``
    their spatial mean (N, K). The paper's ``tanh`` rescaling of shallow-layer maps, used
    there to fuse several layers into one map, is not applied: each layer's map is
    returned as is. ``baseline_scores`` and ``completeness_error`` are NaN.

    Args:
        model: Any classifier ``images (N, C, H, W) -> logits (N, classes)``.
        layer: Module name, the module itself, ``"auto"``, or a list of these.
        output: ``"logits"`` (the default: the paper's class score) or ``"softmax"``.
            ``"sigmoid"`` scores a class by the sigmoid of its logit (multi-label).
        **options: ``batch_size``, ``dtype``, ``memory_budget_mb``, ``reshape_transform``,
            ``speed``; see :class:`~rsigradcam.methods.base.BaseCAM`.

    Example:
        >>> from rsigradcam import LayerCAM
        >>> maps = LayerCAM(model, ["blocks.5", "head"])(images)  # doctest: +SKIP
    """

    method_name: ClassVar[str] = "layercam"
    label: ClassVar[str] = "LayerCAM"

    @overload
    def __init__(
        self: LayerCAM[Explanation], model: nn.Module, layer: OneLayer = "auto", *,
        output: Output = "logits", **options: Unpack[CamOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: LayerCAM[dict[str, Explanation]], model: nn.Module, layer: LayerList, *,
        output: Output = "logits", **options: Unpack[CamOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: LayerCAM[Any], model: nn.Module, layer: LayerSpec, *,
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

    def _attributions(
        self, accumulated: Tensor, activation: Tensor, baseline_activation: Tensor | None
    ) -> Tensor:
        return accumulated.clamp(min=0)

    def _layer_map(self, weights: Tensor, attributions: Tensor, activation: Tensor) -> Tensor:
        return torch.relu((attributions * activation).sum(dim=1))
