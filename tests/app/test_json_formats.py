"""The application's JSON files keep their form: ``results.json``, ``run.json``, the
summaries of ``explain`` and the page's path curve.

Each value below is encoded with :func:`rsigradcam.serialization.encode` and compared, as
text, with ``tests/fixtures/json/<name>.json``, written by the ``to_json`` / ``from_json``
methods that the shared encoder and decoder replaced; the decodable ones are read back
from the fixture and written out again, unchanged.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rsigradcam.app.dataset.parameters import RunParameters
from rsigradcam.app.errors import InputError
from rsigradcam.app.evaluation.options import EvaluationOptions, MetricInfo
from rsigradcam.app.evaluation.results import (
    Accuracy,
    BinRow,
    ClaimResult,
    Curves,
    CurveSet,
    Details,
    DtypeRecord,
    EvaluationResults,
    ExplanationRecord,
    GridDetails,
    ImageResult,
    Interval,
    LayerVerdict,
    Measure,
    NoiseRecord,
    RunConfig,
    SanityDetails,
    SpreadRecord,
    StabilityDetails,
    Units,
)
from rsigradcam.app.evaluation.storage import load_results
from rsigradcam.app.explain import ClassScore
from rsigradcam.app.settings import InputFormat, Variants
from rsigradcam.app.web.results import PathCurve
from rsigradcam.files import finite, save_json
from rsigradcam.metrics import DtypeResult, SensitivityResult, StepsResult
from rsigradcam.serialization import decode, encode

FIXTURES = Path(__file__).parents[1] / "fixtures" / "json"
NAN = math.nan


def _config(layers: list[str]) -> RunConfig:
    options = EvaluationOptions(images=Path("photos"), layers=tuple(layers),
                                methods=("rsi", "gradcam"), max_images=4, noise_radius=0.02,
                                preset="claims", mean=None, std=None)
    return RunConfig(options, layers, "1.2.3", "2.5.1", "3.12.3", "ab" * 32, 2048.0, 8, 0.99)


def _details() -> Details:
    curves = {"rsi": {"head": [[0.9, 0.5, NAN]]}, "random": {"head": [[0.9, 0.6, 0.2]]}}
    return Details(
        curves=Curves(224, CurveSet([0.0, 0.5, 1.0], curves), CurveSet([0.0, 0.5, 1.0], curves)),
        gridpg=GridDetails(0.9, [["a.jpg", "b.jpg", "c.jpg", "d.jpg"]], [224, 224],
                           [[0, 0, 224, 224]], [[1, 2, 3, 4]], [[0, 1, 2, 3]],
                           [[0.99, 0.98, 0.97, 0.96]]),
        sanity=None,
        stability=StabilityDetails(
            [8, 16], 512, ["a.jpg"],
            {"rsi": {"head": DtypeRecord(50, [1e-7, NAN], [1e-8, 0.0], [1.0, 0.99])}},
            {"rsi": {"head": NoiseRecord(0.02, 5, 0, [0.1, 0.2], [0.01, 0.02])}},
            {"rsi": {"head": SpreadRecord([8, 16], 512, [[0.1], [0.01]], [[0.9], [0.99]])}},
        ),
    )


def evaluation_results() -> EvaluationResults:
    interval = Interval(4, 0.25, 0.1, 0.4)
    measure = Measure("focus", "all", "higher", 0.6, 0.35, interval, "holds", 0.01, 0.02)
    empty = Measure("focus", "saturated", "higher", NAN, 0.3, Interval(1, NAN, None, None),
                    "inconclusive")
    return EvaluationResults(
        config=_config(["head"]),
        images=[ImageResult("a.jpg", "photos/a.jpg", 281, "tabby", 0.7, 0.7, False, 281, 281,
                            True, True),
                ImageResult("b.jpg", "photos/b.jpg", 1, "goldfish", 0.999, 0.999, True)],
        explanations={"rsi": {"head": ExplanationRecord([0.7, 0.9], [0.001, 0.0],
                                                        [0.01, NAN], 51)}},
        metrics_info={"focus": MetricInfo("Focus", "higher"),
                      "gridpg": MetricInfo("GridPG", "higher", "cell")},
        units={"focus": Units("image", ["a.jpg", "b.jpg"], [False, True], [0.7, 0.999],
                              [True, False]),
               "sanity_spearman": Units("image", ["a.jpg"], [False])},
        metrics={"focus": {"rsi": {"head": [0.5, NAN]}, "gradcam": {"head": [0.25, 0.5]}}},
        details=_details(),
        notes=["a note"],
        summary={"focus": {"rsi": {"head": {"all": interval, "saturated": Interval(0, None, None,
                                                                                   None)}}}},
        claims=[ClaimResult("focus", "RSI focuses", {"head": LayerVerdict([measure, empty],
                                                                          "holds")},
                            comparisons=2),
                ClaimResult("none", "untested", {}, "rsi+guided", "gradcam")],
        timings={"setup": 1.5, "total": 12.25},
        arms={"rsi": "RSI-Grad-CAM (softmax)"},
        p_bins=[BinRow("rsi", "gradcam", "focus", "head", "[0.9, 1]", interval)],
        accuracy=Accuracy(2, 1, 2),
    )


def run_parameters() -> RunParameters:
    return RunParameters(
        "/data/photos", 3, "cd" * 32, "efficientnet_lite0", "ef" * 32, 1000, ("blocks.10",),
        ("rsi", "ig"), (("rsi", "blocks.10"), ("ig", "input")), 50, "softmax", "black",
        "trapezoid", True, False, (224, 320), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), (224, 320),
        "uint8", 8, 256, "cpu", 2048.0, "1.2.3",
    )


#: A ``run.json`` ``"parameters"`` from before the variants and the normalisation were
#: recorded: a square ``input_size`` as one number, no ``grad_relu``, ``mean`` or ``std``.
LEGACY_PARAMETERS: dict[str, Any] = {
    "source": "/data/photos", "images": 2, "images_sha256": "0" * 64, "model": "m.pt",
    "model_sha256": "1" * 64, "num_classes": 10, "layers": ["conv"], "methods": ["rsi"],
    "explanations": [["rsi", "conv"]], "steps": 20, "output": "logits", "baseline": "black",
    "rule": "trapezoid", "input_size": 64, "heatmap_size": [64, 64],
    "heatmap_dtype": "float16", "batch_size": 4, "shard_size": 16, "device": "cpu",
    "memory_budget_mb": 512, "version": "0.9.0",
}


def samples() -> dict[str, Any]:
    """The values whose JSON form the fixtures hold, by fixture name."""
    return {
        "evaluation_results": evaluation_results(),
        "sanity_details": SanityDetails(["original", "fc"], ["a.jpg", "b.jpg"],
                                        {"rsi": {"head": [[1.0, NAN], [0.5, 0.25]]}}),
        "evaluation_options": EvaluationOptions(images=Path("photos"), max_images=4),
        "evaluation_options_default": EvaluationOptions(),
        "run_parameters": run_parameters(),
        "input_format": InputFormat((16, 24), None, None),
        "variants": Variants(grad_relu=True),
        "class_score": ClassScore(281, "tabby", 0.75),
        "class_score_unnamed": ClassScore(3, None, 0.5),
        "path_curve": PathCurve(np.array([0.0, 0.5, 1.0]), np.array([0.1, np.nan, 0.9]),
                                {"rsi": np.array([0.0, 1.0])}),
    }


def fixture_text(name: str) -> str:
    return (FIXTURES / f"{name}.json").read_text(encoding="utf-8")


def as_text(value: Any) -> str:
    """The fixtures' JSON text: one space of indent, NaN as ``NaN``, a final newline."""
    return json.dumps(value, indent=1) + "\n"


