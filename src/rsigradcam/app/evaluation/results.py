"""The typed results of an evaluation, shared by the run and its report, and ``results.json``.

:class:`EvaluationResults` holds every number of a run; :meth:`~EvaluationResults.to_json`
gives the plain JSON values of ``results.json`` (NaN and infinities become ``null``) and
:meth:`~EvaluationResults.from_json` reads them back (``null`` inside a list of numbers
becomes NaN again), so that ``from_json(data).to_json() == data``.

Example:
    >>> import json
    >>> data = json.loads(Path("rsigradcam-evaluation/results.json").read_text())  # doctest: +SKIP
    >>> EvaluationResults.from_json(data).claims[0].layers["head"].verdict          # doctest: +SKIP
    'does not hold'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from rsigradcam.app.evaluation.options import EvaluationOptions, MetricInfo
from rsigradcam.app.evaluation.records import MetricValues, Record, Rows, nan_lists, nested, plain
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
from rsigradcam.files import finite

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

    Attributes:
        options: The options (``layers`` are the resolved layers once read back).
        layers: The explained layers.
        version, torch, python: The package, PyTorch and Python versions.
        model_digest: SHA-256 of the model's parameters and buffers.
        memory_budget_mb: The fixed memory budget that sizes the path chunks.
        batch_size: Images per forward pass of the metrics.
        saturation: Top-1 probability above which an image counts as saturated.
    """

    options: EvaluationOptions
    layers: list[str]
    version: str
    torch: str
    python: str
    model_digest: str
    memory_budget_mb: float
    batch_size: int
    saturation: float

    def to_json(self) -> dict[str, Any]:
        """The options' values, then the others (``layers`` in the options' place), as JSON."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "options"}
        return finite({**self.options.to_dict(), **values})  # type: ignore[no-any-return]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunConfig:
        """Read :meth:`to_json`'s values back."""
        names = {f.name for f in fields(EvaluationOptions)}
        values = {k: v for k, v in data.items() if k in names}
        values["images"] = None if data["images"] is None else Path(data["images"])
        for key in ("layers", "methods", "stability_steps", "input_size", "mean", "std"):
            if data.get(key) is not None:
                values[key] = tuple(data[key])
        extra = {f.name: data[f.name] for f in fields(cls) if f.name != "options"}
        return cls(options=EvaluationOptions(**values), **extra)


@dataclass(frozen=True)
class ImageResult:
    """One image: its class, probabilities and saturation (``results.json: images``)."""

    name: str
    source: str
    class_id: int
    class_name: str
    probability: float
    top1_probability: float
    saturated: bool
    top1: int | None = None
    label: int | None = None
    correct: bool | None = None
    top5: bool | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain values; the class name goes under ``"class"``."""
        values = asdict(self)
        values = {("class" if k == "class_name" else k): v for k, v in values.items()}
        return values

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageResult:
        """Read :meth:`to_json`'s values back."""
        return cls(**{("class_name" if k == "class" else k): v for k, v in data.items()})


@dataclass(frozen=True)
class ExplanationRecord(Record):
    """One method's explanations at one layer, per image (``results.json: explanations``)."""

    score: list[float]
    baseline_score: list[float]
    completeness_error: list[float]
    n_evaluations: int

    @classmethod
    def of(cls, exp: Explanation) -> ExplanationRecord:
        """The record of an explanation."""
        return cls(
            exp.scores.tolist(), exp.baseline_scores.tolist(),
            exp.completeness_error.tolist(), exp.n_evaluations,
        )


@dataclass(frozen=True)
class Units(Record):
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
    curves: Rows

    def to_json(self) -> dict[str, Any]:
        """``{"fractions": ..., method: {layer: curves}}``."""
        return {"fractions": self.fractions, **self.curves}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CurveSet:
        """Read :meth:`to_json`'s values back."""
        curves = {k: v for k, v in data.items() if k != "fractions"}
        return cls(nan_lists(data["fractions"]), nested(curves, nan_lists))


