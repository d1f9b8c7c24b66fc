"""The template every CAM method follows, and the base of the path methods.

capture -> path evaluator -> accumulator -> attributions -> channel weights -> CAM
reduction -> upsample and normalise (:mod:`rsigradcam.core.reduction`) ->
:class:`~rsigradcam.explanation.Explanation`.

:class:`BaseCAM` evaluates one input point (t = 1): the gradient at the input, as the
Grad-CAM family needs. :class:`PathCAM` integrates from a baseline (t = 0) to the input
(t = 1) and owns the path options once: ``steps``, ``partition``, ``baseline``,
``normalize``, ``path`` and ``n_samples``. A method subclasses one of them and says only
what is special about it: how it accumulates activations and gradients
(:meth:`BaseCAM._accumulator`, in the row order of :meth:`BaseCAM._rows`), and optionally
how attributions, weights and the map follow from that (:meth:`BaseCAM._attributions`,
:meth:`BaseCAM._weights`, :meth:`BaseCAM._layer_map`).
"""

from __future__ import annotations

import functools
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, ClassVar, Generic, Literal, NamedTuple, TypeGuard, TypeVar, cast, overload

import torch
from torch import Tensor, nn
from typing_extensions import Unpack

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
    resolve_layer,
)
from rsigradcam.core.checks import caller_stacklevel, check_images, warn_zero_maps
from rsigradcam.core.evaluator import PathEvaluator, PathResult
from rsigradcam.core.inference import (
    PreparedModel,
    SpeedOptions,
    SpeedSpec,
    check_speed,
    prepare_model,
    run_settings,
    warm_up,
)
from rsigradcam.core.integrate import GradientAtInput, PathAccumulator
from rsigradcam.core.memory import auto_chunk_size, default_budget_bytes
from rsigradcam.core.path import (
    CallablePath,
    PathPlan,
    PathSpec,
    StraightLinePath,
    TensorPath,
    check_partition,
    path_rows,
    uniform_partition,
)
from rsigradcam.core.reduction import (
    cam_reduction,
    completeness_error,
    normalize_heatmap,
    spatial_dims,
)
from rsigradcam.core.reshape import (
    ReshapeFn,
    ReshapeSpec,
    resolve_reshape,
    token_layer_example,
)
from rsigradcam.core.targets import (
    Output,
    ScoreFn,
    TargetSpec,
    check_output,
    class_score,
    resolve_targets,
)
from rsigradcam.explanation import Explanation
from rsigradcam.methods.options import (
    CamOptions,
    DeprecatedSpeed,
    LayerList,
    LayerSpec,
    OneLayer,
    PathOptions,
)

__all__ = [
    "BYPASSED_LAYER_REASON",
    "IMAGENET_NORMALIZE",
    "BaseCAM",
    "CamOptions",
    "LayerList",
    "LayerSpec",
    "OneLayer",
    "PathCAM",
    "PathOptions",
    "PathPass",
    "PathPlan",
    "ResultT",
    "is_layer_list",
    "positional_deprecated",
]

#: What a call returns: an :class:`Explanation` for one layer, ``dict[str, Explanation]``
#: by layer name for a list of layers. Each method's class is generic in it, fixed by the
#: ``layer`` given at construction: ``GradCAM(model, "head")`` is a
#: ``GradCAM[Explanation]``, ``GradCAM(model, ["a", "b"])`` a
#: ``GradCAM[dict[str, Explanation]]``, so a type checker knows what a call returns.
ResultT = TypeVar("ResultT", bound="Explanation | dict[str, Explanation]")

_Init = TypeVar("_Init", bound=Callable[..., None])

#: Why ``completeness_error`` is NaN at a layer the score can bypass (one line, for
#: :attr:`Explanation.completeness_note`, reports and JSON): a path from the input to the
#: score avoids the layer's map, as a transformer's residual stream avoids its blocks'
#: norms, a skip connection avoids the convolutions inside a residual block, and a ViT's
#: class token avoids the patch grid that ``reshape_transform`` keeps. Found by
#: :meth:`~rsigradcam.core.evaluator.PathEvaluator.find_cuts`.
BYPASSED_LAYER_REASON = (
    "completeness_error does not apply at a layer the score can bypass (reported as NaN): "
    "a path from the input to the score avoids the layer's map (a residual stream or a "
    "skip connection past it, or tokens the reshape_transform drops), so the integrated "
    "gradients need not sum to y(x) - y(x')"
)


