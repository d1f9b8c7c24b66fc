"""The statistics of an evaluation: intervals, paired measures, verdicts, bins, accuracy.

Their JSON form (``results.json``) is :func:`rsigradcam.serialization.encode`'s: the fields
in order, an interval's ``n, mean, low, high`` inline in a measure or a bin row.

Example:
    >>> from rsigradcam.serialization import encode
    >>> encode(Interval(3, 1.0, 0.5, 1.5))
    {'n': 3, 'mean': 1.0, 'low': 0.5, 'high': 1.5}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from rsigradcam.app.evaluation.options import Better, Verdict
from rsigradcam.serialization import JsonKeys, json_options

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
class Interval:
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
    difference: Interval = field(metadata=json_options(inline=True))
    verdict: Verdict
    p_value: float | None = None
    p_holm: float | None = None


@dataclass(frozen=True)
class BinRow:
    """A comparison's mean difference on the units whose probability p lies in one bin."""

    arm: str
    versus: str
    metric: str
    layer: str
    bin: str
    difference: Interval = field(metadata=json_options(inline=True))


@dataclass(frozen=True)
class Accuracy:
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


@dataclass(frozen=True)
class ClaimResult:
    """A claim of the paper and its verdict per layer (no layers: not tested)."""

    key: str
    claim: str
    layers: dict[str, LayerVerdict]
    arm: str = "rsi"
    versus: str = "gradcam"
    comparisons: int = 0

    # The JSON form (rsigradcam.serialization.encode): these keys, in this order.
    __json_keys__: ClassVar[JsonKeys] = (
        "key", "claim", "arm", "versus", "comparisons", "layers",
    )

    @property
    def comparison(self) -> str:
        """``"rsi vs gradcam"``."""
        return f"{self.arm} vs {self.versus}"

    def verdict_line(self) -> str:
        """One line: ``"focus: blocks.5 holds, head does not hold"`` (and the arms)."""
        layers = ", ".join(f"{layer} {entry.verdict}" for layer, entry in self.layers.items())
        arms = "" if (self.arm, self.versus) == ("rsi", "gradcam") else f" ({self.comparison})"
        return f"{self.key}{arms}: {layers or 'not tested (needs rsi and gradcam)'}"
