"""``rsigradcam evaluate``: every method on the same images, scored by every metric.

Each method of :data:`rsigradcam.methods.METHODS` explains the images' top-1 classes at
the same layers (Integrated Gradients at the input), and :mod:`rsigradcam.metrics` scores
the maps: deletion and insertion (and the random-order baseline), Average Drop and
Increase in Confidence, the grid pointing game on 2 x 2 grids of the images, cascading
parameter randomisation on a few images, and, for Grad-CAM and RSI-Grad-CAM, numerical
stability (float32 against float64, m steps against m = 512, input noise).

Every mean comes with a 95 % percentile bootstrap interval. The paper's two claims,
RSI-Grad-CAM maps are *better focused* than Grad-CAM's and *numerically more stable*, get a
verdict per layer from paired bootstrap intervals of RSI-Grad-CAM minus Grad-CAM on the
same images (or grid cells): ``holds`` when the interval lies on the better side of 0,
``does not hold`` when it lies on the worse side, ``inconclusive`` when it contains 0.

A run is reproducible: the same options and seed give the same numbers (path chunks come
from a fixed memory budget, every random draw from the seed).

Example:
    >>> from rsigradcam.app.evaluate import EvaluationOptions, evaluate, write_evaluation
    >>> found = evaluate(EvaluationOptions(max_images=4, sanity=False))  # doctest: +SKIP
    >>> write_evaluation(found, "rsigradcam-evaluation")                 # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import math
import platform
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from rsigradcam import metrics
from rsigradcam.app.dataset import list_images
from rsigradcam.app.loading import (
    EMBEDDED_MODELS,
    FIXED_BUDGET_MB,
    INPUT_SIZE,
    InputError,
    LoadedModel,
    check_layers,
    load_model,
    model_sha256,
    probe_layers,
)
from rsigradcam.app.samples import (
    DEMO_LAYERS,
    EVALUATION_PHOTOS,
    find_paper_samples,
    sample_images,
)
from rsigradcam.core.capture import model_dtype
from rsigradcam.core.targets import Output
from rsigradcam.explanation import Explanation
from rsigradcam.files import finite, save_json, save_text
from rsigradcam.io import load_image
from rsigradcam.methods import METHODS, create_cam, method_class, method_layers
from rsigradcam.methods.integrated_gradients import INPUT_LAYER
from rsigradcam.metrics._common import predict
from rsigradcam.metrics.sanity import ORIGINAL
from rsigradcam.metrics.stability import Explain, MakeExplainer

__all__ = [
    "CLAIMS",
    "GRID_THRESHOLDS",
    "METRICS",
    "RANDOM",
    "Claim",
    "EvalImage",
    "Evaluation",
    "EvaluationOptions",
    "MethodRunner",
    "MetricInfo",
    "bootstrap_mean",
    "evaluate",
    "judge_claims",
    "load_images",
    "resolve_layers",
    "sanity_stages",
    "summarize",
    "verdict",
    "write_evaluation",
]

#: make_grids thresholds tried in turn, until enough grids can be built.
GRID_THRESHOLDS: tuple[float, ...] = (0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0)
#: The pseudo-method of random-order maps (the deletion and insertion baseline).
RANDOM = "random"
#: Side, in pixels, of the blocks that the random-order maps rank: contiguous patches about
#: the size of a blocks.5 / blocks.10 cell (224 / 14), not scattered pixels, which break an
#: image faster than any map and would make a reference that no method can beat.
RANDOM_BLOCK = 16
#: Images per no-grad forward pass of the metrics: small batches are fastest on a CPU.
CPU_BATCH, GPU_BATCH = 8, 64

Better = Literal["higher", "lower"]
Verdict = Literal["holds", "does not hold", "inconclusive"]


@dataclass(frozen=True)
class MetricInfo:
    """How to read one metric: its label, which direction is better, and its unit."""

    label: str
    better: Better
    unit: Literal["image", "cell"] = "image"
    description: str = ""


#: Every scalar metric of a run, by its key in ``results["metrics"]``.
METRICS: dict[str, MetricInfo] = {
    "deletion_auc": MetricInfo(
        "Deletion AUC", "lower", description="area under the probability as the most "
        "salient pixels are blacked out first (orders that scatter single pixels, as random "
        "order and Integrated Gradients do, break the image's texture and score low for "
        "that alone)"
    ),
    "insertion_auc": MetricInfo(
        "Insertion AUC", "higher", description="area under the probability as the most "
        "salient pixels are restored first into a blurred image"
    ),
    "average_drop": MetricInfo(
        "Average Drop %", "lower", description="probability lost on the image masked by its map"
    ),
    "increase_in_confidence": MetricInfo(
        "Increase in Confidence %", "higher", description="images whose masked probability "
        "exceeds the original"
    ),
    "gridpg": MetricInfo(
        "GridPG", "higher", "cell", "share of the positive attribution inside the explained "
        "cell of a 2x2 grid (chance 0.25)"
    ),
    "sanity_spearman": MetricInfo(
        "Sanity: Spearman under randomisation", "lower", description="rank correlation "
        "with the trained model's map, averaged over the stages of the cascading "
        "randomisation (from the output down to every layer random); low means the map "
        "depends on what the model learned"
    ),
    "dtype_max_abs": MetricInfo(
        "float32 vs float64: max |Δ|", "lower", description="largest heatmap difference "
        "between float32 and float64 computation"
    ),
    "noise_sensitivity": MetricInfo(
        "Max-sensitivity", "lower", description="largest relative heatmap change under "
        "uniform input noise"
    ),
    "steps_max_abs": MetricInfo(
        "m vs reference m: max |Δ|", "lower", description="largest heatmap difference "
        "between the evaluation's m and the reference m (512 by default)"
    ),
}


@dataclass(frozen=True)
class Claim:
    """A claim of the paper, tested by RSI-Grad-CAM minus Grad-CAM on some metrics."""

    key: str
    text: str
    metrics: tuple[str, ...]


#: The paper's claims and the metrics that test them.
CLAIMS: tuple[Claim, ...] = (
    Claim(
        "focus",
        "RSI-Grad-CAM maps are better focused than Grad-CAM's",
        ("gridpg", "deletion_auc", "insertion_auc"),
    ),
    Claim(
        "stability",
        "RSI-Grad-CAM's numerical computation is more stable than Grad-CAM's",
        ("dtype_max_abs", "noise_sensitivity"),
    ),
)


@dataclass(frozen=True)
class EvaluationOptions:
    """Everything that decides the numbers of a run (all of it goes into ``results.json``).

    Attributes:
        model: ``"efficientnet_lite0"``, a ``.pt2`` file or ``module:callable`` (see
            :func:`rsigradcam.app.loading.load_model`).
        images: A folder of images (or a list file); ``None``: the scikit-image photos of
            :data:`~rsigradcam.app.samples.EVALUATION_PHOTOS` and the paper samples when
            found.
        layers: Layers to explain; empty: blocks.5, blocks.10 and head for the embedded
            model, the last spatial layer otherwise.
        methods: Names from :data:`rsigradcam.methods.METHODS`.
        steps: Path steps m of rsi, integrated-gradcam and ig.
        output: The explained score of every method, ``"softmax"`` or ``"logits"``.
        device: ``"cpu"`` or ``"cuda"``.
        seed: Seed of every random draw (grids, random maps, randomisation, noise,
            bootstrap).
        max_images: Use at most this many images (the first ones).
        curve_points: Steps of the deletion and insertion curves.
        max_grids: At most this many GridPG grids (0: no GridPG).
        min_grids: Lower the grid threshold until this many grids exist (or fewer,
            the most possible).
        sanity: Run the cascading randomisation test.
        sanity_images: Images of the randomisation test (the first ones).
        sanity_stages: Stages of the cascade, evenly spaced from the output down; each
            randomises every layer from the output down to it.
        stability: Run the stability measures (Grad-CAM and RSI-Grad-CAM only).
        stability_steps: The m compared with ``reference_steps`` (empty: skip).
        reference_steps: The reference m.
        steps_images: Images of the m comparison (the first ones).
        noise_samples: Noise draws of max-sensitivity.
        noise_radius: Noise half-width, in the normalised input space.
        bootstrap: Bootstrap resamples of every interval.
        gallery_images: Images shown in the report's gallery (the first ones).
    """

    model: str = "efficientnet_lite0"
    images: Path | None = None
    layers: tuple[str, ...] = ()
    methods: tuple[str, ...] = tuple(METHODS)
    steps: int = 50
    output: Output = "softmax"
    device: str = "cpu"
    seed: int = 0
    max_images: int | None = None
    curve_points: int = 16
    max_grids: int = 3
    min_grids: int = 2
    sanity: bool = True
    sanity_images: int = 3
    sanity_stages: int = 6
    stability: bool = True
    stability_steps: tuple[int, ...] = (8, 16, 32, 50, 100)
    reference_steps: int = metrics.REFERENCE_STEPS
    steps_images: int = 4
    noise_samples: int = 5
    noise_radius: float = 0.02
    bootstrap: int = 1000
    gallery_images: int = 24

    def check(self) -> None:
        """Raise :class:`~rsigradcam.app.loading.InputError` for a value that cannot work."""
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise InputError(
                f"unknown method(s) {unknown or '(none)'}; use {', '.join(METHODS)}"
            )
        positive = {
            "steps": self.steps, "curve_points": self.curve_points,
            "sanity_images": self.sanity_images, "sanity_stages": self.sanity_stages,
            "reference_steps": self.reference_steps, "steps_images": self.steps_images,
            "noise_samples": self.noise_samples, "bootstrap": self.bootstrap,
            "min_grids": self.min_grids,
        }
        for name, value in positive.items():
            if value < 1:
                raise InputError(f"{name} must be a positive integer, got {value}")
        if self.max_images is not None and self.max_images < 1:
            raise InputError(f"max_images must be a positive integer, got {self.max_images}")
        if self.max_grids < 0 or self.gallery_images < 0:
            raise InputError("max_grids and gallery_images must not be negative")
        if any(m < 1 for m in self.stability_steps):
            raise InputError(f"stability_steps must be positive, got {self.stability_steps}")
        if not self.noise_radius >= 0:
            raise InputError(f"noise_radius must not be negative, got {self.noise_radius}")
        if self.output not in ("softmax", "logits"):
            raise InputError(f"output must be 'softmax' or 'logits', got {self.output!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values, ready for JSON."""
        values = asdict(self)
        values["images"] = None if self.images is None else str(self.images)
        return values