#: The fixtures that :func:`decode` reads back, and the classes they are read into.
DECODABLE = {
    "evaluation_results": EvaluationResults,
    "sanity_details": SanityDetails,
    "evaluation_options": EvaluationOptions,
    "evaluation_options_default": EvaluationOptions,
    "run_parameters": RunParameters,
    "input_format": InputFormat,
    "variants": Variants,
    "class_score": ClassScore,
    "class_score_unnamed": ClassScore,
}


@pytest.mark.parametrize("name", sorted(samples()))
def test_values_encode_as_before(name: str) -> None:
    value = samples()[name]
    encoded = finite(encode(value)) if name == "evaluation_results" else encode(value)
    assert as_text(encoded) == fixture_text(name)


@pytest.mark.parametrize("name", sorted(DECODABLE))
def test_files_read_back_and_write_out_the_same(name: str) -> None:
    data = json.loads(fixture_text(name))
    value = decode(DECODABLE[name], data)
    encoded = encode(value)
    if name == "evaluation_results":
        encoded = finite(encoded)
    assert as_text(encoded) == fixture_text(name)


def test_results_read_back_equal_the_results_written() -> None:
    """NaN written as ``null`` is NaN again: the values read back are the values written."""
    results = evaluation_results()
    again = decode(EvaluationResults, json.loads(fixture_text("evaluation_results")))
    assert again.config == results.config and again.images == results.images
    first = again.claims[0].layers["head"].measures[0]
    assert first == results.claims[0].layers["head"].measures[0]
    assert math.isnan(again.metrics["focus"]["rsi"]["head"][1])
    curves = again.details.curves
    assert curves is not None and math.isnan(curves.deletion.curves["rsi"]["head"][0][2])
    assert again.details.sanity is None and again.accuracy == Accuracy(2, 1, 2)
    assert isinstance(again.config.options.images, Path)
    assert again.config.options.stability_steps == (8, 16, 32, 50, 100)


