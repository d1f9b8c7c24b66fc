"""RSI-Grad-CAM, Grad-CAM and Grad-CAM++ with the call shape of ``monai.visualize``: one import.

MONAI explains a network with::

    cam = GradCAM(nn_module=model, target_layers="layer4")
    result = cam(x=volumes, class_idx=1)      # (N, 1, D, H, W)

Here the same calls give the same maps, and ``RSIGradCAM`` gives RSI-Grad-CAM's::

    from rsigradcam.integrations.monai import RSIGradCAM

    result = RSIGradCAM(model, "layer4", steps=50)(volumes, class_idx=1)

MONAI's defaults are kept: the score is the class logit; ``compute_map`` returns the
(N, 1, *s) map at the layer's resolution, ``ReLU(sum_k w_k A^k)``; the call upsamples it
to the input's (N, 1, *S) with :func:`default_upsampler` (linear, bilinear or trilinear,
``align_corners=False``) and applies :func:`default_normalizer`, which maps each image's
(min, max) to (1, 0), so the *largest* activation becomes 0, exactly as MONAI's does. Pass
``postprocessing=`` another callable (e.g. ``lambda m: 1 - default_normalizer(m)``) for
maps with the evidence high. Inputs are (N, C, *S) with 1, 2 or 3 spatial dimensions.
This module does not import MONAI.

Differences from MONAI 1.6.1, where it gives other maps:

- A batch explains each image's own class. MONAI backpropagates
  ``logits[:, class_idx].sum()``, so with ``class_idx=None`` (each image's top-1 class) and
  a batch whose images have different top-1 classes, each image's map there is that of
  the *sum* of the logits of all those classes; here it is that of the image's own class
  (as MONAI's open pull request 8573 proposes). With one image, with an int ``class_idx``,
  or where the top-1 classes agree, the maps are MONAI's. A 1-D ``class_idx`` gives one
  class per image.
- Grad-CAM++ (MONAI's formula, see :class:`GradCAMpp`) multiplies each image's weights by
  ``exp(score)`` here, for that image's score; MONAI multiplies the gradients by the
  exponential of the whole (N,) score tensor, which broadcasts against the last spatial
  axis: with N > 1 it fails or, where that axis has N voxels, mixes images. With one
  image the maps are MONAI's. After :func:`default_normalizer` the factor cancels: it
  matters only for ``compute_map``.
- A layer name that is not in the model, a class index out of range or a negative one
  is refused with one line at once (MONAI warns at construction, then fails at the call,
  and reads a negative index from the end).
- ``retain_graph`` is accepted and has nothing to keep: no graph outlives a call.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn
from typing_extensions import Unpack

from rsigradcam.core.capture import model_dtype, resolve_layer
from rsigradcam.core.reduction import spatial_dims, upsample_maps
from rsigradcam.core.targets import Output, TargetSpec, check_output
from rsigradcam.explanation import Explanation
from rsigradcam.integrations.pytorch_grad_cam import FrontEndOptions, GradCAMOptions
from rsigradcam.methods import BaseCAM
from rsigradcam.methods import GradCAM as _CoreGradCAM
from rsigradcam.methods import GradCAMPlusPlus as _CoreGradCAMPlusPlus
from rsigradcam.methods import RSIGradCAM as _CoreRSIGradCAM

__all__ = [
    "GRADCAMPP_EPS",
    "GradCAM",
    "GradCAMpp",
    "RSIGradCAM",
    "default_normalizer",
    "default_upsampler",
]

#: The constant MONAI's Grad-CAM++ adds to alpha's denominator.
GRADCAMPP_EPS = 1e-7

#: A layer of the model: its name in ``named_modules()`` (MONAI's) or the module.
Layer = str | nn.Module
Upsampler = Callable[[Sequence[int]], Callable[[Tensor], Tensor]]
Postprocessing = Callable[[Tensor], Tensor]


def default_upsampler(
    spatial_size: Sequence[int], align_corners: bool = False
) -> Callable[[Tensor], Tensor]:
    """MONAI's upsampler: a function resizing (N, C, *s) maps to ``spatial_size``.

    Linear, bilinear or trilinear by the number of spatial dimensions.

    Example:
        >>> default_upsampler((4, 4))(torch.ones(1, 1, 2, 2)).shape
        torch.Size([1, 1, 4, 4])
    """
    size = tuple(int(s) for s in spatial_size)

    def up(maps: Tensor) -> Tensor:
        return upsample_maps(maps, size, align_corners=align_corners)

    return up


def default_normalizer(maps: Tensor) -> Tensor:
    """MONAI's normaliser: each image's (min, max) mapped to (1, 0), as float32.

    This flips magnitudes, as MONAI's does: the largest value becomes 0 and the smallest
    1. An image whose map is constant is returned unchanged (as float32).

    Example:
        >>> default_normalizer(torch.tensor([[[0.0, 1.0, 4.0]]])).tolist()
        [[[1.0, 0.75, 0.0]]]
    """
    values = maps.detach().float()
    flat = values.flatten(1)
    shape = (-1,) + (1,) * (values.dim() - 1)
    low = flat.min(dim=1).values.view(shape)
    high = flat.max(dim=1).values.view(shape)
    span = high - low
    scaled = (values - low) / torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, scaled * -1.0 + 1.0, values)


def _unwrapped(nn_module: Any) -> nn.Module:
    """The network: ``nn_module`` itself, or the one a MONAI ``ModelWithHooks`` wraps."""
    wrapped = getattr(nn_module, "get_wrapped_net", None)
    model = wrapped() if callable(wrapped) and not isinstance(nn_module, nn.Module) else nn_module
    if not isinstance(model, nn.Module):
        raise TypeError(f"nn_module must be a network (nn.Module), not {type(model).__name__}.")
    return model


def _layers(model: nn.Module, target_layers: Layer | Sequence[Layer]) -> list[nn.Module]:
    """The modules ``target_layers`` names (one name, or several for ``layer_idx``)."""
    given = [target_layers] if isinstance(target_layers, (str, nn.Module)) else target_layers
    if isinstance(given, (bytes, np.ndarray)) or not isinstance(given, Sequence) or not given:
        raise ValueError(
            "target_layers must be a layer's name, e.g. target_layers=\"layer4\", or a list "
            f"of names; got {given!r}."
        )
    return [resolve_layer(model, layer)[1] for layer in given]


def _class_spec(class_idx: Any) -> TargetSpec:
    """MONAI's ``class_idx`` as rsigradcam's targets: None, one class, or one per image."""
    if class_idx is None:
        return None
    if isinstance(class_idx, bool):
        raise TypeError("class_idx must be None (each image's top-1 class) or an int, not bool.")
    if isinstance(class_idx, numbers.Integral):
        value = int(class_idx)
        if value < 0:
            raise ValueError(
                f"class_idx must be a class index >= 0, got {value}; a negative index is not "
                "read from the end here: pass the class's number."
            )
        return value
    if isinstance(class_idx, (Tensor, np.ndarray, Sequence)) and not isinstance(class_idx, str):
        values = torch.as_tensor(class_idx)
        if values.dtype.is_floating_point or values.dtype == torch.bool or values.dim() > 1:
            raise ValueError(
                "class_idx must be an int or a 1-D sequence of ints (one class per image), "
                f"got {values.dtype} of shape {tuple(values.shape)}."
            )
        if values.dim() == 0:
            return _class_spec(int(values))
        if bool((values < 0).any()):
            raise ValueError(f"class_idx must be class indices >= 0, got {values.tolist()}.")
        return values.long()
    raise TypeError(
        "class_idx must be None (each image's top-1 class), an int, or one int per image; "
        f"got {type(class_idx).__name__}."
    )


class _WithKeywords(nn.Module):
    """The network called with keyword arguments beside the input, as MONAI passes them."""

    def __init__(self, model: nn.Module, keywords: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.keywords = keywords

    def forward(self, x: Tensor) -> Any:
        """Run the wrapped network on ``x`` with the keywords."""
        return self.model(x, **self.keywords)


class _CAMBase:
    """MONAI's CAM constructor, ``compute_map``, ``feature_map_size`` and call."""

    #: The rsigradcam method this front-end runs.
    method: ClassVar[type[BaseCAM[Any]]]

    def __init__(
        self,
        nn_module: nn.Module,
        target_layers: Layer | Sequence[Layer],
        upsampler: Upsampler,
        postprocessing: Postprocessing,
        output: Output,
        options: dict[str, Any],
    ) -> None:
        self.nn_module = _unwrapped(nn_module)
        self.target_layers = _layers(self.nn_module, target_layers)
        self.upsampler = upsampler
        self.postprocessing = postprocessing
        self.output = check_output(output)
        self._options = options
        self._cams: dict[int, BaseCAM[Any]] = {}
        #: The full result of the last call for its layer (scores, weights and, for
        #: RSI-Grad-CAM, the completeness error); ``None`` before the first call.
        self.explanation: Explanation | None = None
        self._cam(-1, {})  # checks every option now

    def _layer(self, layer_idx: int) -> tuple[int, nn.Module]:
        if isinstance(layer_idx, bool) or not isinstance(layer_idx, numbers.Integral):
            raise TypeError(f"layer_idx must be an int, not {type(layer_idx).__name__}.")
        n = len(self.target_layers)
        if not -n <= layer_idx < n:
            raise IndexError(
                f"layer_idx {layer_idx} is out of range for {n} target layer(s); pass "
                f"-{n}..{n - 1}."
            )
        return int(layer_idx) % n, self.target_layers[layer_idx]

    def _cam(self, layer_idx: int, keywords: dict[str, Any]) -> BaseCAM[Any]:
        index, layer = self._layer(layer_idx)
        if keywords:  # a network called with these keywords: a cam for this call only
            model = _WithKeywords(self.nn_module, keywords)
            return self.method(model, layer, output=self.output, **self._options)
        if index not in self._cams:
            self._cams[index] = self.method(
                self.nn_module, layer, output=self.output, **self._options
            )
        return self._cams[index]

    def _raw_map(self, explanation: Explanation) -> Tensor:
        """The (N, 1, *s) map at the layer's resolution."""
        return explanation.layer_map.unsqueeze(1)

    def compute_map(
        self,
        x: Tensor,
        class_idx: int | Sequence[int] | Tensor | None = None,
        retain_graph: bool = False,
        layer_idx: int = -1,
        **kwargs: Any,
    ) -> Tensor:
        """The (N, 1, *s) map at the layer's resolution, without upsampling or normalising.

        Args:
            x: (N, C, *S) inputs, with 1, 2 or 3 spatial dimensions.
            class_idx: The class to explain: ``None`` for each image's top-1 class, an int
                for every image, or one int per image.
            retain_graph: Accepted for MONAI's call shape; no graph outlives the call.
            layer_idx: Which of ``target_layers`` to explain (the last by default).
            **kwargs: Passed to the network with ``x``, as MONAI passes them.

        Returns:
            ``ReLU(sum_k w_k A^k)`` for each image, shaped (N, 1, *s).
        """
        del retain_graph  # nothing to retain: each call runs its own passes
        explanation: Explanation = self._cam(layer_idx, kwargs)(x, _class_spec(class_idx))
        self.explanation = explanation
        return self._raw_map(explanation)

    def feature_map_size(
        self,
        input_size: Sequence[int],
        device: str | torch.device = "cpu",
        layer_idx: int = -1,
        **kwargs: Any,
    ) -> torch.Size:
        """The shape of :meth:`compute_map`'s result for inputs of shape ``input_size``.

        One forward pass without gradients on zeros of the network's dtype, in eval mode
        (restored after).
        """
        _, layer = self._layer(layer_idx)
        found: list[torch.Size] = []

        def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, Tensor):
                found.append(output.shape)

        training = self.nn_module.training
        handle = layer.register_forward_hook(record)
        try:
            self.nn_module.eval()
            with torch.no_grad():
                zeros = torch.zeros(*input_size, device=device, dtype=model_dtype(self.nn_module))
                self.nn_module(zeros, **kwargs)
        finally:
            handle.remove()
            self.nn_module.train(training)
        if not found or len(found[-1]) < 3:
            raise ValueError(
                f"layer {type(layer).__name__} gave no (N, K, *spatial) tensor for inputs of "
                f"shape {tuple(input_size)}; choose a convolutional layer."
            )
        return torch.Size((found[-1][0], 1, *found[-1][2:]))

    def __call__(
        self,
        x: Tensor,
        class_idx: int | Sequence[int] | Tensor | None = None,
        layer_idx: int = -1,
        retain_graph: bool = False,
        **kwargs: Any,
    ) -> Tensor:
        """The map upsampled to the input's size and post-processed: (N, 1, *S).

        Args:
            x: (N, C, *S) inputs, with 1, 2 or 3 spatial dimensions.
            class_idx: As :meth:`compute_map`'s.
            layer_idx: Which of ``target_layers`` to explain (the last by default).
            retain_graph: Accepted for MONAI's call shape; no graph outlives the call.
            **kwargs: Passed to the network with ``x``.

        Returns:
            ``postprocessing(upsampler(x.shape[2:])(compute_map(...)))``; by default float32
            in [0, 1] with each image's largest value at 0 (MONAI's normaliser).
        """
        acti_map = self.compute_map(x, class_idx, retain_graph, layer_idx, **kwargs)
        return self.postprocessing(self.upsampler(tuple(x.shape[2:]))(acti_map))