@dataclass(frozen=True)
class Curves:
    """The faithfulness stage's curves and their pixel step."""

    step: int
    deletion: CurveSet
    insertion: CurveSet

    def to_json(self) -> dict[str, Any]:
        """Plain Python values, ready for JSON."""
        return {"step": self.step, "deletion": self.deletion.to_json(),
                "insertion": self.insertion.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Curves:
        """Read :meth:`to_json`'s values back."""
        return cls(data["step"], CurveSet.from_json(data["deletion"]),
                   CurveSet.from_json(data["insertion"]))


@dataclass(frozen=True)
class GridDetails(Record):
    """The GridPG grids: threshold, the image of each cell and the grids' layout."""

    threshold: float
    cell_images: list[list[str]]
    cell_size: list[int]
    boxes: list[list[int]]
    classes: list[list[int]]
    sources: list[list[int]]
    confidences: list[list[float]]


@dataclass(frozen=True)
class SanityDetails(Record):
    """The randomisation stages, images and Spearman correlations (stage x image)."""

    stages: list[str]
    images: list[str]
    correlations: Rows


@dataclass(frozen=True)
class DtypeRecord(Record):
    """float32 against float64, per image (see :class:`rsigradcam.metrics.DtypeResult`)."""

    steps: int
    max_abs: list[float]
    mean_abs: list[float]
    correlation: list[float]


@dataclass(frozen=True)
class NoiseRecord(Record):
    """Max-sensitivity, per image (see :class:`rsigradcam.metrics.SensitivityResult`)."""

    radius: float
    n_samples: int
    seed: int
    sensitivity: list[float]
    max_abs: list[float]


@dataclass(frozen=True)
class SpreadRecord(Record):
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

    def to_json(self) -> dict[str, Any]:
        """Plain Python values, ready for JSON."""
        return {
            "steps": self.steps, "reference": self.reference, "steps_images": self.steps_images,
            "dtype": plain(self.dtype), "noise": plain(self.noise),  # type: ignore[arg-type]
            "steps_spread": plain(self.steps_spread),  # type: ignore[arg-type]
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StabilityDetails:
        """Read :meth:`to_json`'s values back."""
        return cls(
            data["steps"], data["reference"], data["steps_images"],
            nested(data["dtype"], DtypeRecord.from_json),
            nested(data["noise"], NoiseRecord.from_json),
            nested(data["steps_spread"], SpreadRecord.from_json),
        )


@dataclass
class Details:
    """What the stages found beyond one value per unit; a stage that did not run is ``None``."""

    curves: Curves | None = None
    gridpg: GridDetails | None = None
    sanity: SanityDetails | None = None
    stability: StabilityDetails | None = None

    def to_json(self) -> dict[str, Any]:
        """The stages that ran, in order."""
        found = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v.to_json() for k, v in found.items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Details:
        """Read :meth:`to_json`'s values back."""
        kinds = {"curves": Curves, "gridpg": GridDetails, "sanity": SanityDetails,
                 "stability": StabilityDetails}
        return cls(**{k: kinds[k].from_json(v) for k, v in data.items()})  # type: ignore[attr-defined]


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

    def to_json(self) -> dict[str, Any]:
        """The JSON values of ``results.json`` (NaN and infinities are ``None``)."""
        return finite({  # type: ignore[no-any-return]
            "config": self.config.to_json(),
            "images": [image.to_json() for image in self.images],
            "explanations": plain(self.explanations),  # type: ignore[arg-type]
            "metrics_info": {key: asdict(info) for key, info in self.metrics_info.items()},
            "units": {key: units.to_json() for key, units in self.units.items()},
            "metrics": self.metrics,
            "details": self.details.to_json(),
            "notes": self.notes,
            "summary": {
                metric: nested(by_method, lambda groups: {
                    group: stats.to_json() for group, stats in groups.items()
                })
                for metric, by_method in self.summary.items()
            },
            "claims": [claim.to_json() for claim in self.claims],
            "timings": self.timings,
            "arms": self.arms,
            "p_bins": [row.to_json() for row in self.p_bins],
            "accuracy": None if self.accuracy is None else self.accuracy.to_json(),
        })

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvaluationResults:
        """Read ``results.json``'s values back."""
        return cls(
            config=RunConfig.from_json(data["config"]),
            images=[ImageResult.from_json(image) for image in data["images"]],
            explanations=nested(data["explanations"], ExplanationRecord.from_json),
            metrics_info={k: MetricInfo(**v) for k, v in data["metrics_info"].items()},
            units={k: Units.from_json(v) for k, v in data["units"].items()},
            metrics={k: nested(v, nan_lists) for k, v in data["metrics"].items()},
            details=Details.from_json(data["details"]),
            notes=list(data["notes"]),
            summary={
                metric: nested(by_method, lambda groups: {
                    group: Interval.from_json(stats) for group, stats in groups.items()
                })
                for metric, by_method in data["summary"].items()
            },
            claims=[ClaimResult.from_json(claim) for claim in data["claims"]],
            timings=dict(data["timings"]),
            arms=dict(data.get("arms", {})),
            p_bins=[BinRow.from_json(row) for row in data.get("p_bins", [])],
            accuracy=None if data.get("accuracy") is None else Accuracy.from_json(data["accuracy"]),
        )


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
