"""RSI-Grad-CAM: channel weights from a Riemann–Stieltjes integral of gradients.

Lucas, Lerma, Furst, Raicu, "Visual Explanations from Deep Networks via Riemann-Stieltjes
Integrated Gradient-based Localization", ISVC 2022, arXiv:2205.10900.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import Tensor, nn
from typing_extensions import Unpack

from rsigradcam.core.adaptive import AdaptiveSchedule, run_adaptive
from rsigradcam.core.evaluator import PathEvaluator, PathResult
from rsigradcam.core.integrate import PathAccumulator, RiemannStieltjesSum, Rule, check_rule
from rsigradcam.core.path import uniform_partition
from rsigradcam.core.targets import Output
from rsigradcam.methods.base import LayerSpec, PathCAM, PathOptions

__all__ = ["RSIGradCAM"]


class RSIGradCAM(PathCAM):
    """Riemann–Stieltjes Integrated Grad-CAM.

    Integrates the gradient of the class score against the layer's own activation along
    the straight path from a baseline x' to the input x::

        IG_k(i, j) = sum over intervals of rule(G) * (A_{t_i} - A_{t_(i-1)})
        w_k        = mean_{i,j} IG_k(i, j)
        map        = ReLU(sum_k w_k A^k(x))

    When every path from the input to the score passes through the layer, ``sum(IG)``
    tends to ``y(x) - y(x')`` as the number of steps grows; ``completeness_error``
    measures the gap.

    Args:
        model: Any classifier ``images (N, C, H, W) -> logits (N, classes)``.
        layer: Module name (``"blocks.10"``), the module itself, ``"auto"`` (last layer
            with a spatial 4-D output), or a list of these (returns a dict by name).
        steps: m, the number of intervals; m + 1 path points ``t_i = i / m``. ``"auto"``
            refines an adaptive partition until the maps settle (see
            :mod:`rsigradcam.core.adaptive`); ``exp.partition`` and ``exp.n_evaluations`` then
            report the points used.
        rule: ``"trapezoid"`` (paper), ``"left"`` or ``"right"``.
        output: ``"softmax"`` (paper) explains the class probability, ``"logits"`` the logit.
        grad_relu: ReLU on the gradients before integrating (the authors' PyTorch code).
        guided: Keep the integrated gradient only where ``A(x) > 0``, ``IG > 0`` and
            ``A(x) - A(x') > 0`` (the authors' Keras code).
        tolerance: With ``steps="auto"``: stop when the estimated relative error of every
            layer map is below this.
        max_steps: With ``steps="auto"``: at most this many intervals per image.
        **options: The path options ``baseline`` (the paper's is ``"black"``, the
            default), ``normalize``, ``partition`` (any partition gives a valid
            Riemann–Stieltjes sum), ``path``, ``n_samples``, and ``batch_size``, ``dtype``
            (``torch.float64`` for reference-grade maps), ``memory_budget_mb``,
            ``reshape_transform``; see :class:`~rsigradcam.methods.base.PathCAM`.

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

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = "auto",
        steps: int | Literal["auto"] = 50,
        rule: Rule = "trapezoid",
        output: Output = "softmax",
        *,
        grad_relu: bool = False,
        guided: bool = False,
        tolerance: float = 0.01,
        max_steps: int = 256,
        **options: Unpack[PathOptions],
    ) -> None:
        super().__init__(model, layer, steps, output=output, **options)
        self.rule = check_rule(rule)
        self.grad_relu = bool(grad_relu)
        self.guided = bool(guided)
        self.schedule: AdaptiveSchedule | None = None
        if steps == "auto":
            self.schedule = AdaptiveSchedule(tolerance=tolerance, max_steps=max_steps)

    def _partition(self) -> Tensor:
        if self.schedule is not None and self.partition is None:
            return uniform_partition(self.schedule.max_steps)  # the most it may use
        return super()._partition()

    def _run_path(self, evaluator: PathEvaluator, partition: Tensor) -> PathResult:
        if self.schedule is None or self.partition is not None:
            return super()._run_path(evaluator, partition)
        integrated, used, n_evaluations = run_adaptive(
            evaluator, evaluator.n_images, evaluator.layers, self.rule, self.grad_relu,
            self.schedule,
        )
        return PathResult(integrated, used, n_evaluations)

    def _accumulator(self, n_images: int, partition: Tensor) -> PathAccumulator:
        return RiemannStieltjesSum(n_images, self.rule, grad_relu=self.grad_relu)

    def _attributions(
        self, accumulated: Tensor, activation: Tensor, baseline_activation: Tensor | None
    ) -> Tensor:
        if not self.guided:
            return accumulated
        assert baseline_activation is not None
        keep = (activation > 0) & (accumulated > 0) & (activation - baseline_activation > 0)
        return accumulated * keep
