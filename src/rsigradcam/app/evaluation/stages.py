"""The stages of an evaluation: the method runner, then each metric over every method.

:class:`MethodRunner` explains the images with one method at all of its layers and keeps
each distinct computation, so that the metrics share the maps. :class:`RunState` holds a
run's inputs and what its stages fill in; each stage (:func:`explain_all`,
:func:`faithfulness`, :func:`localisation`, :func:`sanity`, :func:`stability`) reads the
images, asks the runners for explanations, scores them with :mod:`rsigradcam.metrics` and
stores one value per unit (image or grid cell) of each metric, and its details.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from rsigradcam import metrics
from rsigradcam.app.evaluation.options import (
    CPU_BATCH,
    GPU_BATCH,
    GRID_THRESHOLDS,
    RANDOM,
    RANDOM_BLOCK,
    EvaluationOptions,
)
from rsigradcam.app.evaluation.results import (
    Curves,
    CurveSet,
    Details,
    DtypeRecord,
    MetricValues,
    NoiseRecord,
    SanityDetails,
    SpreadRecord,
    StabilityDetails,
    Units,
)
from rsigradcam.app.loading.hashing import model_sha256
from rsigradcam.app.runs.parameters import FIXED_BUDGET_MB
from rsigradcam.core.capture import model_dtype
from rsigradcam.core.inference import SpeedOptions, prepare_model
from rsigradcam.core.targets import Output
from rsigradcam.explanation import Explanation
from rsigradcam.methods import RSIGradCAM, create_cam, method_class, method_layers
from rsigradcam.methods.integrated_gradients import INPUT_LAYER
from rsigradcam.metrics.sanity import ORIGINAL
from rsigradcam.metrics.stability import Explain, MakeExplainer, saturation_split
from rsigradcam.serialization import decode, encode

__all__ = [
    "GridPlan",
    "MethodRunner",
    "RunState",
    "Stage",
    "explain_all",
    "faithfulness",
    "localisation",
    "plan_grids",
    "sanity",
    "sanity_stages",
    "share_passes",
    "stability",
]


def _digest(tensors: Iterable[Tensor]) -> str:
    """A hash of the tensors' shapes, dtypes and bytes."""
    h = hashlib.blake2b(digest_size=16)
    for tensor in tensors:
        flat = tensor.detach().to("cpu").contiguous().view(-1)
        h.update(f"{flat.dtype}{tuple(tensor.shape)};".encode())
        h.update(flat.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class MethodRunner:
    """One method at all of its layers; each distinct computation runs once.

    A call explains ``images`` for ``targets`` at every layer together (one set of path
    passes) and keeps the result under a hash of the model's parameters, the images, the
    targets, the steps and the dtype, so that the metrics, which ask for one layer at a
    time, share it.
    """

    def __init__(
        self,
        name: str,
        layers: Sequence[str],
        steps: int,
        output: Output,
        notes: list[str],
        options: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        #: Further options of the method (its variants, the path methods' ``normalize``).
        self.options = dict(options or {})
        self.layers = method_layers(name, layers)
        self.has_steps = method_class(name).takes_steps
        self.steps, self.output, self.notes = steps, output, notes
        #: The stage asking for explanations, named in the notes.
        self.stage = ""
        #: The runners whose results one set of path passes gives with this one's (the
        #: same method and output, other variants; see :func:`share_passes`), or none.
        self.shared: list[MethodRunner] = []
        self._cache: dict[tuple[Any, ...], dict[str, Explanation]] = {}
        self._pinned: set[tuple[Any, ...]] = set()

    def pin(self) -> None:
        """Keep the results computed so far through :meth:`clear`."""
        self._pinned = set(self._cache)

    def clear(self) -> None:
        """Forget the results that are not pinned."""
        self._cache = {k: v for k, v in self._cache.items() if k in self._pinned}

    def __call__(
        self,
        model: nn.Module,
        images: Tensor,
        targets: Tensor,
        steps: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> dict[str, Explanation]:
        """The explanations of ``images`` at every layer, by layer name."""
        m = (steps or self.steps) if self.has_steps else None
        run_dtype = dtype or model_dtype(model)
        key = (model_sha256(model), _digest([images, targets]), m, str(run_dtype))
        if key not in self._cache:
            group = [self, *(r for r in self.shared if key not in r._cache)]
            cam = create_cam(
                self.name,
                model,
                self.layers,
                steps=m or self.steps,
                output=self.output,
                memory_budget_mb=FIXED_BUDGET_MB,
                dtype=dtype,
                **self.options,
            )
            with _recorded(self.notes, f"{self.stage}, {self.name}"):
                if len(group) > 1:
                    assert isinstance(cam, RSIGradCAM)  # share_passes groups only these
                    found = cam.explain_variants(
                        images, targets, [r.options.get("variants", {}) for r in group]
                    )
                else:
                    found = [cam(images, targets)]
            for runner, by_layer in zip(group, found, strict=True):
                runner._cache[key] = by_layer
        return self._cache[key]

    def maker(self, model: nn.Module, layer: str) -> MakeExplainer:
        """``make(steps, dtype) -> explain(images, targets) -> heatmaps`` at ``layer``."""

        def make(steps: int, dtype: torch.dtype) -> Explain:
            def explain(images: Tensor, targets: Tensor) -> Tensor:
                return self(model, images, targets, steps, dtype)[layer].heatmap

            return explain

        return make


def share_passes(runners: Iterable[MethodRunner]) -> None:
    """Let the RSI-Grad-CAM runners of one output share their path passes.

    Runners that differ only in the authors' variants compute the same activations and
    gradients, so the first one asked runs :meth:`RSIGradCAM.explain_variants` for all of
    them (the same maps, bit for bit, for one set of passes instead of one per variant).
    """
    groups: dict[tuple[Any, ...], list[MethodRunner]] = {}
    for runner in runners:
        if method_class(runner.name) is RSIGradCAM:
            rest = sorted((k, repr(v)) for k, v in runner.options.items() if k != "variants")
            key = (runner.output, runner.steps, tuple(runner.layers), tuple(rest))
            groups.setdefault(key, []).append(runner)
    for group in groups.values():
        for runner in group:
            runner.shared = [r for r in group if r is not runner]


@contextmanager
def _recorded(notes: list[str], where: str) -> Iterator[None]:
    """Keep the methods' RuntimeWarnings (e.g. an all-zero map) as notes; pass others on."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        if issubclass(w.category, RuntimeWarning):
            line = f"{where}: {w.message}"
            if line not in notes:
                notes.append(line)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


@dataclass
class RunState:
    """One evaluation's inputs (or one shard's), and the results its stages fill in.

    Attributes:
        runners: The arms' method runners, by arm key.
        saturated: Per image, whether its top-1 probability is saturated.
        offset: The run's index of the first image (a shard's images are a slice).
        shard: The shard's number (it varies the random-order maps' seed).
        probability: Per image, the explained class's probability (empty: not known).
        correct: Per image, whether the top-1 class is the labelled one (empty: no labels).
        metrics: One value per unit, by metric, method and layer.
        units: What each metric's values are about.
        details: The stages' other findings.
    """

    options: EvaluationOptions
    model: nn.Module
    images: Tensor
    targets: Tensor
    names: list[str]
    saturated: list[bool]
    runners: dict[str, MethodRunner]
    progress: bool
    notes: list[str]
    offset: int = 0
    shard: int = 0
    probability: list[float] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    metrics: MetricValues = field(default_factory=dict)
    units: dict[str, Units] = field(default_factory=dict)
    details: Details = field(default_factory=Details)

    def explained(self, method: str) -> dict[str, Explanation]:
        """The method's explanations of the images, by layer (computed once)."""
        return self.runners[method](self.model, self.images, self.targets)

    def pairs(self, methods: Iterable[str] | None = None) -> Iterator[tuple[str, str]]:
        """(arm, layer) for the arms of the selected methods (all by default), in order."""
        chosen = None if methods is None else set(methods)
        for name, runner in self.runners.items():
            if chosen is None or runner.name in chosen:
                for layer in runner.layers:
                    yield name, layer

    def put(self, metric: str, method: str, layer: str, values: Tensor) -> None:
        """Store one value per unit of ``metric`` for ``(method, layer)``."""
        by_layer = self.metrics.setdefault(metric, {}).setdefault(method, {})
        by_layer[layer] = values.detach().to("cpu", torch.float64).flatten().tolist()

    def image_units(self, metric: str, chosen: Sequence[int] | None = None) -> None:
        """Declare that ``metric``'s units are the images (those of ``chosen``)."""
        indices = range(len(self.names)) if chosen is None else chosen
        self.units[metric] = Units(
            "image", [self.names[i] for i in indices], [self.saturated[i] for i in indices],
            [self.probability[i] for i in indices] if self.probability else [],
            [self.correct[i] for i in indices] if self.correct else [],
        )

    def first(self, count: int | None) -> list[int]:
        """The indices of this run's images among the run's first ``count`` (all: ``None``)."""
        stop = len(self.names) if count is None else max(0, count - self.offset)
        return list(range(min(stop, len(self.names))))

    @property
    def batch(self) -> int:
        """Images per forward pass of the metrics."""
        return CPU_BATCH if self.images.device.type == "cpu" else GPU_BATCH

    def forget(self) -> None:
        """Drop every kept explanation but the images' own."""
        for runner in self.runners.values():
            runner.clear()