def positional_deprecated(*names: str) -> Callable[[_Init], _Init]:
    """Let an ``__init__`` still take positionally the keywords ``names`` it once took so.

    ``model`` and ``layer`` are a method's only positional parameters. A call that passes
    more positionally gets them as the keywords ``names``, in order, and a
    DeprecationWarning naming those keywords, attributed to the line of the call
    (:func:`~rsigradcam.core.checks.caller_stacklevel`).

    Example:
        >>> GradCAM(model, "head", "softmax")  # doctest: +SKIP
        DeprecationWarning: GradCAM: passing output positionally is deprecated; pass
        output= as a keyword (only model and layer are positional).
    """

    def decorate(init: _Init) -> _Init:
        @functools.wraps(init)
        def init_taking_positions(self: Any, *args: Any, **kwargs: Any) -> None:
            if len(args) > 2:
                cls, extra = type(self).__name__, args[2:]
                if len(extra) > len(names):
                    raise TypeError(
                        f"{cls}() takes model and layer positionally (and, deprecated, "
                        f"{', '.join(names) or 'nothing else'}); got {len(args)} positional "
                        "arguments."
                    )
                given = names[: len(extra)]
                for name, value in zip(given, extra, strict=True):
                    if name in kwargs:
                        raise TypeError(f"{cls}() got multiple values for argument {name!r}.")
                    kwargs[name] = value
                keywords = ", ".join(f"{name}=" for name in given)
                warnings.warn(
                    f"{cls}: passing {', '.join(given)} positionally is deprecated; pass "
                    f"{keywords} as {'a keyword' if len(given) == 1 else 'keywords'} (only "
                    "model and layer are positional).",
                    DeprecationWarning,
                    stacklevel=caller_stacklevel(),
                )
                args = args[:2]
            init(self, *args, **kwargs)

        return cast(_Init, init_taking_positions)

    return decorate


def is_layer_list(layer: LayerSpec) -> TypeGuard[LayerList]:
    """Whether ``layer`` is a list (or tuple) of layers rather than one."""
    return isinstance(layer, Sequence) and not isinstance(layer, str)


class PathPass(NamedTuple):
    """What one path pass leaves for the reduction: the accumulated sums and the scores."""

    #: The explained layers' names, in the capture's order.
    layers: list[str]
    #: The evaluator, holding y(x), y(x'), A(x) and A(x') per image.
    evaluator: PathEvaluator
    #: The accumulated tensors by layer, the partition and the evaluations per image.
    result: PathResult
    #: The inputs' spatial size S: (L,), (H, W) or (D, H, W).
    size: tuple[int, ...]
    #: J, the baselines per image (rows ``n * J + j``).
    n_baselines: int
    #: The layers the score can bypass (empty where the cut was not looked for).
    bypassed: frozenset[str] = frozenset()


