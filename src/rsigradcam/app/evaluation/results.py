"""The typed results of an evaluation, shared by the run and its report, and ``results.json``.

:class:`EvaluationResults` holds every number of a run. ``results.json`` holds
``finite(encode(results))`` (:func:`rsigradcam.serialization.encode`; NaN and infinities
become ``null``, :func:`rsigradcam.files.finite`), and
:func:`~rsigradcam.app.evaluation.storage.load_results` reads it back (``null`` where a
number belongs becomes NaN again), so that the file written again from what was read is
the same.

Example:
    >>> results = load_results("rsigradcam-evaluation")  # doctest: +SKIP
    >>> results.claims[0].layers["head"].verdict                              # doctest: +SKIP
    'does not hold'
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

from rsigradcam.app.evaluation.options import EvaluationOptions, MetricInfo
from rsigradcam.app.evaluation.records import MetricValues, Rows
from rsigradcam.app.evaluation.verdicts import (
    Accuracy,
    BinRow,
    ClaimResult,
    Interval,
    LayerVerdict,
    Measure,
    Summary,
)
from rsigradcam.explanation import Explanation
from rsigradcam.serialization import json_options

__all__ = [
    "Accuracy",
    "BinRow",
    "ClaimResult",
    "CurveSet",
    "Curves",
    "Details",
    "DtypeRecord",
    "Evaluation",
    "EvaluationResults",
    "ExplanationRecord",
    "GridDetails",
    "ImageResult",
    "Interval",
    "LayerVerdict",
    "Measure",
    "MetricValues",
    "NoiseRecord",
    "RunConfig",
    "SanityDetails",
    "SpreadRecord",
    "StabilityDetails",
    "Summary",
    "Units",
]

# --------------------------------------------------------------------------------------
# The run's configuration and inputs
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    """The options of a run and what else decides its numbers (``results.json: config``).

    In JSON the options' keys come first, inline (``layers`` in the options' place).

    Attributes:
        options: The options (``layers`` are the resolved layers once read back).
        layers: The explained layers.
        version, torch, python: The package, PyTorch and Python versions.
        model_digest: SHA-256 of the model's parameters and buffers.
        memory_budget_mb: The fixed memory budget that sizes the path chunks.
        batch_size: Images per forward pass of the metrics.
        saturation: Top-1 probability above which an image counts as saturated.
    """

    options: EvaluationOptions = field(metadata=json_options(inline=True))
    layers: list[str]
    version: str
    torch: str
    python: str
    model_digest: str
    memory_budget_mb: float
    batch_size: int
    saturation: float


@dataclass(frozen=True)
class ImageResult:
    """One image: its class, probabilities and saturation (``results.json: images``)."""

    name: str
    source: str
    class_id: int
    class_name: str = field(metadata=json_options(key="class"))
    probability: float
    top1_probability: float
    saturated: bool
    top1: int | None = None
    label: int | None = None
    correct: bool | None = None
    top5: bool | None = None


@dataclass(frozen=True)
class ExplanationRecord:
    """One method's explanations at one layer, per image (``results.json: explanations``)."""

    score: list[float]
    baseline_score: list[float]
    completeness_error: list[float]
    n_evaluations: int
    #: Why ``completeness_error`` is null although the method has one (a variant, a layer
    #: the score can bypass; :attr:`~rsigradcam.explanation.Explanation.completeness_note`);
    #: ``None`` (and no key in the JSON) where it is computed.
    completeness_note: str | None = field(default=None, metadata=json_options(omit_none=True))

    @classmethod
    def of(cls, exp: Explanation) -> ExplanationRecord:
        """The record of an explanation."""
        return cls(
            exp.scores.tolist(), exp.baseline_scores.tolist(),
            exp.completeness_error.tolist(), exp.n_evaluations, exp.completeness_note or None,
        )