#: A stage: it reads the run's inputs and fills in its results.
Stage = Callable[[RunState], None]


def explain_all(run: RunState) -> None:
    """Explain the images with every method, once; the metrics reuse these maps."""
    for name, runner in run.runners.items():
        run.explained(name)
        runner.pin()


def faithfulness(run: RunState) -> None:
    """Deletion, insertion (and the random-order baseline), Average Drop and IC.

    The forward passes run on the model's default inference copy (for the embedded model on
    a CPU: BatchNorms folded, channels-last): 74 s instead of 120 s for this stage on 16
    photos, with areas within 1e-6 of the eager model's.
    """
    o = run.options
    model = prepare_model(run.model, run.images, SpeedOptions()).module
    h, w = run.images.shape[2:]
    step = math.ceil(h * w / o.curve_points)
    fractions: dict[str, list[float]] = {}
    curves: dict[str, dict[str, dict[str, list[list[float]]]]] = {"deletion": {}, "insertion": {}}
    shuffled = metrics.random_heatmaps(run.images, seed=o.seed + run.shard, block=RANDOM_BLOCK)
    sources = [(RANDOM, INPUT_LAYER, shuffled)]
    sources += [(m, layer, run.explained(m)[layer].heatmap) for m, layer in run.pairs()]
    for method, layer, maps in sources:
        for kind, curve in (("deletion", metrics.deletion), ("insertion", metrics.insertion)):
            found = curve(model, run.images, maps, run.targets, step=step,
                          normalize=o.input_format.normalize, batch_size=run.batch,
                          progress=run.progress)
            run.put(f"{kind}_auc", method, layer, found.auc)
            fractions[kind] = found.fractions.tolist()
            curves[kind].setdefault(method, {})[layer] = found.curves.tolist()
        if method != RANDOM:
            masked = metrics.average_drop_increase(
                model, run.images, maps, run.targets, normalize=o.input_format.normalize,
                batch_size=run.batch, progress=run.progress,
            )
            run.put("average_drop", method, layer, masked.drop)
            run.put("increase_in_confidence", method, layer, masked.increase.double() * 100)
    for metric in ("deletion_auc", "insertion_auc", "average_drop", "increase_in_confidence"):
        run.image_units(metric)
    run.details.curves = Curves(
        step,
        CurveSet(fractions["deletion"], curves["deletion"]),
        CurveSet(fractions["insertion"], curves["insertion"]),
    )


