"""Integrated Gradients at the input pixels, as a pixel map.

Sundararajan, Taly, Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.

On the straight path ``x_t = x' + t (x - x')`` the input moves by ``(t_i - t_(i-1))(x - x')``
on each interval, so the Riemann–Stieltjes sum of ``dy/dx`` against ``x_t`` *is*
Integrated Gradients with the same rule: the input is captured as if it were a layer, and
the path, the chunking and the integration are those of :class:`RSIGradCAM`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal, overload

import torch
from torch import Tensor, nn
from typing_extensions import Unpack

from rsigradcam.core.capture import LayerCapture
from rsigradcam.core.inference import PreparedModel
from rsigradcam.core.integrate import RiemannStieltjesSum, Rule, check_rule
from rsigradcam.core.targets import Output
from rsigradcam.explanation import Explanation
from rsigradcam.methods.base import (
    LayerList,
    LayerSpec,
    OneLayer,
    PathCAM,
    PathOptions,
    ResultT,
    is_layer_list,
    positional_deprecated,
)

__all__ = ["INPUT_LAYER", "IntegratedGradients", "PixelMap"]

#: The name under which the input is captured and reported (``exp.layer``).
INPUT_LAYER = "input"

PixelMap = Literal["positive", "absolute"]


class _InputTap(nn.Module):
    """The model behind an identity module named ``input``, so that the input can be hooked.

    The wrapped model is only referenced, never changed.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.input = nn.Identity()
        self.model = model

    def forward(self, x: Tensor) -> Any:
        return self.model(self.input(x))


class IntegratedGradients(PathCAM[ResultT]):
    """Integrated Gradients (input level), with the same call and result as the CAMs.

    ::

        IG_c(u, v) = sum over intervals of rule(dy/dx) * (x_{t_i} - x_{t_(i-1)})
                   = (x - x')_c(u, v) * sum_i rule(dy/dx_c(u, v)) (t_i - t_(i-1))
        map(u, v)  = ReLU(sum_c IG_c(u, v))        (pixel_map="positive")
                   = |sum_c IG_c(u, v)|            (pixel_map="absolute")

    ``exp.attributions`` is the (N, C, H, W) IG, ``exp.weights`` its spatial mean per
    input channel (N, C), ``exp.layer_map`` the (N, H, W) pixel map (``heatmap`` is the
    same map min-max normalised) and ``exp.layer`` is ``"input"``. Completeness holds:
    ``sum(IG) -> y(x) - y(x')`` as the steps grow, and ``completeness_error`` measures
    the gap.

    The positive part of the channel sum is the evidence *for* the class, as the CAM maps
    show it; ``"absolute"`` is the usual IG display, which also shows evidence against.

    Args:
        model: Any classifier ``images (N, C, H, W) -> logits (N, classes)``.
        layer: ``"input"``, or ``"auto"`` which means the same here, or a list of that one
            (the call then returns ``{"input": exp}``); accepted so that every method is
            built the same way.
        steps: m, the number of intervals; m + 1 path points ``t_i = i / m``.
        rule: ``"trapezoid"``, ``"left"`` or ``"right"`` (the paper's Riemann sum).
        output: ``"softmax"`` (the default: the paper's F, a class probability) or
            ``"logits"``. ``"sigmoid"`` scores a class by the
            sigmoid of its logit (multi-label).
        pixel_map: ``"positive"`` or ``"absolute"``, see above.
        **options: The path options ``baseline``, ``normalize``, ``partition``, ``path``,
            ``n_samples``, and ``batch_size``, ``dtype``, ``memory_budget_mb``; see
            :class:`~rsigradcam.methods.base.PathCAM`. ``reshape_transform`` does not
            apply to the input.

    Example:
        >>> from rsigradcam import IntegratedGradients
        >>> exp = IntegratedGradients(model, steps=50)(images)  # doctest: +SKIP
        >>> exp.attributions.shape, exp.completeness_error      # doctest: +SKIP
        (torch.Size([1, 3, 224, 224]), tensor([0.0071]))
    """

    method_name: ClassVar[str] = "ig"
    label: ClassVar[str] = "Integrated Gradients"
    explains_input: ClassVar[bool] = True
    has_completeness: ClassVar[bool] = True

    @overload
    def __init__(
        self: IntegratedGradients[Explanation], model: nn.Module, layer: OneLayer = INPUT_LAYER,
        *, steps: int = 50, rule: Rule = "trapezoid", output: Output = "softmax",
        pixel_map: PixelMap = "positive", **options: Unpack[PathOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: IntegratedGradients[dict[str, Explanation]], model: nn.Module, layer: LayerList,
        *, steps: int = 50, rule: Rule = "trapezoid", output: Output = "softmax",
        pixel_map: PixelMap = "positive", **options: Unpack[PathOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: IntegratedGradients[Any], model: nn.Module, layer: LayerSpec, *,
        steps: int = 50, rule: Rule = "trapezoid", output: Output = "softmax",
        pixel_map: PixelMap = "positive", **options: Unpack[PathOptions],
    ) -> None: ...
    @positional_deprecated("steps", "rule", "output")
    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = INPUT_LAYER,
        *,
        steps: int = 50,
        rule: Rule = "trapezoid",
        output: Output = "softmax",
        pixel_map: PixelMap = "positive",
        **options: Unpack[PathOptions],
    ) -> None:
        if options.get("reshape_transform") is not None:
            raise TypeError(
                "reshape_transform does not apply to IntegratedGradients, which explains the "
                "input pixels."
            )
        super().__init__(model, layer, steps=steps, output=output, **options)
        if pixel_map not in ("positive", "absolute"):
            raise ValueError(f"pixel_map must be 'positive' or 'absolute', got {pixel_map!r}.")
        self.rule = check_rule(rule)
        self.pixel_map = pixel_map
        self._tap = _InputTap(model)

    def _check_layer_spec(self, layer: LayerSpec) -> list[str | nn.Module]:
        one = layer[0] if is_layer_list(layer) and len(layer) == 1 else layer
        if not (isinstance(one, str) and one in (INPUT_LAYER, "auto")):
            raise ValueError(
                f"IntegratedGradients attributes to the input pixels, so layer must be "
                f"{INPUT_LAYER!r} (the default) or 'auto', got {layer!r}. For a layer, use "
                "RSIGradCAM or IntegratedGradCAM."
            )
        return [INPUT_LAYER]

    def _run_model(
        self, images: Tensor, keep: Sequence[str] = ()
    ) -> tuple[nn.Module, PreparedModel]:
        model, prepared = super()._run_model(images, keep)
        return (self._tap if model is self.model else _InputTap(model)), prepared

    def _resolve_layers(
        self, capture: LayerCapture, model: nn.Module, x: Tensor
    ) -> dict[str, nn.Module]:
        return {INPUT_LAYER: model.get_submodule(INPUT_LAYER)}

    def _accumulator(self, n_images: int, partition: Tensor) -> RiemannStieltjesSum:
        return RiemannStieltjesSum(n_images, self.rule)

    def _layer_map(self, weights: Tensor, attributions: Tensor, activation: Tensor) -> Tensor:
        total = attributions.sum(dim=1)
        return total.abs() if self.pixel_map == "absolute" else torch.relu(total)