@dataclass(frozen=True)
class Units:
    """What one metric's values are about: images or grid cells.

    Attributes:
        unit: ``"image"`` or ``"cell"``.
        ids: One name per unit.
        saturated: Per unit, whether the explained class's probability is saturated.
        probability: Per unit, the explained class's probability (empty: not recorded).
        correct: Per unit, whether the model's top-1 class is the labelled one (empty: no
            labels). The claims are judged on the correct units only.
    """

    unit: str
    ids: list[str]
    saturated: list[bool]
    probability: list[float] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# Details of the stages
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CurveSet:
    """Deletion or insertion curves: the removed fractions and every curve.

    In JSON the fractions sit beside the methods: ``{"fractions": [...], method: {layer:
    curves}}``.
    """

    fractions: list[float]
    curves: Rows = field(metadata=json_options(inline=True))


@dataclass(frozen=True)
class Curves:
    """The faithfulness stage's curves and their pixel step."""

    step: int
    deletion: CurveSet
    insertion: CurveSet


@dataclass(frozen=True)
class GridDetails:
    """The GridPG grids: threshold, the image of each cell and the grids' layout."""

    threshold: float
    cell_images: list[list[str]]
    cell_size: list[int]
    boxes: list[list[int]]
    classes: list[list[int]]
    sources: list[list[int]]
    confidences: list[list[float]]


@dataclass(frozen=True)
class SanityDetails:
    """The randomisation stages, images and Spearman correlations (stage x image)."""

    stages: list[str]
    images: list[str]
    correlations: Rows


@dataclass(frozen=True)
class DtypeRecord:
    """float32 against float64, per image (see :class:`rsigradcam.metrics.DtypeResult`)."""

    steps: int
    max_abs: list[float]
    mean_abs: list[float]
    correlation: list[float]


@dataclass(frozen=True)
class NoiseRecord:
    """Max-sensitivity, per image (see :class:`rsigradcam.metrics.SensitivityResult`)."""

    radius: float
    n_samples: int
    seed: int
    sensitivity: list[float]
    max_abs: list[float]


@dataclass(frozen=True)
class SpreadRecord:
    """m against the reference m, (steps x image) (see :class:`rsigradcam.metrics.StepsResult`)."""

    steps: list[int]
    reference: int
    max_abs: list[list[float]]
    correlation: list[list[float]]


@dataclass(frozen=True)
class StabilityDetails:
    """The stability stage's settings and per-image results, by method and layer."""

    steps: list[int]
    reference: int
    steps_images: list[str]
    dtype: dict[str, dict[str, DtypeRecord]]
    noise: dict[str, dict[str, NoiseRecord]]
    steps_spread: dict[str, dict[str, SpreadRecord]]


_STAGE = json_options(omit_none=True)  # a stage that did not run is left out


@dataclass
class Details:
    """What the stages found beyond one value per unit; a stage that did not run is ``None``."""

    curves: Curves | None = field(default=None, metadata=_STAGE)
    gridpg: GridDetails | None = field(default=None, metadata=_STAGE)
    sanity: SanityDetails | None = field(default=None, metadata=_STAGE)
    stability: StabilityDetails | None = field(default=None, metadata=_STAGE)


# --------------------------------------------------------------------------------------
# The whole
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluationResults:
    """Every number of a run: ``results.json``, and what the report is made from."""

    config: RunConfig
    images: list[ImageResult]
    explanations: dict[str, dict[str, ExplanationRecord]]
    metrics_info: dict[str, MetricInfo]
    units: dict[str, Units]
    metrics: MetricValues
    details: Details
    notes: list[str]
    summary: Summary
    claims: list[ClaimResult]
    timings: dict[str, float]
    arms: dict[str, str] = field(default_factory=dict)
    p_bins: list[BinRow] = field(default_factory=list)
    accuracy: Accuracy | None = None


@dataclass(frozen=True)
class Evaluation:
    """The outcome of :func:`~rsigradcam.app.evaluation.evaluate`.

    Attributes:
        results: Every number (written to ``results.json``).
        rgb: The images, (H, W, 3) uint8 each at the run's input size, in order.
        heatmaps: ``(arm, layer) -> (G, H, W)`` float32 CPU heatmaps in [0, 1] of the first
            ``G = min(N, gallery_images)`` images (the report's gallery), in steps of 1/255.
    """

    results: EvaluationResults
    rgb: list[np.ndarray]
    heatmaps: dict[tuple[str, str], Tensor]