@dataclass(frozen=True)
class GridPlan:
    """The GridPG grids of a run: the images of each grid's cells, and the threshold.

    Attributes:
        threshold: The top-1 probability an image needed (the highest of
            :data:`GRID_THRESHOLDS` that gives ``min_grids`` grids, else the one giving most).
        picked: For each grid, the run's indices of its four images, in reading order.
        classes: Per image of the run, its top-1 class (the class its cell explains).
        confidences: Per image of the run, its top-1 probability.
    """

    threshold: float
    picked: list[list[int]]
    classes: Tensor
    confidences: Tensor

    def grids(self, images: Tensor, first: int = 0, stop: int | None = None) -> metrics.GridSet:
        """The grids ``first`` to ``stop``, tiled from ``images`` (all the run's images)."""
        return metrics.tile_grids(
            images, self.picked[first:stop], self.classes, self.confidences
        )


def plan_grids(
    options: EvaluationOptions, probabilities: Tensor, labels: Sequence[int | None]
) -> GridPlan | None:
    """Choose the grids: confident images (correct ones, where labelled) of four classes.

    Each of ``options.grid_rounds`` rounds groups the eligible images anew (seeds
    ``seed``, ``seed + 1``...), so an image is in at most that many grids. ``None``: fewer
    than four distinct classes are eligible at any threshold, or no grids are asked for.
    """
    if options.max_grids == 0:
        return None
    confidence, top1 = (v.cpu() for v in probabilities.max(dim=1))
    known = torch.tensor([label is not None for label in labels], dtype=torch.bool)
    label = torch.tensor([-1 if v is None else v for v in labels], dtype=torch.long)
    correct = ~known | (top1 == label)
    best: GridPlan | None = None
    for threshold in GRID_THRESHOLDS:
        eligible = (confidence >= threshold) & correct
        picked: list[list[int]] = []
        for round_ in range(options.grid_rounds):
            left = options.max_grids - len(picked)
            if left <= 0:
                break
            picked += metrics.group_cells(top1, eligible, left, options.seed + round_)
        if picked and (best is None or len(picked) > len(best.picked)):
            best = GridPlan(threshold, picked, top1, confidence.double())
        if len(picked) >= min(options.min_grids, options.max_grids):
            break
    return best


