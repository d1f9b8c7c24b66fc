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

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from torch import Tensor

from rsigradcam.app.evaluation.options import Better, EvaluationOptions, MetricInfo, Verdict
from rsigradcam.explanation import Explanation
from rsigradcam.files import finite

__all__ = [
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

#: ``metric -> method -> layer -> one value per unit`` (image or grid cell).
MetricValues = dict[str, dict[str, dict[str, list[float]]]]
#: ``method -> layer -> one curve (or correlation row) per image``.
Rows = dict[str, dict[str, list[list[float]]]]

_R = TypeVar("_R", bound="Record")


def _nan(value: Any) -> Any:
    """``null`` inside (nested) lists back to NaN: the inverse of :func:`finite` there."""
    if isinstance(value, list):
        return [math.nan if v is None else _nan(v) for v in value]
    return value


class Record:
    """A flat dataclass whose JSON form is its fields, in order."""

    def to_json(self) -> dict[str, Any]:
        """Plain Python values, ready for JSON (NaN stays NaN until :func:`finite`)."""
        return asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def from_json(cls: type[_R], data: dict[str, Any]) -> _R:
        """Read :meth:`to_json`'s values back."""
        return cls(**{f.name: _nan(data[f.name]) for f in fields(cls)})  # type: ignore[arg-type]

    @classmethod
    def of(cls: type[_R], result: Any) -> _R:
        """The record of a library result that has ``to_dict()`` with the same fields."""
        return cls.from_json(result.to_dict())


def _nested(data: dict[str, dict[str, Any]], read: Any) -> dict[str, dict[str, Any]]:
    """``read`` applied to each value of a ``method -> layer -> value`` mapping."""
    return {m: {layer: read(v) for layer, v in by.items()} for m, by in data.items()}


def _plain(data: dict[str, dict[str, Record]]) -> dict[str, dict[str, Any]]:
    return _nested(data, lambda record: record.to_json())


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
    """What one metric's values are about: images or grid cells, and which are saturated."""

    unit: str
    ids: list[str]
    saturated: list[bool]


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
        return cls(_nan(data["fractions"]), _nested(curves, _nan))


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
            "dtype": _plain(self.dtype), "noise": _plain(self.noise),  # type: ignore[arg-type]
            "steps_spread": _plain(self.steps_spread),  # type: ignore[arg-type]
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StabilityDetails:
        """Read :meth:`to_json`'s values back."""
        return cls(
            data["steps"], data["reference"], data["steps_images"],
            _nested(data["dtype"], DtypeRecord.from_json),
            _nested(data["noise"], NoiseRecord.from_json),
            _nested(data["steps_spread"], SpreadRecord.from_json),
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
# Statistics and verdicts
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval(Record):
    """A mean over ``n`` units and its 95 % bootstrap interval.

    The interval is ``None`` for fewer than two units, and the mean too for none.
    """

    n: int
    mean: float | None
    low: float | None
    high: float | None


#: ``metric -> method -> layer -> group -> Interval`` (groups: all, saturated, unsaturated).
Summary = dict[str, dict[str, dict[str, dict[str, Interval]]]]


@dataclass(frozen=True)
class Measure:
    """One metric's paired comparison, RSI-Grad-CAM minus Grad-CAM, on one group of units."""

    metric: str
    group: str
    better: Better
    rsi: float
    gradcam: float
    difference: Interval
    verdict: Verdict

    def to_json(self) -> dict[str, Any]:
        """The fields, with the interval's ``n, mean, low, high`` inline."""
        return {"metric": self.metric, "group": self.group, "better": self.better,
                "rsi": self.rsi, "gradcam": self.gradcam, **self.difference.to_json(),
                "verdict": self.verdict}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measure:
        """Read :meth:`to_json`'s values back."""
        return cls(data["metric"], data["group"], data["better"], data["rsi"], data["gradcam"],
                   Interval.from_json(data), data["verdict"])


@dataclass(frozen=True)
class LayerVerdict:
    """A claim at one layer: its measures and the combined verdict."""

    measures: list[Measure]
    verdict: Verdict

    def to_json(self) -> dict[str, Any]:
        """Plain Python values, ready for JSON."""
        return {"measures": [m.to_json() for m in self.measures], "verdict": self.verdict}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerVerdict:
        """Read :meth:`to_json`'s values back."""
        return cls([Measure.from_json(m) for m in data["measures"]], data["verdict"])


@dataclass(frozen=True)
class ClaimResult:
    """A claim of the paper and its verdict per layer (no layers: not tested)."""

    key: str
    claim: str
    layers: dict[str, LayerVerdict]

    def verdict_line(self) -> str:
        """One line: ``"focus: blocks.5 holds, head does not hold"``."""
        layers = ", ".join(f"{layer} {entry.verdict}" for layer, entry in self.layers.items())
        return f"{self.key}: {layers or 'not tested (needs rsi and gradcam)'}"

    def to_json(self) -> dict[str, Any]:
        """Plain Python values, ready for JSON."""
        layers = {layer: entry.to_json() for layer, entry in self.layers.items()}
        return {"key": self.key, "claim": self.claim, "layers": layers}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClaimResult:
        """Read :meth:`to_json`'s values back."""
        layers = {k: LayerVerdict.from_json(v) for k, v in data["layers"].items()}
        return cls(data["key"], data["claim"], layers)


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

    def to_json(self) -> dict[str, Any]:
        """The JSON values of ``results.json`` (NaN and infinities are ``None``)."""
        return finite({  # type: ignore[no-any-return]
            "config": self.config.to_json(),
            "images": [image.to_json() for image in self.images],
            "explanations": _plain(self.explanations),  # type: ignore[arg-type]
            "metrics_info": {key: asdict(info) for key, info in self.metrics_info.items()},
            "units": {key: units.to_json() for key, units in self.units.items()},
            "metrics": self.metrics,
            "details": self.details.to_json(),
            "notes": self.notes,
            "summary": {
                metric: _nested(by_method, lambda groups: {
                    group: stats.to_json() for group, stats in groups.items()
                })
                for metric, by_method in self.summary.items()
            },
            "claims": [claim.to_json() for claim in self.claims],
            "timings": self.timings,
        })

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvaluationResults:
        """Read ``results.json``'s values back."""
        return cls(
            config=RunConfig.from_json(data["config"]),
            images=[ImageResult.from_json(image) for image in data["images"]],
            explanations=_nested(data["explanations"], ExplanationRecord.from_json),
            metrics_info={k: MetricInfo(**v) for k, v in data["metrics_info"].items()},
            units={k: Units.from_json(v) for k, v in data["units"].items()},
            metrics={k: _nested(v, _nan) for k, v in data["metrics"].items()},
            details=Details.from_json(data["details"]),
            notes=list(data["notes"]),
            summary={
                metric: _nested(by_method, lambda groups: {
                    group: Interval.from_json(stats) for group, stats in groups.items()
                })
                for metric, by_method in data["summary"].items()
            },
            claims=[ClaimResult.from_json(claim) for claim in data["claims"]],
            timings=dict(data["timings"]),
        )


@dataclass(frozen=True)
class Evaluation:
    """The outcome of :func:`~rsigradcam.app.evaluation.evaluate`.

    Attributes:
        results: Every number (written to ``results.json``).
        rgb: The images, (H, W, 3) uint8 each at the run's input size, in order.
        heatmaps: ``(method, layer) -> (N, H, W)`` float32 CPU heatmaps in [0, 1].
    """

    results: EvaluationResults
    rgb: list[np.ndarray]
    heatmaps: dict[tuple[str, str], Tensor]
