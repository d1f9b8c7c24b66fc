"""RSI-Grad-CAM: channel weights from a Riemann–Stieltjes integral of gradients.

Lucas, Lerma, Furst, Raicu, "Visual Explanations from Deep Networks via Riemann-Stieltjes
Integrated Gradient-based Localization", ISVC 2022, arXiv:2205.10900.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal, overload

import torch
from torch import Tensor, nn
from typing_extensions import Unpack

from rsigradcam.core.adaptive import (
    AUTO_MAX_STEPS,
    AUTO_TOLERANCE,
    AdaptiveSchedule,
    ScoreGap,
    run_adaptive,
)
from rsigradcam.core.checks import warn_zero_maps
from rsigradcam.core.evaluator import PathEvaluator, PathResult
from rsigradcam.core.integrate import PathAccumulator, RiemannStieltjesSum, Rule, check_rule
from rsigradcam.core.limits import check_steps
from rsigradcam.core.path import uniform_partition
from rsigradcam.core.targets import Output, TargetSpec
from rsigradcam.explanation import Explanation
from rsigradcam.methods.base import (
    LayerList,
    LayerSpec,
    OneLayer,
    PathCAM,
    PathOptions,
    PathPass,
    ResultT,
    positional_deprecated,
)

__all__ = ["NO_COMPLETENESS_REASON", "RSIGradCAM"]

#: The authors' variants that ``explain_variants`` takes, by keyword.
_VARIANT_KEYS = ("grad_relu", "guided")

#: Why ``completeness_error`` is NaN with ``grad_relu=True`` or ``guided=True`` (one line,
#: for reports and JSON warnings).
NO_COMPLETENESS_REASON = (
    "completeness_error does not apply with grad_relu or guided (reported as NaN): the "
    "integrated gradients are clipped, so they no longer sum to y(x) - y(x')"
)


class RSIGradCAM(PathCAM[ResultT]):
    """Riemann–Stieltjes Integrated Grad-CAM.

    Integrates the gradient of the class score against the layer's own activation along
    the straight path from a baseline x' to the input x::

        IG_k(i, j) = sum over intervals of rule(G) * (A_{t_i} - A_{t_(i-1)})
        w_k        = mean_{i,j} IG_k(i, j)
        map        = ReLU(sum_k w_k A^k(x))

    When every path from the input to the score passes through the layer, ``sum(IG)``
    tends to ``y(x) - y(x')`` as the number of steps grows; ``completeness_error``
    measures the gap. At a layer the score can bypass (a residual stream or a skip
    connection past it; one extra forward pass per call finds it) it is NaN and
    ``completeness_note`` says why
    (:data:`~rsigradcam.methods.base.BYPASSED_LAYER_REASON`). With ``grad_relu=True`` or
    ``guided=True`` it is NaN
    (:data:`NO_COMPLETENESS_REASON`): clipping the gradients or the integrated gradients
    drops terms of the sum, so it no longer tends to ``y(x) - y(x')`` and the gap would
    measure that clipping, not convergence (it reads 0.02-2.1 there).

    Args:
        model: Any classifier ``images (N, C, H, W) -> logits (N, classes)``.
        layer: Module name (``"blocks.10"``), the module itself, ``"auto"`` (last layer
            with a spatial 4-D output), or a list of these (returns a dict by name). Every
            parameter after ``layer`` is a keyword (positionally it is deprecated).
        steps: m, the number of intervals (at most
            :data:`~rsigradcam.core.path.MAX_STEPS`); m + 1 path points ``t_i = i / m``.
            ``"auto"`` refines an adaptive partition until the maps settle and, where
            completeness holds (the layer cuts the graph, no ``grad_relu`` / ``guided``),
            until the completeness error is at most what uniform m = 50 would reach (see
            :mod:`rsigradcam.core.adaptive`); ``exp.partition`` and ``exp.n_evaluations``
            then report the points used.
        rule: ``"trapezoid"`` (paper), ``"left"`` or ``"right"``.
        output: ``"softmax"`` (the default, as in the paper) explains the class
            probability, ``"logits"`` the logit. The Grad-CAM family defaults to the logit,
            as its papers do. ``"sigmoid"`` scores a class by the
            sigmoid of its logit (multi-label).
        grad_relu: ReLU on the gradients before integrating (the authors' PyTorch code).
        guided: Keep the integrated gradient only where ``A(x) > 0``, ``IG > 0`` and
            ``A(x) - A(x') > 0`` (the authors' Keras code).
        tolerance: With ``steps="auto"``: stop when the estimated relative error of every
            layer map is below this (a pessimistic estimate: the default 0.1 ends within a
            heatmap correlation of 0.999 of the m = 512 map on every benchmark case).
        max_steps: With ``steps="auto"``: at most this many intervals per image (at most
            :data:`~rsigradcam.core.path.MAX_AUTO_STEPS`: the adaptive partition keeps
            every point's activations and gradients in memory).
        **options: The path options ``baseline`` (the paper's is ``"black"``, the
            default), ``normalize``, ``partition`` (any partition gives a valid
            Riemann–Stieltjes sum), ``path``, ``n_samples``, and ``batch_size``, ``dtype``
            (``torch.float64`` for reference-grade maps), ``memory_budget_mb``,
            ``reshape_transform``, ``speed`` (how the model runs:
            :class:`~rsigradcam.core.inference.SpeedOptions`); see
            :class:`~rsigradcam.methods.base.PathCAM`.

    Example:
        >>> from rsigradcam import RSIGradCAM
        >>> cam = RSIGradCAM(model, "blocks.10", steps=50)      # doctest: +SKIP
        >>> exp = cam(images)                                     # doctest: +SKIP
        >>> exp.heatmap.shape, exp.completeness_error             # doctest: +SKIP
        (torch.Size([1, 224, 224]), tensor([0.0123]))
    """

    method_name: ClassVar[str] = "rsi"
    label: ClassVar[str] = "RSI-Grad-CAM"
    has_completeness: ClassVar[bool] = True
    adaptive_steps: ClassVar[bool] = True
    #: The authors' variants it takes (``--grad-relu``, ``--guided`` in the command line).
    variants: ClassVar[tuple[str, ...]] = ("grad_relu", "guided")

    @overload
    def __init__(
        self: RSIGradCAM[Explanation], model: nn.Module, layer: OneLayer = "auto", *,
        steps: int | Literal["auto"] = 50, rule: Rule = "trapezoid",
        output: Output = "softmax", grad_relu: bool = False, guided: bool = False,
        tolerance: float = AUTO_TOLERANCE, max_steps: int = AUTO_MAX_STEPS,
        **options: Unpack[PathOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: RSIGradCAM[dict[str, Explanation]], model: nn.Module, layer: LayerList, *,
        steps: int | Literal["auto"] = 50, rule: Rule = "trapezoid",
        output: Output = "softmax", grad_relu: bool = False, guided: bool = False,
        tolerance: float = AUTO_TOLERANCE, max_steps: int = AUTO_MAX_STEPS,
        **options: Unpack[PathOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: RSIGradCAM[Any], model: nn.Module, layer: LayerSpec, *,
        steps: int | Literal["auto"] = 50, rule: Rule = "trapezoid",
        output: Output = "softmax", grad_relu: bool = False, guided: bool = False,
        tolerance: float = AUTO_TOLERANCE, max_steps: int = AUTO_MAX_STEPS,
        **options: Unpack[PathOptions],
    ) -> None: ...
    @positional_deprecated("steps", "rule", "output")
    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = "auto",
        *,
        steps: int | Literal["auto"] = 50,
        rule: Rule = "trapezoid",
        output: Output = "softmax",
        grad_relu: bool = False,
        guided: bool = False,
        tolerance: float = AUTO_TOLERANCE,
        max_steps: int = AUTO_MAX_STEPS,
        **options: Unpack[PathOptions],
    ) -> None:
        super().__init__(model, layer, steps=steps, output=output, **options)
        self.rule = check_rule(rule)
        self.grad_relu = bool(grad_relu)
        self.guided = bool(guided)
        check_steps(max_steps, "max_steps")
        self.schedule: AdaptiveSchedule | None = None
        if steps == "auto":
            self.schedule = AdaptiveSchedule(tolerance=tolerance, max_steps=max_steps)

    def explain_variants(
        self,
        images: Tensor,
        targets: TargetSpec = None,
        variants: Sequence[Mapping[str, bool]] = ({}, {"grad_relu": True}),
    ) -> list[ResultT]:
        """Explain ``images`` with several of the authors' variants from one set of passes.

        The variants differ only in what is done with the same activations and gradients
        (``grad_relu`` clips the gradients before the sum, ``guided`` the integrated
        gradients after it), so one path pass serves all of them: each result equals
        ``RSIGradCAM(..., **variant)(images, targets)`` with this instance's other
        settings, at the cost of one call. The instance is not changed, so calls may
        overlap (from another thread, or from a ``targets`` callable).

        Args:
            images: As for a call.
            targets: As for a call.
            variants: One mapping per result, of ``grad_relu`` and ``guided`` (missing keys
                are ``False``; ``{}`` is the paper's formula).

        Returns:
            One result per variant, in order, each as a call returns it (an
            :class:`Explanation`, or a dict by layer when ``layer`` is a list).

        Raises:
            ValueError: An unknown variant key, no variants, or ``steps="auto"`` (the
                adaptive partition depends on the variant).
        """
        chosen = []
        for variant in variants:
            unknown = sorted(set(variant) - set(_VARIANT_KEYS))
            if unknown:
                raise ValueError(
                    f"unknown variant {unknown[0]!r}; variants take {', '.join(_VARIANT_KEYS)}."
                )
            chosen.append((bool(variant.get("grad_relu")), bool(variant.get("guided"))))
        if not chosen:
            raise ValueError("variants is empty; give at least one, e.g. [{}].")
        if self.schedule is not None and self.partition is None:
            raise ValueError(
                'explain_variants needs fixed steps: with steps="auto" the partition depends '
                "on the variant; call RSIGradCAM(..., grad_relu=...) for each instead."
            )
        relus = _relus(chosen)
        found = self._path_pass(
            images, targets, lambda n_images, _: _VariantSums(n_images, self.rule, relus),
            find_cuts=self.has_completeness and not all(relu or mask for relu, mask in chosen),
        )
        evaluator, results = found.evaluator, []
        for grad_relu, guided in chosen:
            explanations = {}
            for name in found.layers:
                accumulated = found.result.accumulated[name][relus.index(grad_relu)]
                attributions = (
                    _keep_guided(
                        accumulated,
                        evaluator.activation[name],
                        evaluator.baseline_activation.get(name),
                    )
                    if guided
                    else accumulated
                )
                note = (
                    NO_COMPLETENESS_REASON
                    if grad_relu or guided
                    else super()._completeness_note(name, found)
                )
                explanations[name] = self._explain(name, found, attributions, note)
            warn_zero_maps(self.method_name, {n: e.layer_map for n, e in explanations.items()})
            results.append(self._shaped(explanations))
        return results

    def _partition(self) -> Tensor:
        if self.schedule is not None and self.partition is None:
            return uniform_partition(self.schedule.max_steps)  # the most it may use
        return super()._partition()

    def _run_path(
        self, evaluator: PathEvaluator, partition: Tensor,
        accumulator: Callable[[int, Tensor], PathAccumulator],
    ) -> PathResult:
        if self.schedule is None or self.partition is not None:
            return super()._run_path(evaluator, partition, accumulator)
        integrated, used, n_evaluations = run_adaptive(
            evaluator, evaluator.n_images, evaluator.layers, self.rule, self.grad_relu,
            self.schedule, self._score_gap(evaluator) if self.completeness_applies else None,
        )
        return PathResult(integrated, used, n_evaluations)

    @property
    def completeness_applies(self) -> bool:
        """Whether ``completeness_error`` may be reported: not with ``grad_relu`` or ``guided``.

        Where it applies, it is still NaN at a layer the score can bypass
        (:data:`~rsigradcam.methods.base.BYPASSED_LAYER_REASON`).
        """
        return self.has_completeness and not (self.grad_relu or self.guided)

    def _completeness_note(self, name: str, found: PathPass) -> str:
        if self.grad_relu or self.guided:
            return NO_COMPLETENESS_REASON
        return super()._completeness_note(name, found)

    @staticmethod
    def _score_gap(evaluator: PathEvaluator) -> ScoreGap:
        def gap() -> tuple[list[str], Tensor]:
            layers = [name for name, cut in evaluator.find_cuts().items() if cut]
            return layers, evaluator.scores - evaluator.baseline_scores

        return gap

    def _accumulator(self, n_images: int, partition: Tensor) -> PathAccumulator:
        return RiemannStieltjesSum(n_images, self.rule, grad_relu=self.grad_relu)

    def _attributions(
        self, accumulated: Tensor, activation: Tensor, baseline_activation: Tensor | None
    ) -> Tensor:
        if not self.guided:
            return accumulated
        return _keep_guided(accumulated, activation, baseline_activation)


def _keep_guided(
    accumulated: Tensor, activation: Tensor, baseline_activation: Tensor | None
) -> Tensor:
    """``guided``: the integrated gradients where ``A(x) > 0``, ``IG > 0``, ``A(x) > A(x')``."""
    assert baseline_activation is not None
    keep = (activation > 0) & (accumulated > 0) & (activation - baseline_activation > 0)
    return accumulated * keep


def _relus(variants: list[tuple[bool, bool]]) -> list[bool]:
    """The ``grad_relu`` values that ``(grad_relu, guided)`` variants use, each once."""
    return list(dict.fromkeys(relu for relu, _ in variants))


class _VariantSums:
    """The Riemann-Stieltjes sums of one stream of rows, one per ``grad_relu`` value.

    :meth:`result` stacks them: (len(relus), N, K, h, w), in the order of ``relus``.
    """

    def __init__(self, n_images: int, rule: Rule, relus: list[bool]) -> None:
        self.sums = [RiemannStieltjesSum(n_images, rule, grad_relu=relu) for relu in relus]

    def update(self, image_index: Tensor, activations: Tensor, gradients: Tensor) -> None:
        for total in self.sums:
            total.update(image_index, activations, gradients)

    def result(self) -> Tensor:
        return torch.stack([total.result() for total in self.sums])
