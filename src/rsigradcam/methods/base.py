"""The template every CAM method follows.

capture -> (method-specific) attributions and channel weights -> CAM reduction ->
upsample and normalise -> :class:`~rsigradcam.explanation.Explanation`.

A method subclasses :class:`BaseCAM` and says only what is special about it: the path
points it evaluates (:meth:`BaseCAM._partition`), how it accumulates gradients and
activations over them (:meth:`BaseCAM._accumulator`, in the row order of
:meth:`BaseCAM._rows`), and optionally how attributions and
weights follow from that (:meth:`BaseCAM._attributions`, :meth:`BaseCAM._weights`).
"""

from __future__ import annotations

import copy
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsigradcam.baselines import (
    AutoBaseline,
    BaselineSpec,
    Normalize,
    SingleSpec,
    baseline_rows,
    check_baseline_spec,
    check_normalize,
)
from rsigradcam.constants import IMAGENET_NORMALIZE
from rsigradcam.core.capture import (
    LayerCapture,
    ModuleOutput,
    is_spatial_map,
    model_device,
    model_dtype,
    resolve_layer,
)
from rsigradcam.core.integrate import PathAccumulator
from rsigradcam.core.memory import chunk_size, default_budget_bytes, point_bytes
from rsigradcam.core.path import (
    CallablePath,
    Path,
    PathSpec,
    StraightLinePath,
    TensorPath,
    check_partition,
    path_rows,
    uniform_partition,
)
from rsigradcam.core.reshape import ReshapeFn, ReshapeSpec, resolve_reshape
from rsigradcam.core.targets import (
    Output,
    ScoreFn,
    TargetSpec,
    check_output,
    check_target_range,
    class_score,
    resolve_targets,
)
from rsigradcam.explanation import Explanation

__all__ = [
    "IMAGENET_NORMALIZE",
    "BaseCAM",
    "LayerSpec",
    "PathEvaluator",
    "PathResult",
    "StepsMixin",
    "cam_reduction",
    "normalize_heatmap",
]

LayerSpec = str | nn.Module | Sequence[str | nn.Module]


def cam_reduction(weights: Tensor, activation: Tensor) -> Tensor:
    """``ReLU(sum_k weights[:, k] * activation[:, k])``: (N, K), (N, K, h, w) -> (N, h, w)."""
    return torch.relu(torch.einsum("nk,nkhw->nhw", weights, activation))


