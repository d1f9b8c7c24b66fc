"""RSI-Grad-CAM and Grad-CAM with Captum's layer-attribution call shape: one import.

Captum (``captum.attr``) explains a layer with::

    attr = LayerGradCam(model, model.features[27]).attribute(inputs, target=281)

Here the same call gives the same Grad-CAM map, and with ``LayerRSIGradCAM``
RSI-Grad-CAM's layer map::

    from rsigradcam.integrations.captum import LayerRSIGradCAM

    attr = LayerRSIGradCAM(model, model.features[27]).attribute(inputs, target=281)

``attr`` is the (N, 1, h, w) map at the layer's resolution, shaped like
``LayerGradCam.attribute``'s, so Captum's ``LayerAttribution.interpolate`` and
``visualization.visualize_image_attr`` take it as they take Grad-CAM's. As in Captum, the
map is signed (``relu_attributions=False``) and the score is the model's output for the
target (the logit) unless told otherwise. This module does not import Captum.

Differences from Captum's conventions, all documented on :meth:`LayerRSIGradCAM.attribute`:
``target=None`` is each image's top-1 class (Captum needs a target for a multi-class
output); ``n_steps`` is the number of intervals m (m + 1 forward and backward passes);
``method`` names the Riemann–Stieltjes rule, and ``"gausslegendre"`` / ``"riemann_middle"``
are refused, since the sum needs the activations at consecutive points from t = 0 to 1.
"""

from __future__ import annotations

import numbers
import operator
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from rsigradcam.baselines import BaselineSpec
from rsigradcam.core.capture import resolve_layer
from rsigradcam.core.inference import SpeedSpec
from rsigradcam.core.integrate import Rule
from rsigradcam.core.limits import check_steps
from rsigradcam.core.targets import Output, TargetSpec, check_output
from rsigradcam.explanation import Explanation
from rsigradcam.methods import BaseCAM, GradCAM, RSIGradCAM

__all__ = ["METHODS", "REFUSED_METHODS", "LayerGradCam", "LayerRSIGradCAM"]

#: Captum's ``method`` names taken here, and the Riemann–Stieltjes rule each selects: the
#: gradient at both ends of each interval (averaged), at its lower end, or its upper end.
METHODS: dict[str, Rule] = {
    "riemann_trapezoid": "trapezoid",
    "riemann_left": "left",
    "riemann_right": "right",
}
#: Captum's ``method`` names refused here, with why (the error's text).
REFUSED_METHODS: dict[str, str] = {
    "gausslegendre": (
        "method='gausslegendre' is not available: RSI-Grad-CAM integrates the gradient "
        "against the change of the layer's activation between consecutive path points from "
        "t = 0 to t = 1, which Gauss-Legendre nodes do not include; use "
        "method='riemann_trapezoid' (the paper's rule), 'riemann_left' or 'riemann_right'."
    ),
    "riemann_middle": (
        "method='riemann_middle' is not available: a midpoint gradient needs a path point "
        "between each pair of points whose activation change it multiplies; use "
        "method='riemann_trapezoid' (the paper's rule), 'riemann_left' or 'riemann_right'."
    ),
}
_ZERO_MAP_WARNING = r".* map at layer .* is zero everywhere"


class _ForwardFunction(nn.Module):
    """A callable ``forward_func`` as a module that holds the layer (and its model)."""

    def __init__(self, forward_func: Callable[..., Any], owner: nn.Module) -> None:
        super().__init__()
        self.forward_func = forward_func
        self.owner = owner

    def forward(self, inputs: Tensor) -> Any:
        """Run the wrapped function."""
        return self.forward_func(inputs)


class _KeepsWeightedActivations(BaseCAM[Explanation]):
    """A method that also keeps ``w_k A^k(x)`` per channel, the CAM before its sum and ReLU."""

    weighted: Tensor | None = None

    def _layer_map(self, weights: Tensor, attributions: Tensor, activation: Tensor) -> Tensor:
        self.weighted = weights[:, :, None, None] * activation
        return torch.relu(self.weighted.sum(dim=1))


class _RSIKeeping(_KeepsWeightedActivations, RSIGradCAM[Explanation]):
    """RSI-Grad-CAM that keeps its weighted activations."""


class _GradCAMKeeping(_KeepsWeightedActivations, GradCAM[Explanation]):
    """Grad-CAM that keeps its weighted activations."""