class GradCAM(_CAMBase):
    """Grad-CAM with the constructor, ``compute_map`` and call of MONAI's ``GradCAM``.

    The maps equal ``monai.visualize.GradCAM``'s for the same network, layer and class
    (see the module's docstring for a batch with ``class_idx=None``): the weights are the
    spatial means of the gradient of the class logit, the map ``ReLU(sum_k w_k A^k)``. It
    runs :class:`rsigradcam.GradCAM`, so code can switch and be checked before it moves to
    :class:`RSIGradCAM`.

    Args:
        nn_module: The network, ``(N, C, *S) -> (N, classes)``, or MONAI's
            ``ModelWithHooks`` around it.
        target_layers: The layer's name in ``nn_module.named_modules()`` (or the module),
            or several, one of which each call picks with ``layer_idx``.
        upsampler: ``upsampler(spatial_size)`` returns the function resizing the map.
        postprocessing: Applied to the upsampled map (default: :func:`default_normalizer`).
        output: The score: ``"logits"`` (MONAI's), ``"softmax"`` or ``"sigmoid"``.
        **options: :class:`rsigradcam.GradCAM`'s ``batch_size``, ``dtype``,
            ``memory_budget_mb`` and ``speed``.

    Example:
        >>> cam = GradCAM(nn_module=model, target_layers="layer4")  # doctest: +SKIP
        >>> result = cam(x=volumes, class_idx=1)                   # doctest: +SKIP
    """

    method: ClassVar[type[BaseCAM[Any]]] = _CoreGradCAM

    def __init__(
        self,
        nn_module: nn.Module,
        target_layers: Layer | Sequence[Layer],
        upsampler: Upsampler = default_upsampler,
        postprocessing: Postprocessing = default_normalizer,
        *,
        output: Output = "logits",
        **options: Unpack[GradCAMOptions],
    ) -> None:
        super().__init__(
            nn_module, target_layers, upsampler, postprocessing, output, dict(options)
        )