def test_an_older_run_json_reads_with_the_defaults_of_its_time() -> None:
    """No ``grad_relu``, ``guided``, ``mean`` or ``std``, and a square size as one number."""
    params = decode(RunParameters, LEGACY_PARAMETERS)
    assert params.input_size == (64, 64) and not params.grad_relu and not params.guided
    assert as_text(encode(params)) == fixture_text("run_parameters_legacy")


def test_records_of_the_library_results_keep_their_values() -> None:
    """The stability stage's records, made from the library's results (the same results as
    in ``tests/metrics/test_result_json.py``)."""
    def t(values: Any) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float64)

    dtype = DtypeResult(t([1e-7, 2.5e-6, NAN]), t([1e-8, 3e-7, 0.0]), t([1.0, 0.9999, NAN]), 50)
    steps = StepsResult([8, 16], 512, t([[0.1, 0.2, 0.3], [0.01, 0.02, 0.03]]),
                        t([[0.9, 0.8, 0.7], [0.99, 0.98, 0.97]]))
    noise = SensitivityResult(t([0.05, 0.1, 0.2]), t([0.01, 0.02, 0.04]), 0.02, 5, 0)
    found = {
        "dtype": decode(DtypeRecord, encode(dtype)),
        "noise": decode(NoiseRecord, encode(noise)),
        "spread": decode(SpreadRecord, encode(steps)),
    }
    assert as_text(encode(found)) == fixture_text("records_of_stability")


def test_older_results_without_the_later_keys_read_with_their_defaults() -> None:
    data = json.loads(fixture_text("evaluation_results"))
    for key in ("arms", "p_bins", "accuracy"):
        del data[key]
    for claim in data["claims"]:
        del claim["arm"], claim["versus"], claim["comparisons"]
    results = decode(EvaluationResults, data)
    assert results.arms == {} and results.p_bins == [] and results.accuracy is None
    assert [(c.arm, c.versus, c.comparisons) for c in results.claims] == [("rsi", "gradcam", 0)] * 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["config"].pop("model_digest"), "config: missing key 'model_digest'"),
        (lambda d: d["config"].update(steps="50"), "config.steps: expected an integer, got '50'"),
        (lambda d: d["claims"][0]["layers"]["head"].update(verdict="maybe"),
         "claims[0].layers.head.verdict: expected 'holds' or 'does not hold' or 'inconclusive'"),
        (lambda d: d["images"][1].update(top1=True), "images[1].top1: expected an integer"),
        (lambda d: d.update(units=[]), "units: expected an object, got []"),
    ],
)
def test_a_malformed_results_json_is_refused_in_one_line(
    tmp_path: Path, change: Any, message: str
) -> None:
    data = json.loads(fixture_text("evaluation_results"))
    change(data)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InputError) as error:
        load_results(path)
    text = str(error.value)
    prefix = f"'{path}' is not the results of `rsigradcam evaluate` ({message}"
    assert text.startswith(prefix) and "\n" not in text
    path.write_text("{", encoding="utf-8")
    with pytest.raises(InputError, match=r"is not readable JSON"):
        load_results(path)


def test_read_results_reads_a_written_file(tmp_path: Path) -> None:
    path = save_json(finite(encode(evaluation_results())), tmp_path / "results.json")
    assert as_text(finite(encode(load_results(path)))) == fixture_text("evaluation_results")