def _as_model(forward_func: Any, layer: nn.Module) -> nn.Module:
    """The module to borrow: ``forward_func`` itself, or a module around a callable."""
    if isinstance(forward_func, nn.Module):
        return forward_func
    if not callable(forward_func):
        raise TypeError(
            f"forward_func must be a model (nn.Module) or a callable, not "
            f"{type(forward_func).__name__}."
        )
    owner = getattr(forward_func, "__self__", None)  # e.g. model.forward
    return _ForwardFunction(forward_func, owner if isinstance(owner, nn.Module) else layer)


def _target_spec(target: Any, n_images: int) -> TargetSpec:
    """Captum's ``target`` (int, 0-d / 1-d tensor, list of ints) as rsigradcam's targets."""
    if target is None:
        return None
    if isinstance(target, tuple) or (
        isinstance(target, list) and any(isinstance(t, tuple) for t in target)
    ):
        raise ValueError(
            "tuple targets index model outputs with more than two dimensions; "
            "LayerRSIGradCAM explains (N, classes) outputs: pass an int, a list of ints (one "
            "per example) or a tensor of class indices."
        )
    if isinstance(target, Tensor):
        if target.numel() == 1:
            return target.reshape(()).expand(n_images).clone()
        if target.dim() != 1:
            raise ValueError(
                f"target must be a 0-d or 1-d tensor of class indices, got shape "
                f"{tuple(target.shape)}."
            )
        values = target
    elif isinstance(target, numbers.Integral) and not isinstance(target, bool):
        return operator.index(target)
    elif isinstance(target, list):
        values = torch.as_tensor(target)
    else:
        raise TypeError(
            "target must be None (each example's top-1 class), an int, a list of ints or a "
            f"tensor of class indices, not {type(target).__name__}."
        )
    if values.numel() != n_images:
        raise ValueError(
            f"target has {values.numel()} values but inputs has {n_images} example(s); give "
            "one class per example, a single int, or None for each example's top-1 class."
        )
    return values


def _baseline_spec(baselines: Any, inputs: Tensor) -> BaselineSpec:
    """Captum's ``baselines`` (None = zeros, a scalar, or a tensor) as rsigradcam's."""
    if isinstance(baselines, tuple) and len(baselines) == 1:
        baselines = baselines[0]
    if baselines is None:
        return "zeros"
    if isinstance(baselines, numbers.Real) and not isinstance(baselines, bool):
        return torch.full_like(inputs, float(baselines))
    if not isinstance(baselines, Tensor):
        raise TypeError(
            "baselines must be None (zeros), a number, or a tensor shaped like inputs; got "
            f"{type(baselines).__name__}."
        )
    shape = tuple(inputs.shape)
    if baselines.dim() == 0:
        return torch.full_like(inputs, float(baselines))
    if tuple(baselines.shape) in (shape, shape[1:]):
        return baselines.to(inputs.dtype)
    if tuple(baselines.shape) == (1, *shape[1:]):
        return baselines.to(inputs.dtype).expand(shape).clone()
    raise ValueError(
        f"baselines has shape {tuple(baselines.shape)}, but inputs has shape {shape}; give a "
        f"number, or a tensor of shape {shape}, {(1, *shape[1:])} or {shape[1:]}."
    )


def _rule(method: str) -> Rule:
    if method in REFUSED_METHODS:
        raise ValueError(REFUSED_METHODS[method])
    if method not in METHODS:
        raise ValueError(
            f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}."
        )
    return METHODS[method]


def _one_input(inputs: Tensor | tuple[Tensor], name: str) -> Tensor:
    """The (N, C, H, W) images from ``inputs`` (a tensor, or a tuple holding one)."""
    if isinstance(inputs, tuple):
        if len(inputs) != 1:
            raise ValueError(
                f"inputs is a tuple of {len(inputs)} tensors; {name} explains models with one "
                "image input: pass that (N, C, H, W) tensor."
            )
        inputs = inputs[0]
    if not isinstance(inputs, Tensor) or inputs.dim() != 4:
        what = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(f"inputs must be an (N, C, H, W) tensor, got {what}.")
    return inputs


