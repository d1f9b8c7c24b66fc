"""The JSON form of the metrics' results: the same keys, order and numbers as before.

Each result below is encoded with :func:`rsigradcam.serialization.encode` and compared,
as text, with ``tests/fixtures/json/<name>.json``, written by the ``to_dict`` methods
that the shared encoder replaced.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from rsigradcam.baselines import AutoBaselineFit
from rsigradcam.metrics import (
    ConfidenceResult,
    CurveResult,
    DtypeResult,
    GridPGResult,
    GridSet,
    SanityResult,
    SaturationSplit,
    SensitivityResult,
    StabilityResult,
    StepsResult,
)
from rsigradcam.serialization import encode

FIXTURES = Path(__file__).parents[1] / "fixtures" / "json"
NAN = math.nan


def _t(values: Any, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


def samples() -> dict[str, Any]:
    """The results whose JSON form the fixtures hold, by fixture name."""
    split = SaturationSplit(_t([True, False, True], torch.bool), _t([0.995, 0.5, 0.999]), 0.99)
    dtype = DtypeResult(_t([1e-7, 2.5e-6, NAN]), _t([1e-8, 3e-7, 0.0]), _t([1.0, 0.9999, NAN]), 50)
    steps = StepsResult([8, 16], 512, _t([[0.1, 0.2, 0.3], [0.01, 0.02, 0.03]]),
                        _t([[0.9, 0.8, 0.7], [0.99, 0.98, 0.97]]))
    noise = SensitivityResult(_t([0.05, 0.1, 0.2]), _t([0.01, 0.02, 0.04]), 0.02, 5, 0)
    return {
        "saturation_split": split,
        "dtype_result": dtype,
        "steps_result": steps,
        "sensitivity_result": noise,
        "stability_result": StabilityResult(dtype, steps, noise, split, _t([3, 1, 4], torch.long)),
        "sanity_result": SanityResult(["original", "fc", "conv"],
                                      _t([[1.0, 1.0], [0.5, NAN], [0.1, -0.2]]),
                                      _t([2, 0], torch.long), True, [[], ["fc"], ["fc", "conv"]]),
        "confidence_result": ConfidenceResult(
            _t([0.8, 0.4]), _t([0.2, 0.6]), _t([75.0, 0.0]), _t([False, True], torch.bool),
            _t([1, 2], torch.long), "black"),
        "grid_set": GridSet(torch.zeros(1, 3, 4, 4), _t([[1, 2, 3, 4]], torch.long),
                            _t([[0, 1, 2, 3]], torch.long),
                            _t([[0.96, 0.97, 0.98, 0.99]], torch.float32), (2, 2)),
        "gridpg_result": GridPGResult(_t([[0.5, 0.25, 0.0, 1.0]]), _t([[1, 2, 3, 4]], torch.long)),
        "curve_result": CurveResult("deletion", _t([[0.9, 0.5, 0.1], [0.8, NAN, 0.2]]),
                                    _t([0.0, 0.5, 1.0]), _t([0.5, 0.45]), _t([7, 9], torch.long),
                                    "blur", 224),
        "auto_baseline_fit": AutoBaselineFit(torch.zeros(3, 2, 2), 0.93, 0.0011, 3,
                                             (0.5, 0.25, 0.125)),
        "auto_baseline_fit_no_steps": AutoBaselineFit(torch.zeros(3, 2, 2), 0.93, 0.93, 0, ()),
    }


def fixture_text(name: str) -> str:
    return (FIXTURES / f"{name}.json").read_text(encoding="utf-8")


def as_text(value: Any) -> str:
    """The fixtures' JSON text: one space of indent, NaN as ``NaN``, a final newline."""
    return json.dumps(value, indent=1) + "\n"


@pytest.mark.parametrize("name", sorted(samples()))
def test_results_encode_as_before(name: str) -> None:
    assert as_text(encode(samples()[name])) == fixture_text(name)