def normalize_heatmap(layer_map: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinearly upsample (N, h, w) maps to ``size`` and min-max normalise each to [0, 1].

    A constant map (for example all zeros) becomes all zeros, never NaN.
    """
    up = F.interpolate(layer_map.unsqueeze(1), size=size, mode="bilinear", align_corners=False)
    up = up.squeeze(1).float()
    flat = up.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    span = (flat.max(dim=1).values.view(-1, 1, 1) - low)
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (up - low) / safe, torch.zeros_like(up)).clamp_(0.0, 1.0)


@dataclass(frozen=True)
class PathResult:
    """What a method's path pass produced, per layer, before the CAM reduction."""

    accumulated: dict[str, Tensor]
    partition: Tensor
    n_evaluations: int


class PathEvaluator:
    """Evaluate rows of (image index, t): forward, score, and the gradient at each layer.

    It resolves each image's top-1 target at its input (t = 1; callers evaluate that row
    first), keeps y(x), y(x'), A(x) and A(x') per image, and yields per chunk
    ``(image_index, t, activations, gradients)`` with one (B, K, h, w) tensor per layer.
    """

    def __init__(
        self,
        capture: LayerCapture,
        path: Path,
        layers: list[str],
        target_values: Tensor | None,
        score_fn: ScoreFn | None,
        class_score_fn: Callable[[Tensor, Tensor], Tensor],
        chunk: int,
        record_baseline: bool,
    ) -> None:
        x = path.images
        self.capture, self.path, self.layers, self.chunk = capture, path, layers, chunk
        self.n_images = x.shape[0]
        self.target_values = target_values
        self.score_fn = score_fn
        self.class_score_fn = class_score_fn
        self.record_baseline = record_baseline
        nan = torch.full((self.n_images,), float("nan"), dtype=x.dtype, device=x.device)
        self.scores, self.baseline_scores = nan.clone(), nan.clone()
        self.explained = (
            target_values.clone()
            if target_values is not None
            else torch.full((self.n_images,), -1, dtype=torch.long, device=x.device)
        )
        self.activation: dict[str, Tensor] = {}
        self.baseline_activation: dict[str, Tensor] = {}
        self._checked = False

    def __call__(
        self, image_index: Tensor, t: Tensor
    ) -> Iterator[tuple[Tensor, Tensor, dict[str, Tensor], dict[str, Tensor]]]:
        """Evaluate the rows in order, ``chunk`` rows per forward/backward pass."""
        x = self.path.images
        image_index = image_index.to(x.device)
        t = t.to(device=x.device, dtype=torch.float64)
        for start in range(0, image_index.numel(), self.chunk):
            n = image_index[start : start + self.chunk]
            tc = t[start : start + self.chunk]
            outputs, acts = self.capture.forward(self.path(n, tc.to(x.dtype)))
            if not self._checked:
                if self.target_values is not None:
                    check_target_range(self.target_values, outputs.shape[1])
                self._checked = True
            at_input = tc == 1.0
            at_base = (tc == 0.0) & self.record_baseline
            if self.target_values is None and self.score_fn is None:
                self.explained[n[at_input]] = outputs[at_input].detach().argmax(dim=1)
            if self.score_fn is not None:
                y = self.score_fn(outputs)
            else:
                y = self.class_score_fn(outputs, self.explained[n])
            _check_scores(y, outputs)
            grads = torch.autograd.grad(y.sum(), list(acts.values()), allow_unused=True)
            detached, gradients = {}, {}
            for (name, raw), grad in zip(acts.items(), grads, strict=True):
                act = self.capture.view(name, raw.detach())
                detached[name] = act
                gradients[name] = (
                    torch.zeros_like(act) if grad is None else self.capture.view(name, grad)
                )
                self._keep(self.activation, name, act, n, at_input)
                if self.record_baseline:
                    self._keep(self.baseline_activation, name, act, n, at_base)
            y = y.detach()
            self.scores[n[at_input]] = y[at_input]
            self.baseline_scores[n[at_base]] = y[at_base]
            yield n, tc, detached, gradients

    def _keep(
        self, store: dict[str, Tensor], name: str, act: Tensor, n: Tensor, mask: Tensor
    ) -> None:
        if name not in store:
            store[name] = act.new_zeros((self.n_images, *act.shape[1:]))
        store[name][n[mask]] = act[mask]


def _check_scores(y: Tensor, outputs: Tensor) -> None:
    if not isinstance(y, Tensor) or y.shape != outputs.shape[:1]:
        got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(
            f"the target callable must return one score per row, shape "
            f"({outputs.shape[0]},), got {got}."
        )
    if not bool(torch.isfinite(y).all()):
        raise ValueError(
            "the model produced non-finite (NaN or Inf) scores on the integration path; "
            "check the model and the input's normalisation."
        )


class StepsMixin:
    """Path points from ``steps`` (m intervals, ``t_i = i / m``) or an explicit ``partition``.

    For the path-integral methods; put it before :class:`BaseCAM` in the bases, so that its
    :meth:`_partition` serves as BaseCAM's hook.
    """

    steps: int | Literal["auto"]
    partition: Tensor | None

    def _set_steps(
        self, steps: int | Literal["auto"], partition: Tensor | Sequence[float] | None
    ) -> None:
        """Check and keep ``steps`` (``"auto"`` is left to the method) and ``partition``.

        Call it after ``BaseCAM.__init__``: a path given as a tensor fixes its points, so it
        refuses ``steps="auto"`` and ``partition=`` with it.
        """
        if isinstance(getattr(self, "path", None), Tensor) and (
            steps == "auto" or partition is not None
        ):
            raise ValueError(
                "a path given as a tensor fixes its points, so steps='auto' and partition= "
                "do not apply; pass a callable path(images, t) to choose the points."
            )
        if steps != "auto":
            uniform_partition(steps)  # validates steps
        self.steps = steps
        self.partition = None if partition is None else check_partition(partition)

    def _partition(self) -> Tensor:
        if self.partition is not None:
            return self.partition
        assert isinstance(self.steps, int)
        return uniform_partition(self.steps)


class BaseCAM(ABC):
    """Template for CAM methods that share layer capture, path and reduction.

    Args:
        model: Any classifier ``images (N, C, H, W) -> logits (N, classes)``.
        layer: A module name such as ``"blocks.10"``, the module itself, ``"auto"`` (the
            last layer with a spatial 4-D output), or a list of these. With a list the call
            returns ``dict[str, Explanation]`` computed from one set of forward passes.
        output: ``"softmax"`` to explain the class probability, ``"logits"`` the logit.
        baseline: See :mod:`rsigradcam.baselines`.
        normalize: ``(mean, std)`` the images were normalised with, used by the
            ``"black"`` baseline; ``None`` for images in [0, 1].
        batch_size: Path points per forward/backward chunk; ``None`` chooses it from
            ``memory_budget_mb``.
        dtype: Run the computation in this floating dtype (e.g. ``torch.float64``). The
            model is then copied and cast; the user's model is not changed.
        memory_budget_mb: Memory one chunk may use when ``batch_size=None``; default a
            quarter of the free RAM (or GPU memory).
        reshape_transform: For layers with (N, tokens, D) outputs (vision transformers):
            ``"tokens"`` drops the class and register tokens and lays the patches on their
            square grid; or :class:`~rsigradcam.core.reshape.TokenGrid` / any callable
            ``(N, T, D) -> (N, D, h, w)`` that only selects and rearranges elements.
        path: The integration path instead of the straight line from ``baseline``: a
            tensor of points from the baseline to the input, (P, C, H, W) for one image or
            (N, P, C, H, W); or a callable ``path(images, t) -> points`` for t in [0, 1]
            (see :mod:`rsigradcam.core.path`).
        n_samples: Average over this many draws of a random baseline (e.g. ``"noise"``).
    """

    #: The method's one name: in :data:`~rsigradcam.methods.registry.METHODS`, the CLI's
    #: ``--method``, file names and :attr:`Explanation.method`.
    method_name: ClassVar[str] = "cam"
    #: How figures and reports title it.
    label: ClassVar[str] = "CAM"
    #: Whether it integrates along a path, so that ``steps`` applies.
    takes_steps: ClassVar[bool] = False
    #: Whether it explains the input pixels (its one layer is ``"input"``), not a layer.
    explains_input: ClassVar[bool] = False
    #: Whether the method integrates from a baseline (t = 0) to the input (t = 1).
    uses_baseline: ClassVar[bool] = True
    #: Whether ``sum(attributions) = y(x) - y(x')`` holds in the limit.
    has_completeness: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = "auto",
        *,
        output: Output = "softmax",
        baseline: BaselineSpec = "black",
        normalize: Normalize = IMAGENET_NORMALIZE,
        batch_size: int | None = None,
        dtype: torch.dtype | None = None,
        memory_budget_mb: float | None = None,
        reshape_transform: ReshapeSpec = None,
        path: PathSpec = None,
        n_samples: int = 1,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}.")
        if isinstance(model, torch.jit.ScriptModule):
            raise TypeError(
                "model is a TorchScript module: it runs compiled code that skips Python "
                "forward hooks, so no layer can be captured. Pass the original nn.Module, or "
                "a torch.export program's module (torch.export.load(path).module())."
            )
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}.")
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating torch.dtype or None, got {dtype!r}.")
        if memory_budget_mb is not None and not memory_budget_mb > 0:
            raise ValueError(f"memory_budget_mb must be positive, got {memory_budget_mb!r}.")
        self.model = model
        self.layer = layer
        self.output = check_output(output)
        self.baseline = baseline
        self.normalize = check_normalize(normalize)
        self.n_samples = n_samples
        self._baselines = check_baseline_spec(baseline, n_samples)
        self._auto_baseline: AutoBaseline | None = None
        self.reshape_transform: ReshapeFn | None = resolve_reshape(reshape_transform)
        self.path = self._check_path_spec(path)
        self.batch_size = batch_size
        self.dtype = dtype
        self.memory_budget_mb = memory_budget_mb
        self._layer_names = self._check_layer_spec(layer)
        self._probe_cache: dict[tuple[Any, ...], list[ModuleOutput]] = {}

    # ------------------------------------------------------------------ template hooks
    @abstractmethod
    def _partition(self) -> Tensor:
        """The increasing float64 path parameters t in [0, 1] to evaluate."""

    @abstractmethod
    def _accumulator(self, n_images: int, partition: Tensor) -> PathAccumulator:
        """A fresh accumulator for the activations and gradients at ``partition``'s points."""

    def _rows(self, n_images: int, partition: Tensor) -> tuple[Tensor, Tensor]:
        """The (image index, t) rows in the order the accumulator expects them."""
        return path_rows(n_images, partition)

    def _attributions(
        self, accumulated: Tensor, activation: Tensor, baseline_activation: Tensor | None
    ) -> Tensor:
        """Per-element attributions (N, K, h, w) from the accumulated tensor."""
        return accumulated

    def _weights(self, attributions: Tensor) -> Tensor:
        """Channel weights (N, K); by default the spatial mean of the attributions."""
        return attributions.mean(dim=(2, 3))

    def _layer_map(self, weights: Tensor, attributions: Tensor, activation: Tensor) -> Tensor:
        """The (N, h, w) layer map; by default ``ReLU(sum_k weights_k A^k(x))``.

        Methods whose map is not a channel-weighted sum of A(x) (element-wise weights,
        maps summed along the path) override this.
        """
        return cam_reduction(weights, activation)

    # ------------------------------------------------------------------ public call
    def __call__(
        self, images: Tensor, targets: TargetSpec = None
    ) -> Explanation | dict[str, Explanation]:
        """Explain ``images`` for ``targets``.

        Args:
            images: (N, C, H, W) floating-point images, preprocessed for the model and on
                the model's device.
            targets: ``None`` (each image's top-1 class), an int, one int per image, or a
                callable ``fn(outputs) -> scores`` on the model's raw (B, classes) outputs.

        Returns:
            An :class:`Explanation`, or ``dict[str, Explanation]`` when ``layer`` is a list.
        """
        images = self._check_images(images)
        model, run_dtype = self._run_model()
        x = images.detach().to(run_dtype)
        n_images = x.shape[0]
        target_values = resolve_targets(targets, n_images, x.device)
        score_fn: ScoreFn | None = (
            targets if callable(targets) and not isinstance(targets, Tensor) else None
        )
        path, n_baselines = self._make_path(x)
        partition = path.partition() if isinstance(path, TensorPath) else self._partition()
        if n_baselines > 1 and target_values is not None:
            target_values = target_values.repeat_interleave(n_baselines)
        with torch.inference_mode(False), torch.enable_grad(), LayerCapture(model) as capture:
            layers = self._resolve_layers(capture, model, x)
            capture.attach(layers, self.reshape_transform)
            n_rows = n_images * n_baselines * partition.numel()
            chunk = self._chunk_size(capture, x, list(layers), n_rows)
            evaluator = PathEvaluator(
                capture,
                path,
                list(layers),
                target_values,
                score_fn,
                lambda out, tgt: class_score(out, tgt, self.output),
                chunk,
                self.uses_baseline,
            )
            result = self._run_path(evaluator, partition)
        explanations = {
            name: self._explain(name, evaluator, result, tuple(x.shape[2:]), n_baselines)
            for name in layers
        }
        for exp in explanations.values():
            zero = (exp.layer_map.flatten(1).amax(dim=1) <= 0).nonzero().flatten().tolist()
            if zero:
                warnings.warn(
                    f"{self.method_name} map at layer {exp.layer!r} is zero everywhere for "
                    f"image(s) {zero}: no channel has positive weighted activation (no positive "
                    "evidence for the target at this layer, or vanishing gradients). Their "
                    "heatmaps are all zeros.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        if isinstance(self.layer, (list, tuple)):
            return explanations
        return next(iter(explanations.values()))

    # ------------------------------------------------------------------ path
    def _check_path_spec(self, path: PathSpec) -> PathSpec:
        if path is None:
            return None
        if not self.uses_baseline:
            raise ValueError(
                f"path= does not apply to {type(self).__name__}, which evaluates only the input."
            )
        if not (isinstance(path, Tensor) or callable(path)):
            raise TypeError(
                "path must be None, a tensor of points (P, C, H, W) / (N, P, C, H, W), or a "
                f"callable path(images, t) -> points; not {type(path).__name__}."
            )
        if len(self._baselines) > 1 or self.n_samples > 1:
            raise ValueError(
                "path= fixes the baseline (the path's start), so it cannot be combined with "
                "several baselines or n_samples > 1."
            )
        return path

    def _baseline_specs(self) -> list[SingleSpec]:
        specs: list[SingleSpec] = []
        for spec in self._baselines:
            if isinstance(spec, str) and spec == "auto":
                if self._auto_baseline is None:
                    self._auto_baseline = AutoBaseline(self.model)
                specs.append(self._auto_baseline)
            else:
                specs.append(spec)
        return specs

    def _make_path(self, x: Tensor) -> tuple[Path, int]:
        """The path over every (image, baseline) row, and the number of baselines J.

        With J > 1 baselines (a list, or ``n_samples``), row ``n * J + j`` is image n
        integrated from its baseline j.
        """
        if not self.uses_baseline:
            return StraightLinePath(x, x), 1
        if isinstance(self.path, Tensor):
            return TensorPath(x, self.path), 1  # it casts to x's dtype
        if self.path is not None:
            return CallablePath(x, self.path), 1
        baselines = baseline_rows(self._baseline_specs(), x, self.normalize, self.n_samples)
        n_baselines = baselines.shape[0] // x.shape[0]
        rows = x.repeat_interleave(n_baselines, dim=0) if n_baselines > 1 else x
        return StraightLinePath(rows, baselines), n_baselines

    # ------------------------------------------------------------------ checks
    def _check_layer_spec(self, layer: LayerSpec) -> list[str | nn.Module]:
        items: list[Any] = list(layer) if isinstance(layer, (list, tuple)) else [layer]
        if not items:
            raise ValueError("layer list is empty; give at least one layer name or module.")
        for item in items:
            if not isinstance(item, (str, nn.Module)):
                raise TypeError(
                    "layer must be a module name, an nn.Module, 'auto', or a list of these; "
                    f"got {type(item).__name__}."
                )
            if not (isinstance(item, str) and item == "auto"):
                resolve_layer(self.model, item)  # fail early on unknown names
        return items

    def _check_images(self, images: Any) -> Tensor:
        if not isinstance(images, Tensor):
            raise TypeError(
                f"images must be a torch.Tensor (N, C, H, W), not {type(images).__name__}."
            )
        if images.dim() != 4:
            hint = " Add a batch dimension with images.unsqueeze(0)." if images.dim() == 3 else ""
            raise ValueError(
                f"images must be a 4-D (N, C, H, W) tensor, got shape {tuple(images.shape)}.{hint}"
            )
        if not images.dtype.is_floating_point:
            raise TypeError(
                f"images must be floating point, got dtype {images.dtype}. Convert and "
                "normalise them first, e.g. images.float() / 255 followed by the model's "
                "normalisation."
            )
        if images.shape[0] == 0:
            raise ValueError("images is an empty batch (N = 0); pass at least one image.")
        device = model_device(self.model)
        if images.device != device:
            raise ValueError(
                f"images are on {images.device} but the model is on {device}; move them with "
                f"images.to({str(device)!r})."
            )
        if not bool(torch.isfinite(images).all()):
            raise ValueError("images contain NaN or Inf values; clean the input first.")
        return images

    def _run_model(self) -> tuple[nn.Module, torch.dtype]:
        own = model_dtype(self.model)
        if self.dtype is None or self.dtype == own:
            return self.model, own
        return copy.deepcopy(self.model).to(self.dtype), self.dtype

    def _resolve_layers(
        self, capture: LayerCapture, model: nn.Module, x: Tensor
    ) -> dict[str, nn.Module]:
        layers: dict[str, nn.Module] = {}
        for item in self._layer_names:
            if isinstance(item, str) and item == "auto":
                name = self._auto_layer(self._probe(capture, x))
            else:
                name, _ = resolve_layer(self.model, item)
            layers[name] = model.get_submodule(name)
        return layers

    def _probe(self, capture: LayerCapture, x: Tensor) -> list[ModuleOutput]:
        key = (tuple(x.shape[1:]), x.dtype, x.device, id(capture.model))
        if key not in self._probe_cache:
            self._probe_cache = {key: capture.probe(x[:1])}
        return self._probe_cache[key]

    def _auto_layer(self, records: list[ModuleOutput]) -> str:
        if self.reshape_transform is not None:
            raise ValueError(
                "layer='auto' cannot choose a token layer: after the last attention block "
                "the patch tokens no longer reach a class-token head, so late token layers "
                "give empty maps. Name the layer, e.g. the last block's first norm "
                "('blocks.11.norm1' in a ViT-B)."
            )
        spatial = [r.name for r in records if is_spatial_map(r.shape)]
        if not spatial:
            raise ValueError(
                "layer='auto' found no layer with a spatial 4-D (N, K, h, w) output; pass "
                "layer= a convolutional module or its name."
            )
        return spatial[-1]

    def _chunk_size(
        self, capture: LayerCapture, x: Tensor, layers: list[str], total_points: int
    ) -> int:
        if self.batch_size is not None:
            return self.batch_size
        records = self._probe(capture, x)
        per_point = point_bytes(records, layers, x[0].numel() * x.element_size())
        budget = (
            int(self.memory_budget_mb * 1024**2)
            if self.memory_budget_mb is not None
            else default_budget_bytes(x.device)
        )
        largest = max((r.nbytes for r in records if r.is_leaf), default=0)
        cpu_cap = largest if x.device.type == "cpu" else None
        return chunk_size(per_point, budget, total_points, cpu_cap)

    # ------------------------------------------------------------------ the path pass
    def _run_path(self, evaluator: PathEvaluator, partition: Tensor) -> PathResult:
        """Evaluate every image at every point of ``partition``, streaming into accumulators."""
        n_images = evaluator.n_images
        accumulators = {name: self._accumulator(n_images, partition) for name in evaluator.layers}
        n, t = self._rows(n_images, partition)
        for rows, _, acts, grads in evaluator(n, t):
            for name in evaluator.layers:
                accumulators[name].update(rows, acts[name], grads[name])
        return PathResult(
            {name: acc.result() for name, acc in accumulators.items()},
            partition,
            partition.numel(),
        )

    # ------------------------------------------------------------------ reduction
    def _explain(
        self,
        name: str,
        evaluator: PathEvaluator,
        result: PathResult,
        size: tuple[int, ...],
        n_baselines: int = 1,
    ) -> Explanation:
        activation = evaluator.activation[name]
        attributions = self._attributions(
            result.accumulated[name], activation, evaluator.baseline_activation.get(name)
        )
        scores, baseline_scores = evaluator.scores, evaluator.baseline_scores
        targets, partition = evaluator.explained, result.partition
        if n_baselines > 1:  # rows n * J + j -> image n: average over the baselines
            def fold(t: Tensor) -> Tensor:
                return t.view(-1, n_baselines, *t.shape[1:])

            attributions = fold(attributions).mean(dim=1)
            activation = activation[::n_baselines]
            scores, targets = scores[::n_baselines], targets[::n_baselines]
            baseline_scores = fold(baseline_scores).mean(dim=1)
            if partition.dim() == 2:
                partition = fold(partition)
        weights = self._weights(attributions)
        layer_map = self._layer_map(weights, attributions, activation)
        heatmap = normalize_heatmap(layer_map, (size[0], size[1]))
        if self.has_completeness:
            delta = scores - baseline_scores
            eps = torch.finfo(delta.dtype).eps
            completeness = (attributions.sum(dim=(1, 2, 3)) - delta).abs() / delta.abs().clamp(
                min=eps
            )
        else:
            completeness = torch.full_like(scores, float("nan"))
        return Explanation(
            heatmap=heatmap,
            layer_map=layer_map,
            weights=weights,
            attributions=attributions,
            targets=targets.clone(),
            scores=scores,
            baseline_scores=baseline_scores,
            completeness_error=completeness,
            layer=name,
            method=self.method_name,
            partition=partition,
            n_evaluations=result.n_evaluations,
        )