def _refuse_unsupported(additional_forward_args: Any, attribute_to_layer_input: bool) -> None:
    if additional_forward_args is not None:
        raise ValueError(
            "additional_forward_args is not supported; wrap the model so that it takes "
            "the images alone, e.g. forward_func=lambda x: model(x, *args)."
        )
    if attribute_to_layer_input:
        raise ValueError(
            "attribute_to_layer_input=True is not supported; explain the output of the "
            "module before this layer instead."
        )


def _explain(
    cam: _KeepsWeightedActivations, inputs: Tensor, target: Any, relu_attributions: bool
) -> tuple[Explanation, Tensor]:
    """Run ``cam``; its explanation and the weighted activations ``w_k A^k(x)``."""
    with warnings.catch_warnings():
        if not relu_attributions:  # the signed map is returned: a zero ReLU is no news
            warnings.filterwarnings("ignore", _ZERO_MAP_WARNING, RuntimeWarning)
        exp = cam(inputs, _target_spec(target, inputs.shape[0]))
    assert cam.weighted is not None
    return exp, cam.weighted.detach()


def _captum_map(weighted: Tensor, relu_attributions: bool, attr_dim_summation: bool) -> Tensor:
    """Captum's Grad-CAM result from ``w_k A^k(x)``: summed over k (N, 1, h, w) or not."""
    attr = weighted.sum(dim=1, keepdim=True) if attr_dim_summation else weighted
    return torch.relu(attr) if relu_attributions else attr


class _CaptumLayerMethod:
    """The constructor of Captum's layer attributions: ``(forward_func, layer)``."""

    def __init__(
        self,
        forward_func: nn.Module | Callable[..., Any],
        layer: nn.Module,
        *,
        speed: SpeedSpec = "auto",
    ) -> None:
        if not isinstance(layer, nn.Module):
            raise TypeError(
                f"layer must be a module of the model (nn.Module), not {type(layer).__name__}."
            )
        self.forward_func = forward_func
        self.layer = layer
        self.speed = speed
        self.model = _as_model(forward_func, layer)
        resolve_layer(self.model, layer)  # fails now if the layer is not in the model


class LayerGradCam(_CaptumLayerMethod):
    """Grad-CAM with Captum's ``LayerGradCam`` constructor, ``attribute`` and result.

    The result equals Captum's for the same model, layer and target: the channel-weighted
    activations ``sum_k w_k A^k(x)`` with ``w_k`` the spatial mean of the gradient of the
    target's output, signed unless ``relu_attributions=True``. It runs
    :class:`rsigradcam.GradCAM`, so code can switch and be checked before it moves to
    :class:`LayerRSIGradCAM`.

    Args:
        forward_func: The model, or a callable such as ``model.forward`` (see
            :class:`LayerRSIGradCAM`).
        layer: The layer to explain, a module of the model whose output is an
            (N, K, h, w) map.
        speed: How the model runs, as ``speed=`` of :class:`rsigradcam.GradCAM`.

    Example:
        >>> attr = LayerGradCam(model, model.features[27]).attribute(x, target=3)  # doctest: +SKIP
    """

    def attribute(
        self,
        inputs: Tensor | tuple[Tensor],
        target: Any = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = False,
        attr_dim_summation: bool = True,
        *,
        output: Output = "logits",
    ) -> Tensor:
        """The Grad-CAM map, shaped (N, 1, h, w) (or (N, K, h, w) unsummed).

        Args:
            inputs: (N, C, H, W) images (or a tuple holding that one tensor).
            target: As :meth:`LayerRSIGradCAM.attribute`'s (``None``: each example's
                top-1 class).
            additional_forward_args: Not supported (wrap the model instead).
            attribute_to_layer_input: Not supported (explain the layer's output).
            relu_attributions: Apply the ReLU (Captum's default ``False``: the signed map).
            attr_dim_summation: Sum over channels (the default), or return each channel's
                ``w_k A^k(x)``, (N, K, h, w), as Captum does with ``False``.
            output: The score: ``"logits"`` (what ``forward_func`` returns, as in Captum) or
                ``"softmax"``.

        Returns:
            The map, at the layer's resolution.
        """
        _refuse_unsupported(additional_forward_args, attribute_to_layer_input)
        images = _one_input(inputs, type(self).__name__)
        cam = _GradCAMKeeping(self.model, self.layer, output=check_output(output), speed=self.speed)
        _, weighted = _explain(cam, images, target, relu_attributions)
        return _captum_map(weighted, relu_attributions, attr_dim_summation)