class _MonaiGradCAMPlusPlus(_CoreGradCAMPlusPlus[Explanation]):
    """Grad-CAM++ with MONAI's alpha (see :class:`GradCAMpp`), without the ``exp(S)``."""

    def _attributions(
        self, accumulated: Tensor, activation: Tensor, baseline_activation: Tensor | None
    ) -> Tensor:
        g = accumulated
        numerator = g.pow(2)
        summed = (activation * g.pow(3)).sum(dim=spatial_dims(activation), keepdim=True)
        denominator = numerator * 2 + summed
        denominator = torch.where(denominator != 0.0, denominator, torch.ones_like(denominator))
        alpha = numerator / (denominator + GRADCAMPP_EPS)
        return alpha * torch.relu(g)


class GradCAMpp(GradCAM):
    """Grad-CAM++ with the constructor, ``compute_map`` and call of MONAI's ``GradCAMpp``.

    As MONAI computes it, with ``g`` the gradient of the class logit ``S`` and ``A`` the
    activations (sums over the spatial positions)::

        alpha_k = g^2 / (2 g^2 + sum(A^k g^3) + 1e-7)     (a zero denominator counts as 1)
        w_k     = sum(alpha_k ReLU(exp(S) g))
        map     = ReLU(sum_k w_k A^k)

    This differs from :class:`rsigradcam.GradCAMPlusPlus` (the paper's, and
    pytorch-grad-cam's), whose denominator is ``2 g^2 + sum(A^k) g^3``: MONAI sums the
    product ``A g^3`` instead of multiplying the sum of ``A`` by ``g^3`` at each position.
    The factor ``exp(S)`` (the paper's ``Y = exp(S)``) multiplies each image's map by
    ``exp`` of its score (``exp.scores``); a callable target ``exp(S)`` would not give it,
    since alpha must come from the logit's gradient. After :func:`default_normalizer` the
    factor cancels. With one image the maps are MONAI's; for a batch, see the module's
    docstring. It takes :class:`GradCAM`'s arguments.
    """

    method = _MonaiGradCAMPlusPlus

    def _raw_map(self, explanation: Explanation) -> Tensor:
        layer_map = explanation.layer_map
        factor = explanation.scores.to(layer_map).exp()
        return (factor.view(-1, *([1] * (layer_map.dim() - 1))) * layer_map).unsqueeze(1)


