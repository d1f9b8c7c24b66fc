"""The evaluation's RSI arms that differ only in the authors' variants share their passes."""

from __future__ import annotations

import torch

from rsigradcam import RSIGradCAM
from rsigradcam.app.evaluation.stages import MethodRunner, share_passes
from rsigradcam.app.runs.parameters import FIXED_BUDGET_MB
from tests.helpers import make_case


def _runner(name: str, output: str, notes: list[str], **variants: bool) -> MethodRunner:
    options = {"variants": {"grad_relu": False, "guided": False, **variants}}
    return MethodRunner(name, ["conv", "features"], 5, output, notes, options)  # type: ignore[arg-type]


def test_one_call_fills_the_variants_and_equals_separate_calls() -> None:
    model, images = make_case(14)
    targets = torch.tensor([0, 1, 2])
    notes: list[str] = []
    runners = {
        "rsi": _runner("rsi", "softmax", notes),
        "rsi+grad_relu": _runner("rsi", "softmax", notes, grad_relu=True),
        "rsi+guided": _runner("rsi", "softmax", notes, guided=True),
        "rsi@logits": _runner("rsi", "logits", notes),
        "gradcam": _runner("gradcam", "softmax", notes),
    }
    share_passes(runners.values())
    assert {id(r) for r in runners["rsi"].shared} == {
        id(runners["rsi+grad_relu"]), id(runners["rsi+guided"])
    }
    assert runners["rsi@logits"].shared == [] and runners["gradcam"].shared == []
    runners["rsi+grad_relu"](model, images, targets)  # one call: every softmax variant
    for key in ("rsi", "rsi+grad_relu", "rsi+guided"):
        assert len(runners[key]._cache) == 1, key
    assert not runners["rsi@logits"]._cache
    for key, variant in (("rsi", {}), ("rsi+grad_relu", {"grad_relu": True}),
                         ("rsi+guided", {"guided": True})):
        found = runners[key](model, images, targets)
        alone = RSIGradCAM(
            model, ["conv", "features"], steps=5, memory_budget_mb=FIXED_BUDGET_MB, **variant
        )(images, targets)
        for layer in ("conv", "features"):
            assert torch.equal(found[layer].heatmap, alone[layer].heatmap), (key, layer)