def localisation(run: RunState, grids: metrics.GridSet, ids: Sequence[str]) -> None:
    """The grid pointing game on ``grids``, whose cells are named ``ids``."""
    size = (int(grids.grids.shape[2]), int(grids.grids.shape[3]))
    for method, layer in run.pairs():
        runner = run.runners[method]

        def explain(x: Tensor, t: Tensor, runner: MethodRunner = runner, at: str = layer) -> Tensor:
            return metrics.attribution_map(runner(run.model, x, t)[at], size)

        found = metrics.gridpg(
            run.model, grids, explain, batch_size=4 * len(grids), progress=run.progress
        )
        run.put("gridpg", method, layer, found.scores)
    run.forget()
    confidences = grids.confidences.flatten()
    run.units["gridpg"] = Units(
        "cell", list(ids), saturation_split(confidences).saturated.tolist(),
        confidences.tolist(),
    )


def sanity_stages(model: nn.Module, count: int) -> list[str]:
    """``count`` parameterised layers evenly spaced from the output down (the first is kept).

    Example:
        >>> sanity_stages(nn.Sequential(*[nn.Linear(2, 2) for _ in range(5)]), 3)
        ['4', '2', '0']
    """
    names = metrics.parameterised_layers(model)
    if count >= len(names) or count == 1:
        return names[:count]
    picks = (round(i * (len(names) - 1) / (count - 1)) for i in range(count))
    return [names[i] for i in dict.fromkeys(picks)]


def sanity(run: RunState) -> None:
    """Cascading randomisation (checked at a few stages), on the first images."""
    o = run.options
    chosen = list(range(min(o.sanity_images, len(run.names))))
    stages = sanity_stages(run.model, o.sanity_stages)
    correlations: dict[str, dict[str, list[list[float]]]] = {}
    for method, layer in run.pairs():
        runner = run.runners[method]

        def explain(
            model: nn.Module, x: Tensor, t: Tensor, runner: MethodRunner = runner, at: str = layer
        ) -> Tensor:
            return runner(model, x, t)[at].heatmap

        found = metrics.randomization_sanity(
            run.model, run.images[chosen], explain, run.targets[chosen], seed=o.seed,
            layers=stages, batch_size=run.batch, progress=run.progress,
        )
        run.put("sanity_spearman", method, layer, found.correlations[1:].mean(dim=0))
        correlations.setdefault(method, {})[layer] = found.correlations.tolist()
    run.forget()
    run.image_units("sanity_spearman", chosen)
    run.details.sanity = SanityDetails(
        [ORIGINAL, *stages], [run.names[i] for i in chosen], correlations
    )


def stability(run: RunState) -> None:
    """float32 vs float64, max-sensitivity and m vs the reference m: Grad-CAM and RSI."""
    o = run.options
    chosen = run.first(o.steps_images)
    measured = run.first(o.stability_images)
    steps = sorted({*o.stability_steps, o.steps}) if o.stability_steps else []
    detail = StabilityDetails(
        steps, o.reference_steps, [run.names[i] for i in chosen], {}, {}, {}
    )
    if not measured:
        return
    images, targets = run.images[measured], run.targets[measured]
    for method, layer in run.pairs(("gradcam", "rsi")):
        make = run.runners[method].maker(run.model, layer)
        dtype = metrics.dtype_difference(
            run.model, images, make, targets, steps=o.steps, progress=run.progress
        )
        noise = metrics.max_sensitivity(
            run.model, images, make, targets, radius=o.noise_radius,
            n_samples=o.noise_samples, steps=o.steps, seed=o.seed, progress=run.progress,
        )
        run.put("dtype_max_abs", method, layer, dtype.max_abs)
        run.put("noise_sensitivity", method, layer, noise.sensitivity)
        detail.dtype.setdefault(method, {})[layer] = decode(DtypeRecord, encode(dtype))
        detail.noise.setdefault(method, {})[layer] = decode(NoiseRecord, encode(noise))
        if steps and chosen:
            spread = metrics.steps_spread(
                run.model, run.images[chosen], make, run.targets[chosen], steps=steps,
                reference=o.reference_steps, progress=run.progress,
            )
            run.put("steps_max_abs", method, layer, spread.max_abs[steps.index(o.steps)])
            detail.steps_spread.setdefault(method, {})[layer] = decode(SpreadRecord, encode(spread))
    run.forget()
    run.image_units("dtype_max_abs", measured)
    run.image_units("noise_sensitivity", measured)
    if steps and chosen:
        run.image_units("steps_max_abs", chosen)
    run.details.stability = detail

