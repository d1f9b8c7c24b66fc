"""Hugging Face models: completeness where the residual stream bypasses the layer, and
``layer="auto"``'s suggestion in the model's own names.

Tiny models built from configs with random weights (tests/integrations/hf_models.py);
nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from rsigradcam import RSIGradCAM
from rsigradcam.app.cli import app
from rsigradcam.app.evaluation import read_results
from rsigradcam.app.web.compute import check_options, open_explorer
from rsigradcam.app.web.results import explain_image
from rsigradcam.app.web.views import gallery, results_table, summary
from rsigradcam.methods import BYPASSED_LAYER_REASON
from tests.integrations import hf_models
from tests.integrations.hf_models import CNN_SIZE, VIT_SIZE

runner = CliRunner()
MODULE = "tests.integrations.hf_models"
NORM = "vit.layers.1.layernorm_before"
#: Inside the last basic block of the ResNet: its shortcut bypasses the second conv layer.
INNER = "resnet.encoder.stages.3.layers.0.layer.1"
STAGE = "resnet.encoder.stages.3"
CLI = ["--size", str(CNN_SIZE), "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5"]


def _images(n: int, size: int) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(3))


def test_a_vit_norm_in_the_residual_stream_has_no_completeness() -> None:
    vit = hf_models.vit()
    exp = RSIGradCAM(vit, NORM, steps=4, reshape_transform="tokens")(_images(2, VIT_SIZE))
    assert torch.isnan(exp.completeness_error).all()
    assert exp.completeness_note == BYPASSED_LAYER_REASON


def test_layer_auto_with_tokens_suggests_the_models_own_layer_name() -> None:
    vit = hf_models.vit()
    with pytest.raises(ValueError, match=r"layer='auto' cannot choose a token layer") as err:
        RSIGradCAM(vit, "auto", steps=2, reshape_transform="tokens")(_images(1, VIT_SIZE))
    assert f"'{NORM}' here" in str(err.value)
    assert "blocks.11" not in str(err.value)


def test_a_hugging_face_resnet_keeps_completeness_at_a_stage_but_not_inside_a_block() -> None:
    found = RSIGradCAM(hf_models.resnet(), [INNER, STAGE], steps=4)(_images(1, CNN_SIZE))
    assert found[INNER].completeness_note == BYPASSED_LAYER_REASON
    assert torch.isnan(found[INNER].completeness_error).all()
    assert found[STAGE].completeness_note == ""
    assert torch.isfinite(found[STAGE].completeness_error).all()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two random 40 x 48 RGB photos."""
    folder = tmp_path_factory.mktemp("bypass_photos")
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
            folder / f"photo{i}.png"
        )
    return folder


def test_explain_writes_null_with_the_reason_and_prints_it(photos: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "explain", str(photos / "photo0.png"), "--model", f"{MODULE}:resnet",
            "-l", INNER, "-l", STAGE, "--method", "rsi", "--steps", "3", *CLI,
            "--out", str(tmp_path),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "photo0.json").read_text())
    entries = {e["layer"]: e for e in summary["explanations"]}
    assert entries[INNER]["completeness_error"] is None
    assert entries[INNER]["completeness_note"] == BYPASSED_LAYER_REASON
    assert isinstance(entries[STAGE]["completeness_error"], float)
    assert entries[STAGE]["completeness_note"] is None
    assert f"rsi at {INNER}: {BYPASSED_LAYER_REASON}" in summary["warnings"]
    assert f"{INNER} n/a" in result.output
    assert BYPASSED_LAYER_REASON in result.output.replace("\n", " ")


@pytest.mark.slow
def test_explain_dataset_and_evaluate_record_null_with_the_reason(
    photos: Path, tmp_path: Path
) -> None:
    common = ["--model", f"{MODULE}:resnet", "-l", INNER, "-l", STAGE, "--steps", "3", *CLI]
    out = tmp_path / "dataset"
    result = runner.invoke(
        app,
        ["explain-dataset", str(photos), "--out", str(out), *common, "--method", "rsi",
         "--threads", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for line in (out / "manifest.jsonl").read_text().splitlines():
        entries = {e["layer"]: e for e in json.loads(line)["explanations"]}
        assert entries[INNER]["completeness_error"] is None
        assert entries[INNER]["completeness_note"] == BYPASSED_LAYER_REASON
        assert entries[STAGE]["completeness_note"] is None
    report = tmp_path / "evaluation"
    result = runner.invoke(
        app,
        ["evaluate", "--images", str(photos), "--out", str(report), *common,
         "--method", "rsi,gradcam", "--quick", "--curve-points", "3", "--max-grids", "0",
         "--bootstrap", "50"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    results = read_results(report)
    rsi = results["explanations"]["rsi"]
    assert rsi[INNER]["completeness_error"] == [None, None]
    assert rsi[INNER]["completeness_note"] == BYPASSED_LAYER_REASON
    assert "completeness_note" not in rsi[STAGE]
    assert f"rsi at {INNER}: {BYPASSED_LAYER_REASON}" in results["notes"]


def test_the_explorer_shows_the_reason(photos: Path, tmp_path: Path) -> None:
    explorer = open_explorer(f"{MODULE}:resnet", work_dir=tmp_path, samples=None)
    options = check_options(explorer, [INNER, STAGE], ["rsi"], 3)
    result = explain_image(explorer, str(photos / "photo0.png"), options)
    data = summary(result.found, INNER, "rsi")
    assert data["completeness_error"] is None
    assert data["completeness_note"] == BYPASSED_LAYER_REASON
    assert summary(result.found, STAGE, "rsi")["completeness_note"] is None
    captions = [caption for _, caption in gallery(result)]
    assert any(c.startswith(INNER) and "completeness n/a" in c for c in captions)
    assert BYPASSED_LAYER_REASON in results_table(result)