class BaseCAM(Generic[ResultT]):
    """Template of every CAM method; on its own it evaluates the input point only.

    A call captures the layers (:mod:`rsigradcam.core.capture`), evaluates rows of
    (image, t) in chunks (:mod:`rsigradcam.core.evaluator`), streams activations and
    gradients into :meth:`_accumulator`'s accumulator, then reduces: attributions ->
    weights -> layer map -> heatmap. Here the one point is t = 1 and the accumulator keeps
    the gradient at the input, whose spatial mean weights the channels (Grad-CAM's map).

    Args:
        model: Any model on ``images (N, C, *S)``, S with 1, 2 or 3 spatial dimensions:
            signals (N, C, L), images (N, C, H, W), volumes and video (N, C, D, H, W); a
            classifier returning (N, classes) scores for class targets, any output for a
            target that reads it. Layer maps are (N, *s) at the layer's resolution,
            heatmaps (N, *S) at the input's (linear, bilinear or trilinear upsampling).
        layer: A module name such as ``"blocks.10"``, the module itself, ``"auto"`` (the
            last layer whose output is a spatial map (N, K, *s) with as many spatial
            dimensions as the input), or a list of these. With a list the call
            returns ``dict[str, Explanation]`` computed from one set of forward passes
            (:data:`ResultT`). ``model`` and ``layer`` are the only positional parameters.
        output: How a class index is scored: ``"softmax"`` (the class probability),
            ``"logits"`` (the logit) or ``"sigmoid"`` (the sigmoid of the logit, for
            multi-label classifiers).
        batch_size: Points (rows) per forward/backward chunk; ``None`` chooses it from
            ``memory_budget_mb``.
        dtype: Run the computation in this floating dtype (e.g. ``torch.float64``). The
            model is then copied and cast; the user's model is not changed.
        memory_budget_mb: Memory one chunk may use when ``batch_size=None``; default a
            quarter of the free RAM (or GPU memory).
        reshape_transform: For layers with (N, tokens, D) outputs (vision transformers):
            ``"tokens"`` drops the class and register tokens and lays the patches on their
            square grid; or :class:`~rsigradcam.core.reshape.TokenGrid` / any callable
            ``(N, T, D) -> (N, D, h, w)`` that only selects and rearranges elements.
        speed: How the model runs (:class:`~rsigradcam.core.inference.SpeedOptions`):
            ``"auto"`` (default) runs the path methods on a private float32 copy of any
            model with BatchNorms folded, channels-last and CPU tuning, checked against
            the model's own output (the model as given where the check fails; the
            Explanation's ``model_run`` says which), and the one-point methods on the
            model as given; ``"off"`` always runs the model as given;
            ``SpeedOptions(compile=True)`` also compiles the copy (its first call's
            seconds in :attr:`compile_seconds`); ``SpeedOptions(autocast=torch.bfloat16)``
            runs under CUDA autocast (maps then differ by that precision). The others
            move maps by float rounding only. The copy obeys ``memory_budget_mb``.
        **deprecated: ``fold_batchnorm``, ``channels_last``, ``compile`` and ``autocast``
            as keywords (deprecated): use ``speed=SpeedOptions(...)``.
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
    #: Whether ``sum(attributions) = y(x) - y(x')`` holds in the limit.
    has_completeness: ClassVar[bool] = False
    #: The authors' variants the method takes as keyword options (``grad_relu``, ``guided``).
    variants: ClassVar[tuple[str, ...]] = ()

    @overload
    def __init__(
        self: BaseCAM[Explanation], model: nn.Module, layer: OneLayer = "auto", *,
        output: Output = "softmax", **options: Unpack[CamOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: BaseCAM[dict[str, Explanation]], model: nn.Module, layer: LayerList, *,
        output: Output = "softmax", **options: Unpack[CamOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: BaseCAM[Any], model: nn.Module, layer: LayerSpec, *,
        output: Output = "softmax", **options: Unpack[CamOptions],
    ) -> None: ...
    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = "auto",
        *,
        output: Output = "softmax",
        batch_size: int | None = None,
        dtype: torch.dtype | None = None,
        memory_budget_mb: float | None = None,
        reshape_transform: ReshapeSpec = None,
        speed: SpeedSpec = "auto",
        **deprecated: Unpack[DeprecatedSpeed],
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
        self._many = is_layer_list(layer)
        self.output = check_output(output)
        self.reshape_transform: ReshapeFn | None = resolve_reshape(reshape_transform)
        self.batch_size = batch_size
        self.dtype = dtype
        self.memory_budget_mb = memory_budget_mb
        #: How the model runs (:class:`~rsigradcam.core.inference.SpeedOptions`).
        self.speed = _speed_with_deprecated(
            check_speed(speed, one_point=not self.takes_steps), dict(deprecated)
        )
        #: Seconds the last call spent compiling, up to its path pass (0.0 once compiled).
        self.compile_seconds = 0.0
        self._layer_names = self._check_layer_spec(layer)
        self._probe_cache: dict[tuple[Any, ...], list[ModuleOutput]] = {}

    # ------------------------------------------------------------------ template hooks
    def _plan(self, x: Tensor) -> PathPlan:
        """The points to evaluate: here each image's input alone (t = 1)."""
        return PathPlan(StraightLinePath(x, x), torch.ones(1, dtype=torch.float64))

    def _accumulator(self, n_images: int, partition: Tensor) -> PathAccumulator:
        """A fresh accumulator for the activations and gradients at ``partition``'s points."""
        return GradientAtInput(n_images)

    def _rows(self, n_images: int, partition: Tensor) -> tuple[Tensor, Tensor]:
        """The (image index, t) rows in the order the accumulator expects them."""
        return path_rows(n_images, partition)

    def _attributions(
        self, accumulated: Tensor, activation: Tensor, baseline_activation: Tensor | None
    ) -> Tensor:
        """Per-element attributions (N, K, *s) from the accumulated tensor."""
        return accumulated

    def _weights(self, attributions: Tensor) -> Tensor:
        """Channel weights (N, K); by default the mean of the attributions over all of *s."""
        return attributions.mean(dim=spatial_dims(attributions))

    def _layer_map(self, weights: Tensor, attributions: Tensor, activation: Tensor) -> Tensor:
        """The (N, *s) layer map; by default ``ReLU(sum_k weights_k A^k(x))``.

        Methods whose map is not a channel-weighted sum of A(x) (element-wise weights,
        maps summed along the path) override this.
        """
        return cam_reduction(weights, activation)

    # ------------------------------------------------------------------ public call
    def __call__(self, images: Tensor, targets: TargetSpec = None) -> ResultT:
        """Explain ``images`` for ``targets``.

        Args:
            images: (N, C, *S) floating-point inputs (signals, images, volumes or video, see
                the class), preprocessed for the model and on the model's device.
            targets: ``None`` (each image's top-1 class), an int, one int per image, a
                ready-made target (:class:`~rsigradcam.core.targets.ClassTarget`,
                ``SegmentationTarget``, ``BoxTarget``, ``RegressionTarget``), or a callable
                ``fn(output) -> scores`` on the model's raw output for a chunk of path
                points (a tensor of any shape, a dict, a ``ModelOutput``, a tuple, a list of
                dicts), one score per row.

        Returns:
            An :class:`Explanation`, or ``dict[str, Explanation]`` by layer name when
            ``layer`` is a list (:data:`ResultT`).
        """
        found = self._path_pass(
            images, targets, self._accumulator, find_cuts=self.completeness_applies
        )
        explanations = self._explain_layers(found)
        warn_zero_maps(self.method_name, {n: e.layer_map for n, e in explanations.items()})
        return self._shaped(explanations)

    def _shaped(self, explanations: dict[str, Explanation]) -> ResultT:
        """What a call returns: the dict for a list of layers, else its one explanation."""
        if self._many:
            return cast(ResultT, explanations)
        return cast(ResultT, next(iter(explanations.values())))

    def _path_pass(
        self, images: Tensor, targets: TargetSpec,
        accumulator: Callable[[int, Tensor], PathAccumulator], *, find_cuts: bool = False,
    ) -> PathPass:
        """Evaluate each image's path points once, streaming into ``accumulator``'s sums.

        ``find_cuts``: also find the layers the score can bypass (one more forward pass at
        one point, :meth:`~rsigradcam.core.evaluator.PathEvaluator.find_cuts`), for the
        methods whose completeness is reported; a method that explains the input needs none.
        """
        start, images = time.perf_counter(), check_images(images, self.model)
        model, prepared = self._run_model(images)
        x = images.to(prepared.dtype)
        n_images = x.shape[0]
        target_values = resolve_targets(targets, n_images, x.device)
        score_fn: ScoreFn | None = (
            targets if callable(targets) and not isinstance(targets, Tensor) else None
        )
        plan = self._plan(x)
        n_baselines = plan.n_baselines
        if n_baselines > 1 and target_values is not None:
            target_values = target_values.repeat_interleave(n_baselines)
        with torch.inference_mode(False), torch.enable_grad():
            if prepared.folded and "auto" in self._layer_names:
                with LayerCapture(model) as capture:
                    names = list(self._resolve_layers(capture, model, x))
                if prepared.folded & set(names):  # keep the explained layer's own pair
                    model, prepared = self._run_model(images, names)
        with (
            torch.inference_mode(False), torch.enable_grad(), run_settings(prepared, x.device),
            LayerCapture(model, grad_from_layer=True) as capture,
        ):
            layers = self._resolve_layers(capture, model, x)
            capture.attach(layers, self.reshape_transform)
            n_rows = n_images * n_baselines * plan.partition.numel()
            chunk = self._chunk_size(capture, x, list(layers), n_rows)
            evaluator = PathEvaluator(
                capture,
                plan.path,
                list(layers),
                target_values,
                score_fn,
                lambda out, tgt: class_score(out, tgt, self.output),
                chunk,
                plan.from_baseline,
                channels_last=prepared.channels_last,
                autocast=prepared.autocast,
                model_run=prepared.run,
                rows_per_image=n_baselines,
                cuts_key=None if score_fn is not None else (
                    tuple(layers), tuple(x.shape[1:]), x.dtype, x.device, self.output,
                    self.reshape_transform,
                ),
            )
            sizes = {min(chunk, n_rows), n_rows % chunk or chunk}
            compiled = warm_up(prepared, evaluator.warm_up, x[:1], sizes) > 0
            self.compile_seconds = time.perf_counter() - start if compiled else 0.0
            result = self._run_path(evaluator, plan.partition, accumulator)
            bypassed = frozenset(
                name
                for name, cut in (
                    evaluator.find_cuts() if find_cuts and not self.explains_input else {}
                ).items()
                if not cut
            )
        return PathPass(
            list(layers), evaluator, result, tuple(x.shape[2:]), n_baselines, bypassed
        )

    # ------------------------------------------------------------------ layers and model
    def _check_layer_spec(self, layer: LayerSpec) -> list[str | nn.Module]:
        items: list[Any] = list(layer) if is_layer_list(layer) else [layer]
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

    def _run_model(
        self, images: Tensor, keep: Sequence[str] = ()
    ) -> tuple[nn.Module, PreparedModel]:
        """The model to run (the user's, or a private copy), keeping the layers' own pairs."""
        named = [i if isinstance(i, str) else resolve_layer(self.model, i)[0]
                 for i in self._layer_names]
        budget = (
            int(self.memory_budget_mb * 2**20) if self.memory_budget_mb is not None
            else default_budget_bytes(images.device)
        )
        prepared = prepare_model(
            self.model, images, self.speed, self.dtype, [*named, *keep], budget
        )
        return prepared.module, prepared

    def _resolve_layers(
        self, capture: LayerCapture, model: nn.Module, x: Tensor
    ) -> dict[str, nn.Module]:
        layers: dict[str, nn.Module] = {}
        for item in self._layer_names:
            if isinstance(item, str) and item == "auto":
                name = self._auto_layer(self._probe(capture, x), x.dim() - 2)
            else:
                name, _ = resolve_layer(self.model, item)
            layers[name] = model.get_submodule(name)
        return layers

    def _probe(self, capture: LayerCapture, x: Tensor) -> list[ModuleOutput]:
        key = (tuple(x.shape[1:]), x.dtype, x.device, id(capture.model))
        if key not in self._probe_cache:  # one shape at a time
            self._probe_cache.clear()
            self._probe_cache[key] = capture.probe(x[:1])
        return self._probe_cache[key]

    def _auto_layer(self, records: list[ModuleOutput], dims: int = 2) -> str:
        """The last module whose output is a spatial map with the input's ``dims``."""
        if self.reshape_transform is not None:
            raise ValueError(
                "layer='auto' cannot choose a token layer: after the last attention block "
                "the patch tokens no longer reach a class-token head, so late token layers "
                f"give empty maps. Name the layer, e.g. {self._norm_example(records)}."
            )
        spatial = [r.name for r in records if is_spatial_map(r.shape, dims)]
        if not spatial:
            tokens = (
                f"; for a vision transformer, {self._norm_example(records)} with "
                "reshape_transform='tokens'"
                if token_layer_example(self.model, records)
                else ""
            )
            raise ValueError(
                f"layer='auto' found no layer with a spatial {2 + dims}-D output (N, K, *s) "
                f"of the input's {dims} spatial dimension{'s' * (dims != 1)}; pass layer= a "
                f"convolutional module or its name{tokens}."
            )
        return spatial[-1]

    def _norm_example(self, records: list[ModuleOutput]) -> str:
        """The usual ViT layer in this model's own naming, for the layer errors."""
        example = token_layer_example(self.model, records)
        if example is None:
            return "the last block's first norm (a block's first LayerNorm)"
        return f"the last block's first norm ({example!r} here)"

    def _chunk_size(
        self, capture: LayerCapture, x: Tensor, layers: list[str], total_points: int
    ) -> int:
        if self.batch_size is not None:
            return self.batch_size
        records = self._probe(capture, x)
        return auto_chunk_size(records, layers, x, self.memory_budget_mb, total_points)

    # ------------------------------------------------------------------ the path pass
    def _run_path(
        self, evaluator: PathEvaluator, partition: Tensor,
        accumulator: Callable[[int, Tensor], PathAccumulator],
    ) -> PathResult:
        """Evaluate every image at every point of ``partition``, streaming into accumulators."""
        n_images = evaluator.n_images
        accumulators = {name: accumulator(n_images, partition) for name in evaluator.layers}
        n, t = self._rows(n_images, partition)
        for rows, _, acts, grads, _ in evaluator(n, t):
            for name in evaluator.layers:
                accumulators[name].update(rows, acts[name], grads[name])
        return PathResult(
            {name: acc.result() for name, acc in accumulators.items()},
            partition,
            partition.numel(),
        )

    # ------------------------------------------------------------------ reduction
    def _explain_layers(self, found: PathPass) -> dict[str, Explanation]:
        """The explanations at the pass's layers, by layer."""
        evaluator = found.evaluator
        return {
            name: self._explain(
                name,
                found,
                self._attributions(
                    found.result.accumulated[name],
                    evaluator.activation[name],
                    evaluator.baseline_activation.get(name),
                ),
                self._completeness_note(name, found),
            )
            for name in found.layers
        }

    @property
    def completeness_applies(self) -> bool:
        """Whether ``completeness_error`` may be computed: ``has_completeness`` here.

        Where it applies, it is still NaN at a layer the score can bypass
        (:data:`BYPASSED_LAYER_REASON`).
        """
        return self.has_completeness

    def _completeness_note(self, name: str, found: PathPass) -> str:
        """Why ``completeness_error`` is NaN at layer ``name`` ("" where it is computed).

        Also "" for a method without a completeness property (``has_completeness``),
        whose error is always NaN.
        """
        if self.completeness_applies and name in found.bypassed:
            return BYPASSED_LAYER_REASON
        return ""

    def _explain(
        self, name: str, found: PathPass, attributions: Tensor, note: str
    ) -> Explanation:
        """The explanation at layer ``name`` from its (N * J, ...) ``attributions``.

        ``note``: why ``completeness_error`` is NaN (:meth:`_completeness_note`); where it
        is "", the error is computed if the method has a completeness property.
        """
        evaluator, result, n_baselines = found.evaluator, found.result, found.n_baselines
        activation = evaluator.activation[name]
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
        heatmap = normalize_heatmap(layer_map, found.size)
        completeness = (
            completeness_error(attributions, scores, baseline_scores)
            if self.has_completeness and not note
            else torch.full_like(scores, float("nan"))
        )
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
            model_run=evaluator.model_run,
            completeness_note=note,
        )


