"""The statistics of an evaluation: intervals, paired measures, verdicts, bins, accuracy.

Example:
    >>> Interval(3, 1.0, 0.5, 1.5).to_json()
    {'n': 3, 'mean': 1.0, 'low': 0.5, 'high': 1.5}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rsigradcam.app.evaluation.options import Better, Verdict
from rsigradcam.app.evaluation.records import Record

__all__ = [
    "Accuracy",
    "BinRow",
    "ClaimResult",
    "Interval",
    "LayerVerdict",
    "Measure",
    "Summary",
]


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


@dataclass
class Measure:
    """One metric's paired comparison, an RSI-Grad-CAM arm minus a Grad-CAM arm, on a group.

    Attributes:
        rsi, gradcam: The two arms' means on the group's units.
        difference: The mean difference and its 95 % paired bootstrap interval.
        verdict: Whether the difference supports "RSI is better" (after Holm's adjustment
            for the measures on all units).
        p_value: The bootstrap p-value of "no difference" (``None``: under two units).
        p_holm: ``p_value`` adjusted by Holm over the confirmatory family (the measures on
            all units of every claim, layer and comparison); ``None`` for the exploratory
            saturated and unsaturated groups.
    """

    metric: str
    group: str
    better: Better
    rsi: float
    gradcam: float
    difference: Interval
    verdict: Verdict
    p_value: float | None = None
    p_holm: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The fields, with the interval's ``n, mean, low, high`` inline."""
        return {"metric": self.metric, "group": self.group, "better": self.better,
                "rsi": self.rsi, "gradcam": self.gradcam, **self.difference.to_json(),
                "verdict": self.verdict, "p_value": self.p_value, "p_holm": self.p_holm}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measure:
        """Read :meth:`to_json`'s values back."""
        return cls(data["metric"], data["group"], data["better"], data["rsi"], data["gradcam"],
                   Interval.from_json(data), data["verdict"], data.get("p_value"),
                   data.get("p_holm"))


@dataclass(frozen=True)
class BinRow:
    """A comparison's mean difference on the units whose probability p lies in one bin."""

    arm: str
    versus: str
    metric: str
    layer: str
    bin: str
    difference: Interval

    def to_json(self) -> dict[str, Any]:
        """The fields, with the interval's ``n, mean, low, high`` inline."""
        return {"arm": self.arm, "versus": self.versus, "metric": self.metric,
                "layer": self.layer, "bin": self.bin, **self.difference.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BinRow:
        """Read :meth:`to_json`'s values back."""
        return cls(data["arm"], data["versus"], data["metric"], data["layer"], data["bin"],
                   Interval.from_json(data))


@dataclass(frozen=True)
class Accuracy(Record):
    """The model's accuracy on the labelled images of the run."""

    labelled: int
    top1: int
    top5: int

    @property
    def line(self) -> str:
        """``top-1 75.2 % (376 of 500), top-5 ...``."""
        share = 100 / max(self.labelled, 1)
        return (f"top-1 {self.top1 * share:.1f} % ({self.top1} of {self.labelled}), "
                f"top-5 {self.top5 * share:.1f} % ({self.top5} of {self.labelled})")


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
    arm: str = "rsi"
    versus: str = "gradcam"
    comparisons: int = 0

    @property
    def comparison(self) -> str:
        """``"rsi vs gradcam"``."""
        return f"{self.arm} vs {self.versus}"

    def verdict_line(self) -> str:
        """One line: ``"focus: blocks.5 holds, head does not hold"`` (and the arms)."""
        layers = ", ".join(f"{layer} {entry.verdict}" for layer, entry in self.layers.items())
        arms = "" if (self.arm, self.versus) == ("rsi", "gradcam") else f" ({self.comparison})"
        return f"{self.key}{arms}: {layers or 'not tested (needs rsi and gradcam)'}"

    def to_json(self) -> dict[str, Any]:
        """Plain Python values, ready for JSON."""
        layers = {layer: entry.to_json() for layer, entry in self.layers.items()}
        return {"key": self.key, "claim": self.claim, "arm": self.arm, "versus": self.versus,
                "comparisons": self.comparisons, "layers": layers}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClaimResult:
        """Read :meth:`to_json`'s values back."""
        layers = {k: LayerVerdict.from_json(v) for k, v in data["layers"].items()}
        return cls(data["key"], data["claim"], layers, data.get("arm", "rsi"),
                   data.get("versus", "gradcam"), data.get("comparisons", 0))