@dataclass(frozen=True)
class EvalImage:
    """One image of the evaluation.

    Attributes:
        name: A short unique name (the file's path relative to the folder).
        source: Where it came from.
        tensor: (1, 3, 224, 224) normalised input, on the CPU.
        rgb: (224, 224, 3) uint8, the resized image the model saw.
        target: The class to explain, or ``None`` for the top-1 class.
    """

    name: str
    source: str
    tensor: Tensor
    rgb: np.ndarray
    target: int | None = None


@dataclass(frozen=True)
class Evaluation:
    """The outcome of :func:`evaluate`.

    Attributes:
        results: Everything as plain JSON values (written to ``results.json``).
        rgb: The images, (224, 224, 3) uint8 each, in order.
        heatmaps: ``(method, layer) -> (N, 224, 224)`` float32 CPU heatmaps in [0, 1].
    """

    results: dict[str, Any]
    rgb: list[np.ndarray]
    heatmaps: dict[tuple[str, str], Tensor]


# --------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------


def _rng(seed: int, key: str) -> np.random.Generator:
    """A generator for one interval: the same seed and key give the same draws."""
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def bootstrap_mean(
    values: Sequence[float] | np.ndarray, resamples: int, rng: np.random.Generator
) -> dict[str, float | int | None]:
    """The mean and its 95 % percentile bootstrap interval.

    Args:
        values: One number per unit (image or grid cell).
        resamples: Bootstrap resamples.
        rng: The generator of the resamples.

    Returns:
        ``{"n", "mean", "low", "high"}``; the interval is ``None`` for fewer than two
        values, and everything but ``n`` for none.

    Example:
        >>> bootstrap_mean([1.0, 1.0, 1.0], 100, np.random.default_rng(0))
        {'n': 3, 'mean': 1.0, 'low': 1.0, 'high': 1.0}
    """
    x = np.asarray(values, dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return {"n": 0, "mean": None, "low": None, "high": None}
    mean = float(x.mean())
    if n < 2:
        return {"n": n, "mean": mean, "low": None, "high": None}
    means = x[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"n": n, "mean": mean, "low": float(low), "high": float(high)}


def verdict(low: float | None, high: float | None, better: Better) -> Verdict:
    """Read an interval of (RSI-Grad-CAM minus Grad-CAM) as a verdict on "RSI is better".

    Example:
        >>> verdict(0.01, 0.05, "higher"), verdict(0.01, 0.05, "lower"), verdict(-1, 1, "lower")
        ('holds', 'does not hold', 'inconclusive')
    """
    if low is None or high is None:
        return "inconclusive"
    above, below = low > 0, high < 0
    if (above and better == "higher") or (below and better == "lower"):
        return "holds"
    if above or below:
        return "does not hold"
    return "inconclusive"


def _combine(verdicts: Sequence[Verdict]) -> Verdict:
    """A claim holds when some metric supports it and none contradicts it."""
    holds, fails = "holds" in verdicts, "does not hold" in verdicts
    if holds and not fails:
        return "holds"
    if fails and not holds:
        return "does not hold"
    return "inconclusive"


def _group_masks(saturated: Sequence[bool]) -> dict[str, np.ndarray]:
    flags = np.asarray(saturated, dtype=bool)
    return {"all": np.ones_like(flags), "saturated": flags, "unsaturated": ~flags}


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Mean and 95 % bootstrap interval per metric, method, layer and saturation group."""
    seed, resamples = results["config"]["seed"], results["config"]["bootstrap"]
    summary: dict[str, Any] = {}
    for metric, by_method in results["metrics"].items():
        masks = _group_masks(results["units"][metric]["saturated"])
        summary[metric] = {
            method: {
                layer: {
                    group: bootstrap_mean(
                        np.asarray(values)[mask], resamples,
                        _rng(seed, f"{metric}/{method}/{layer}/{group}"),
                    )
                    for group, mask in masks.items()
                }
                for layer, values in by_layer.items()
            }
            for method, by_layer in by_method.items()
        }
    return summary


def judge_claims(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each claim's verdict per layer, from paired intervals of RSI minus Grad-CAM.

    A metric's verdict per layer and group (all, saturated and unsaturated units; empty
    groups are left out) comes from the bootstrap interval of the mean per-unit
    difference; the claim's verdict per layer combines its metrics on all the units: it
    holds when some metric supports it and none contradicts it.
    """
    seed, resamples = results["config"]["seed"], results["config"]["bootstrap"]
    found = results["metrics"]
    claims = []
    for claim in CLAIMS:
        layers: dict[str, Any] = {}
        for metric in claim.metrics:
            pair = found.get(metric, {})
            if "rsi" not in pair or "gradcam" not in pair:
                continue
            masks = _group_masks(results["units"][metric]["saturated"])
            better = METRICS[metric].better
            for layer in pair["rsi"]:
                if layer not in pair["gradcam"]:
                    continue
                rsi, grad = np.asarray(pair["rsi"][layer]), np.asarray(pair["gradcam"][layer])
                for group, mask in masks.items():
                    if not mask.any():
                        continue
                    stats = bootstrap_mean(
                        (rsi - grad)[mask], resamples, _rng(seed, f"claim/{metric}/{layer}/{group}")
                    )
                    entry = {
                        "metric": metric,
                        "group": group,
                        "better": better,
                        "rsi": float(rsi[mask].mean()),
                        "gradcam": float(grad[mask].mean()),
                        **stats,
                        "verdict": verdict(stats["low"], stats["high"], better),
                    }
                    layers.setdefault(layer, {"measures": []})["measures"].append(entry)
        for entry in layers.values():
            entry["verdict"] = _combine(
                [m["verdict"] for m in entry["measures"] if m["group"] == "all"]
            )
        claims.append({"key": claim.key, "claim": claim.text, "layers": layers})
    return claims


# --------------------------------------------------------------------------------------
# Images, layers, methods
# --------------------------------------------------------------------------------------


def load_images(
    options: EvaluationOptions, loaded: LoadedModel, exclude: Path | None = None
) -> tuple[list[EvalImage], list[str]]:
    """Read the images of a run, resized to 224x224 with ImageNet normalisation.

    Returns:
        The images (at most ``options.max_images``) and one warning per unreadable file,
        which is skipped.

    Raises:
        InputError: The folder does not exist or holds no readable image.
    """
    notes: list[str] = []
    found: list[EvalImage] = []
    limit = options.max_images or math.inf
    if options.images is None:
        for name, source, value in sample_images(EVALUATION_PHOTOS, find_paper_samples()):
            if len(found) >= limit:
                break
            tensor, rgb = load_image(value, INPUT_SIZE)
            found.append(EvalImage(name, source, tensor, rgb))
        return found, notes
    entries = list_images(
        options.images, exclude=exclude, class_names=loaded.class_names,
        num_classes=loaded.num_classes,
    )
    for entry in entries:
        if len(found) >= limit:
            break
        try:
            tensor, rgb = load_image(entry.path, INPUT_SIZE)
        except (OSError, ValueError) as exc:
            notes.append(f"skipped {entry.id}: {exc}")
            continue
        found.append(EvalImage(entry.id, entry.path, tensor, rgb, entry.target))
    if not found:
        raise InputError(f"no readable image in '{options.images}'")
    return found, notes


def resolve_layers(loaded: LoadedModel, requested: Sequence[str]) -> list[str]:
    """The layers to explain: ``requested``, else blocks.5/10 and head (embedded), else auto."""
    infos = probe_layers(loaded.model)
    if requested:
        return check_layers(requested, infos)
    if loaded.name in EMBEDDED_MODELS:
        return check_layers(DEMO_LAYERS, infos)
    return check_layers([], infos)


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
        self, name: str, layers: Sequence[str], steps: int, output: Output, notes: list[str]
    ) -> None:
        self.name = name
        self.layers = method_layers(name, layers)
        self.has_steps = method_class(name).takes_steps
        self.steps, self.output, self.notes = steps, output, notes
        #: The stage asking for explanations, named in the notes.
        self.stage = ""
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
            cam = create_cam(
                self.name,
                model,
                self.layers,
                steps=m or self.steps,
                output=self.output,
                memory_budget_mb=FIXED_BUDGET_MB,
                dtype=dtype,
            )
            with _recorded(self.notes, f"{self.stage}, {self.name}"):
                found = cam(images, targets)
            self._cache[key] = found if isinstance(found, dict) else {found.layer: found}
        return self._cache[key]

    def maker(self, model: nn.Module, layer: str) -> MakeExplainer:
        """``make(steps, dtype) -> explain(images, targets) -> heatmaps`` at ``layer``."""

        def make(steps: int, dtype: torch.dtype) -> Explain:
            def explain(images: Tensor, targets: Tensor) -> Tensor:
                return self(model, images, targets, steps, dtype)[layer].heatmap

            return explain

        return make


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


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