class PathCAM(BaseCAM[ResultT], ABC):
    """Base of the methods that integrate from a baseline x' (t = 0) to the input x (t = 1).

    It owns the path options, for every path method: the points (``steps`` or
    ``partition``), where the path starts (``baseline``, ``normalize``, ``n_samples``) or
    the whole path (``path``). A subclass gives :meth:`_accumulator` and names only its
    own parameters, taking these as ``**options`` (:class:`PathOptions`).

    Args:
        model: See :class:`BaseCAM`.
        layer: See :class:`BaseCAM`.
        steps: m, the number of intervals; m + 1 path points ``t_i = i / m``. ``"auto"`` is
            left to a method that refines its own partition. A keyword, as every parameter
            after ``layer`` (positionally it is deprecated).
        output: See :class:`BaseCAM`.
        baseline: Where the path starts: ``"black"`` (a black image after ``normalize``),
            ``"zeros"``, ``"blur"``, ``"noise"``, ``"uniform"``, ``"auto"``, a tensor
            (C, *S) or (N, C, *S), a :class:`~rsigradcam.baselines.Baseline` or callable
            ``fn(images) -> baselines``, or a list of these (attributions averaged); see
            :mod:`rsigradcam.baselines`.
        normalize: ``(mean, std)`` the images were normalised with, one value per channel,
            used by the ``"black"`` baseline; ``None`` for images in [0, 1]. The default
            is ImageNet's (3 channels): for other inputs give theirs, ``None``, or another
            baseline such as ``"zeros"``.
        partition: Explicit path parameters ``0 = t_0 < t_1 < ... < t_m = 1`` (a 1-D
            tensor or sequence); overrides ``steps``.
        path: The integration path instead of the straight line from ``baseline``: a
            tensor of points from the baseline to the input, (P, C, *S) for one image or
            (N, P, C, *S); or a callable ``path(images, t) -> points`` for t in [0, 1]
            (see :mod:`rsigradcam.core.path`).
        n_samples: Average over this many draws of a random baseline (e.g. ``"noise"``).
        **options: ``batch_size``, ``dtype``, ``memory_budget_mb``, ``reshape_transform``,
            ``speed``; see :class:`BaseCAM`.
    """

    takes_steps: ClassVar[bool] = True
    #: Whether ``steps="auto"`` (a partition refined by the method) is available.
    adaptive_steps: ClassVar[bool] = False

    @positional_deprecated("steps")
    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = "auto",
        *,
        steps: int | Literal["auto"] = 50,
        output: Output = "softmax",
        baseline: BaselineSpec = "black",
        normalize: Normalize = IMAGENET_NORMALIZE,
        partition: Tensor | Sequence[float] | None = None,
        path: PathSpec = None,
        n_samples: int = 1,
        **options: Unpack[CamOptions],
    ) -> None:
        super().__init__(model, layer, output=output, **options)
        self.normalize = check_normalize(normalize)
        self.n_samples = n_samples
        self._baselines = check_baseline_spec(baseline, n_samples)
        #: The ``"auto"`` baselines' one fitter (it fits on first use, per input size).
        self._auto_baseline = (
            AutoBaseline(model) if any(_is_auto(spec) for spec in self._baselines) else None
        )
        self.path = self._check_path_spec(path)
        if isinstance(self.path, Tensor) and (steps == "auto" or partition is not None):
            raise ValueError(
                "a path given as a tensor fixes its points, so steps='auto' and partition= "
                "do not apply; pass a callable path(images, t) to choose the points."
            )
        if steps == "auto" and not self.adaptive_steps:
            raise ValueError(
                f"steps='auto' is available for RSIGradCAM only; {type(self).__name__} takes "
                "an int number of steps (or partition=)."
            )
        if steps != "auto":
            uniform_partition(steps)  # validates steps
        self.steps = steps
        self.partition = None if partition is None else check_partition(partition)

    @abstractmethod
    def _accumulator(self, n_images: int, partition: Tensor) -> PathAccumulator:
        """A fresh accumulator for the activations and gradients at ``partition``'s points."""

    def _partition(self) -> Tensor:
        """The increasing float64 path parameters t in [0, 1] to evaluate."""
        if self.partition is not None:
            return self.partition
        assert isinstance(self.steps, int)
        return uniform_partition(self.steps)

    def _plan(self, x: Tensor) -> PathPlan:
        """The path over every (image, baseline) row, its partition and J baselines.

        With J > 1 baselines (a list, or ``n_samples``), row ``n * J + j`` is image n
        integrated from its baseline j.
        """
        if isinstance(self.path, Tensor):
            tensor_path = TensorPath(x, self.path)  # it casts to x's dtype
            return PathPlan(tensor_path, tensor_path.partition(), from_baseline=True)
        if self.path is not None:
            return PathPlan(CallablePath(x, self.path), self._partition(), from_baseline=True)
        baselines = baseline_rows(self._baseline_specs(), x, self.normalize, self.n_samples)
        n_baselines = baselines.shape[0] // x.shape[0]
        rows = x.repeat_interleave(n_baselines, dim=0) if n_baselines > 1 else x
        return PathPlan(
            StraightLinePath(rows, baselines), self._partition(), n_baselines, from_baseline=True
        )

    def _check_path_spec(self, path: PathSpec) -> PathSpec:
        if path is None:
            return None
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
        auto = self._auto_baseline
        return [auto if auto is not None and _is_auto(spec) else spec for spec in self._baselines]


def _is_auto(spec: SingleSpec) -> bool:
    return isinstance(spec, str) and spec == "auto"


_SPEED_KEYWORDS = ("fold_batchnorm", "channels_last", "compile", "autocast")


def _speed_with_deprecated(speed: SpeedOptions, given: dict[str, Any]) -> SpeedOptions:
    """``speed`` with the deprecated speed keywords applied (each warns once per call)."""
    unknown = sorted(set(given) - set(_SPEED_KEYWORDS))
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r}.")
    if not given:
        return speed
    warnings.warn(
        f"{', '.join(sorted(given))}=... as keywords are deprecated; pass "
        f"speed=SpeedOptions({', '.join(f'{k}=...' for k in sorted(given))}) instead.",
        DeprecationWarning,
        stacklevel=caller_stacklevel(),
    )
    if given.get("fold_batchnorm") is None:
        given.pop("fold_batchnorm", None)
    return check_speed(replace(speed, **given))