class LayerRSIGradCAM(_CaptumLayerMethod):
    """RSI-Grad-CAM with the constructor and ``attribute`` of Captum's ``LayerGradCam``.

    Args:
        forward_func: The model (an ``nn.Module`` returning (N, classes) scores, or a
            Hugging Face model returning ``.logits``), or a callable such as
            ``model.forward`` or ``lambda x: model(x)``. With a callable that is not a
            model's method, only ``layer`` is put in eval mode during the call: call
            ``model.eval()`` first, as with Captum.
        layer: The layer to explain, a module of the model whose output is an
            (N, K, h, w) map.
        speed: How the model runs, as ``speed=`` of :class:`rsigradcam.RSIGradCAM`
            (:class:`~rsigradcam.core.inference.SpeedOptions`; default ``"auto"``).

    Example:
        >>> attr = LayerRSIGradCAM(model, model.features[27]).attribute(x)  # doctest: +SKIP
        >>> attr.shape                                                       # doctest: +SKIP
        torch.Size([1, 1, 14, 14])
    """

    def has_convergence_delta(self) -> bool:
        """Whether ``attribute`` can return a convergence delta: it can."""
        return True

    def attribute(
        self,
        inputs: Tensor | tuple[Tensor],
        target: Any = None,
        baselines: Any = None,
        n_steps: int = 50,
        method: str = "riemann_trapezoid",
        internal_batch_size: int | None = None,
        return_convergence_delta: bool = False,
        relu_attributions: bool = False,
        output: Output = "logits",
        *,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        attr_dim_summation: bool = True,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """The RSI-Grad-CAM layer map ``sum_k w_k A^k(x)``, shaped (N, 1, h, w).

        Args:
            inputs: (N, C, H, W) images (or a tuple holding that one tensor).
            target: The class to explain: an int for every example, a 0-d tensor, a 1-d
                tensor or list with one int per example, or ``None`` for each example's
                top-1 class.
            baselines: Where the straight path starts: ``None`` (zeros, as in Captum), a
                number (a constant image), or a tensor shaped like ``inputs`` or one
                example (``(1, C, H, W)`` or ``(C, H, W)``).
            n_steps: m, the number of path intervals: m + 1 points ``t_i = i / m``.
            method: The Riemann–Stieltjes rule: ``"riemann_trapezoid"`` (the paper's),
                ``"riemann_left"`` or ``"riemann_right"`` (:data:`METHODS`).
            internal_batch_size: Path points per forward and backward pass; ``None``
                chooses from the free memory.
            return_convergence_delta: Also return, per example, the signed completeness
                gap ``sum(integrated gradients) - (y(x) - y(x'))``, as Captum's
                ``LayerConductance`` does (it tends to 0 as ``n_steps`` grows when every
                path from the input to the score passes through the layer).
            relu_attributions: Apply the CAM's ReLU, ``ReLU(sum_k w_k A^k(x))``, the
                paper's map. ``False`` (the default, as Captum's ``LayerGradCam``): the
                signed map.
            output: The score: ``"logits"`` (whatever ``forward_func`` returns for the
                target, as in Captum) or ``"softmax"`` (its softmax probability, the
                paper's choice).
            additional_forward_args: Not supported (wrap the model instead).
            attribute_to_layer_input: Not supported (explain the layer's output).
            attr_dim_summation: Sum over channels (the default), or return each channel's
                ``w_k A^k(x)``, (N, K, h, w), as ``LayerGradCam`` does with ``False``.

        Returns:
            The (N, 1, h, w) map, and with ``return_convergence_delta`` the (N,) delta.
        """
        _refuse_unsupported(additional_forward_args, attribute_to_layer_input)
        images = _one_input(inputs, type(self).__name__)
        check_steps(n_steps, "n_steps")
        cam = _RSIKeeping(
            self.model,
            self.layer,
            steps=n_steps,
            rule=_rule(method),
            output=check_output(output),
            baseline=_baseline_spec(baselines, images),
            batch_size=internal_batch_size,
            speed=self.speed,
        )
        exp, weighted = _explain(cam, images, target, relu_attributions)
        attributions = _captum_map(weighted, relu_attributions, attr_dim_summation)
        if not return_convergence_delta:
            return attributions
        delta = exp.attributions.sum(dim=(1, 2, 3)) - (exp.scores - exp.baseline_scores)
        return attributions, delta.detach()