class RSIGradCAM(_CAMBase):
    """RSI-Grad-CAM with the constructor, ``compute_map`` and call of MONAI's ``GradCAM``.

    The (N, 1, *s) map is :class:`rsigradcam.RSIGradCAM`'s layer map for the same
    options, upsampled and normalised as MONAI does (see :class:`GradCAM`); the full
    result of the last call, completeness error included, is in :attr:`explanation`.

    The baseline is ``"zeros"`` by default: a volume of zeros needs no normalisation
    statistics (``"black"`` does), has any number of channels and spatial dimensions, and
    after MONAI's usual intensity transforms it is a featureless input: the lowest
    intensity after ``ScaleIntensity`` to [0, 1] (air, background), the mean after
    ``NormalizeIntensity``. It is also Captum's default for path methods.

    Args:
        nn_module: The network, or MONAI's ``ModelWithHooks`` around it.
        target_layers: The layer's name (or the module), or several for ``layer_idx``.
        upsampler: ``upsampler(spatial_size)`` returns the function resizing the map.
        postprocessing: Applied to the upsampled map (default: :func:`default_normalizer`).
        steps: m, the number of intervals of the path from the baseline to the input, or
            ``"auto"``.
        output: The score: ``"logits"`` (MONAI's, the default), ``"softmax"`` (the
            RSI-Grad-CAM paper's) or ``"sigmoid"``.
        **options: :class:`rsigradcam.RSIGradCAM`'s other options: ``baseline`` (the
            input at t = 0, default ``"zeros"``; any of its baselines), ``rule``,
            ``normalize``, ``batch_size``, ``grad_relu``, ``guided``, ``partition``,
            ``path``, ``n_samples``, ``dtype``, ``memory_budget_mb``, ``tolerance``,
            ``max_steps``, ``speed``.

    Example:
        >>> cam = RSIGradCAM(model, "layer4", steps=50)      # doctest: +SKIP
        >>> result = cam(volumes, class_idx=1)                # doctest: +SKIP
        >>> cam.explanation.completeness_error                # doctest: +SKIP
    """

    method = _CoreRSIGradCAM

    def __init__(
        self,
        nn_module: nn.Module,
        target_layers: Layer | Sequence[Layer],
        upsampler: Upsampler = default_upsampler,
        postprocessing: Postprocessing = default_normalizer,
        *,
        steps: int | Literal["auto"] = 50,
        output: Output = "logits",
        **options: Unpack[FrontEndOptions],
    ) -> None:
        settings: dict[str, Any] = {"steps": steps, "baseline": "zeros", **options}
        super().__init__(nn_module, target_layers, upsampler, postprocessing, output, settings)