@dataclass
class _Run:
    """One evaluation's inputs, and the results its stages fill in."""

    options: EvaluationOptions
    model: nn.Module
    images: Tensor
    targets: Tensor
    names: list[str]
    saturated: list[bool]
    runners: dict[str, MethodRunner]
    progress: bool
    notes: list[str]
    metrics: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    units: dict[str, dict[str, Any]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def explained(self, method: str) -> dict[str, Explanation]:
        """The method's explanations of the images, by layer (computed once)."""
        return self.runners[method](self.model, self.images, self.targets)

    def pairs(self, methods: Iterable[str] | None = None) -> Iterator[tuple[str, str]]:
        """(method, layer) for the selected methods (all by default), in order."""
        for name, runner in self.runners.items():
            if methods is None or name in methods:
                for layer in runner.layers:
                    yield name, layer

    def put(self, metric: str, method: str, layer: str, values: Tensor) -> None:
        """Store one value per unit of ``metric`` for ``(method, layer)``."""
        by_layer = self.metrics.setdefault(metric, {}).setdefault(method, {})
        by_layer[layer] = values.detach().to("cpu", torch.float64).flatten().tolist()

    def image_units(self, metric: str, chosen: Sequence[int] | None = None) -> None:
        """Declare that ``metric``'s units are the images (those of ``chosen``)."""
        indices = range(len(self.names)) if chosen is None else chosen
        self.units[metric] = {
            "unit": "image",
            "ids": [self.names[i] for i in indices],
            "saturated": [self.saturated[i] for i in indices],
        }

    @property
    def batch(self) -> int:
        """Images per forward pass of the metrics."""
        return CPU_BATCH if self.images.device.type == "cpu" else GPU_BATCH

    def forget(self) -> None:
        """Drop every kept explanation but the images' own."""
        for runner in self.runners.values():
            runner.clear()


def _explain(run: _Run) -> None:
    """Explain the images with every method, once; the metrics reuse these maps."""
    for name, runner in run.runners.items():
        run.explained(name)
        runner.pin()


def _faithfulness(run: _Run) -> None:
    """Deletion, insertion (and the random-order baseline), Average Drop and IC."""
    o = run.options
    h, w = run.images.shape[2:]
    step = math.ceil(h * w / o.curve_points)
    curves: dict[str, Any] = {"step": step, "deletion": {}, "insertion": {}}
    shuffled = metrics.random_heatmaps(run.images, seed=o.seed, block=RANDOM_BLOCK)
    sources = [(RANDOM, INPUT_LAYER, shuffled)]
    sources += [(m, layer, run.explained(m)[layer].heatmap) for m, layer in run.pairs()]
    for method, layer, maps in sources:
        for kind, curve in (("deletion", metrics.deletion), ("insertion", metrics.insertion)):
            found = curve(run.model, run.images, maps, run.targets, step=step,
                          batch_size=run.batch, progress=run.progress)
            run.put(f"{kind}_auc", method, layer, found.auc)
            curves[kind]["fractions"] = found.fractions.tolist()
            curves[kind].setdefault(method, {})[layer] = found.curves.tolist()
        if method != RANDOM:
            masked = metrics.average_drop_increase(
                run.model, run.images, maps, run.targets, batch_size=run.batch,
                progress=run.progress,
            )
            run.put("average_drop", method, layer, masked.drop)
            run.put("increase_in_confidence", method, layer, masked.increase.double() * 100)
    for metric in ("deletion_auc", "insertion_auc", "average_drop", "increase_in_confidence"):
        run.image_units(metric)
    run.details["curves"] = curves


def _grids(run: _Run) -> tuple[metrics.GridSet, float] | None:
    """Grids at the highest threshold that gives ``min_grids`` of them (else the most)."""
    o = run.options
    best: tuple[metrics.GridSet, float] | None = None
    for threshold in GRID_THRESHOLDS:
        try:
            grids = metrics.make_grids(
                run.model, run.images, threshold=threshold, n_grids=o.max_grids,
                seed=o.seed, batch_size=run.batch, progress=False,
            )
        except ValueError:  # fewer than four distinct classes at this threshold
            continue
        if best is None or len(grids) > len(best[0]):
            best = (grids, threshold)
        if len(grids) >= min(o.min_grids, o.max_grids):
            break
    return best


def _localisation(run: _Run) -> None:
    """The grid pointing game on 2 x 2 grids of the images."""
    chosen = _grids(run) if run.options.max_grids > 0 else None
    if chosen is None:
        if run.options.max_grids > 0:
            run.notes.append("GridPG skipped: fewer than four distinct classes among the images")
        return
    grids, threshold = chosen
    if threshold < GRID_THRESHOLDS[0]:
        run.notes.append(
            f"GridPG: grid threshold lowered from {GRID_THRESHOLDS[0]} to {threshold} to "
            f"build {len(grids)} grid(s) from {len(run.names)} images"
        )
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
    sources = grids.sources.tolist()
    run.units["gridpg"] = {
        "unit": "cell",
        "ids": [f"grid {g} cell {c}: {run.names[s]}" for g, row in enumerate(sources)
                for c, s in enumerate(row)],
        "saturated": [bool(p > metrics.SATURATION) for p in grids.confidences.flatten()],
    }
    run.details["gridpg"] = {
        "threshold": threshold,
        "cell_images": [[run.names[s] for s in row] for row in sources],
        **grids.to_dict(),
    }


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


def _sanity(run: _Run) -> None:
    """Cascading randomisation (checked at a few stages), on the first images."""
    o = run.options
    chosen = list(range(min(o.sanity_images, len(run.names))))
    stages = sanity_stages(run.model, o.sanity_stages)
    correlations: dict[str, dict[str, Any]] = {}
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
    run.details["sanity"] = {
        "stages": [ORIGINAL, *stages],
        "images": [run.names[i] for i in chosen],
        "correlations": correlations,
    }


def _stability(run: _Run) -> None:
    """float32 vs float64, max-sensitivity and m vs the reference m: Grad-CAM and RSI."""
    o = run.options
    chosen = list(range(min(o.steps_images, len(run.names))))
    steps = sorted({*o.stability_steps, o.steps}) if o.stability_steps else []
    detail: dict[str, Any] = {
        "steps": steps, "reference": o.reference_steps,
        "steps_images": [run.names[i] for i in chosen],
        "dtype": {}, "noise": {}, "steps_spread": {},
    }
    for method, layer in run.pairs(("gradcam", "rsi")):
        make = run.runners[method].maker(run.model, layer)
        dtype = metrics.dtype_difference(
            run.model, run.images, make, run.targets, steps=o.steps, progress=run.progress
        )
        noise = metrics.max_sensitivity(
            run.model, run.images, make, run.targets, radius=o.noise_radius,
            n_samples=o.noise_samples, steps=o.steps, seed=o.seed, progress=run.progress,
        )
        run.put("dtype_max_abs", method, layer, dtype.max_abs)
        run.put("noise_sensitivity", method, layer, noise.sensitivity)
        detail["dtype"].setdefault(method, {})[layer] = dtype.to_dict()
        detail["noise"].setdefault(method, {})[layer] = noise.to_dict()
        if steps:
            spread = metrics.steps_spread(
                run.model, run.images[chosen], make, run.targets[chosen], steps=steps,
                reference=o.reference_steps, progress=run.progress,
            )
            run.put("steps_max_abs", method, layer, spread.max_abs[steps.index(o.steps)])
            detail["steps_spread"].setdefault(method, {})[layer] = spread.to_dict()
    run.forget()
    run.image_units("dtype_max_abs")
    run.image_units("noise_sensitivity")
    if steps:
        run.image_units("steps_max_abs", chosen)
    run.details["stability"] = detail


def _start(
    options: EvaluationOptions, progress: bool, out: Path | None
) -> tuple[_Run, LoadedModel, list[EvalImage], Tensor, list[str]]:
    """Load the model and the images, and find the classes to explain."""
    loaded = load_model(options.model, options.device)
    layers = resolve_layers(loaded, options.layers)
    found, notes = load_images(options, loaded, exclude=out)
    images = torch.cat([image.tensor for image in found]).to(loaded.device)
    probabilities = predict(loaded.model, images, CPU_BATCH)
    top1 = probabilities.argmax(dim=1).tolist()
    targets = torch.tensor(
        [top1[k] if image.target is None else image.target for k, image in enumerate(found)],
        device=loaded.device,
    )
    top = probabilities.max(dim=1).values
    runners = {
        name: MethodRunner(name, layers, options.steps, options.output, notes)
        for name in options.methods
    }
    run = _Run(
        options, loaded.model, images, targets, [image.name for image in found],
        [bool(p > metrics.SATURATION) for p in top.tolist()], runners, progress, notes,
    )
    return run, loaded, found, probabilities, layers


def evaluate(
    options: EvaluationOptions,
    *,
    echo: Callable[[str], None] = print,
    progress: bool = False,
    out: Path | None = None,
) -> Evaluation:
    """Run every method and metric that ``options`` ask for.

    Args:
        options: What to run (see :class:`EvaluationOptions`).
        echo: Called with a line as each stage finishes.
        progress: Let the metrics draw progress bars (on a terminal only).
        out: The output folder, never searched for images.

    Returns:
        An :class:`Evaluation`: the results as JSON values, the images and the heatmaps.

    Raises:
        InputError: An option, model, layer or image folder that cannot work.
    """
    options.check()
    started = time.perf_counter()
    run, loaded, found, probabilities, layers = _start(options, progress, out)
    timings = {"setup": time.perf_counter() - started}
    echo(
        f"{len(found)} images, layers {', '.join(layers)}, methods "
        f"{', '.join(options.methods)}, m = {options.steps} ({timings['setup']:.1f} s)"
    )
    stages: list[tuple[str, Callable[[_Run], None]]] = [
        ("explanations", _explain),
        ("deletion, insertion, average drop", _faithfulness),
        ("grid pointing game", _localisation),
    ]
    if options.sanity:
        stages.append(("cascading randomisation", _sanity))
    if options.stability and run.runners.keys() & {"gradcam", "rsi"}:
        stages.append(("stability", _stability))
    for title, stage in stages:
        begin = time.perf_counter()
        for runner in run.runners.values():
            runner.stage = title
        stage(run)
        timings[title] = time.perf_counter() - begin
        echo(f"{title}: {timings[title]:.1f} s")
    results = _results(run, loaded, found, probabilities, layers)
    timings["total"] = time.perf_counter() - started
    results["timings"] = timings
    heatmaps = {
        (method, layer): run.explained(method)[layer].heatmap.detach().to("cpu", torch.float32)
        for method, layer in run.pairs()
    }
    return Evaluation(finite(results), [image.rgb for image in found], heatmaps)


def _results(
    run: _Run,
    loaded: LoadedModel,
    found: list[EvalImage],
    probabilities: Tensor,
    layers: list[str],
) -> dict[str, Any]:
    """Everything as JSON values, with the summary and the claims' verdicts."""
    top = probabilities.max(dim=1).values.tolist()
    explained = probabilities.gather(1, run.targets.view(-1, 1)).squeeze(1).tolist()
    results: dict[str, Any] = {
        "config": {
            **run.options.to_dict(),
            "layers": layers,
            "version": _version(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "model_digest": model_sha256(run.model),
            "memory_budget_mb": FIXED_BUDGET_MB,
            "batch_size": run.batch,
            "saturation": metrics.SATURATION,
        },
        "images": [
            {
                "name": image.name,
                "source": image.source,
                "class_id": int(run.targets[k]),
                "class": loaded.label(int(run.targets[k])),
                "probability": explained[k],
                "top1_probability": top[k],
                "saturated": run.saturated[k],
            }
            for k, image in enumerate(found)
        ],
        "explanations": {
            method: {layer: _record(exp) for layer, exp in run.explained(method).items()}
            for method in run.runners
        },
        "metrics_info": {key: asdict(info) for key, info in METRICS.items()},
        "units": run.units,
        "metrics": run.metrics,
        "details": run.details,
        "notes": run.notes,
    }
    results["summary"] = summarize(results)
    results["claims"] = judge_claims(results)
    return results


def _record(exp: Explanation) -> dict[str, Any]:
    return {
        "score": exp.scores.tolist(),
        "baseline_score": exp.baseline_scores.tolist(),
        "completeness_error": exp.completeness_error.tolist(),
        "n_evaluations": exp.n_evaluations,
    }


def _version() -> str:
    from rsigradcam import __version__

    return __version__


def write_evaluation(evaluation: Evaluation, out: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``report.html`` and ``summary.md`` to ``out``, atomically.

    Returns:
        The files written: ``{"results": ..., "report": ..., "summary": ...}``.
    """
    from rsigradcam.app.report import markdown_summary, render_report

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "results": save_json(evaluation.results, folder / "results.json"),
        "report": save_text(render_report(evaluation), folder / "report.html"),
        "summary": save_text(markdown_summary(evaluation.results), folder / "summary.md"),
    }
