"""``rsigradcam explain --baseline``: names, auto, and saved files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from rsigradcam.app.cli import app
from rsigradcam.baselines import AutoBaseline

runner = CliRunner()

TINY = "tests.tiny_model:build"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(*args: str):
    base = ["explain", "a.png", "--model", TINY, "--steps", "4", "-l", "2"]
    return runner.invoke(app, [*base, *args])


@pytest.mark.parametrize("name", ["black", "zeros", "blur", "noise", "uniform"])
def test_named_baselines(workdir: Path, name: str) -> None:
    result = _run("--baseline", name, "--out", name)
    assert result.exit_code == 0, result.output
    heat = np.load(workdir / name / "a_2_rsi.npy")
    assert heat.shape == (224, 224) and np.isfinite(heat).all()
    assert json.loads((workdir / name / "a.json").read_text())["baseline"] == name


def test_auto_baseline_reports_saves_and_reloads(workdir: Path) -> None:
    result = _run("--baseline", "auto", "--save-baseline", "auto.pt", "--out", "auto")
    assert result.exit_code == 0, result.output
    assert "Auto baseline (3, 224, 224)" in result.output
    assert "Saved the auto baseline to auto.pt" in result.output
    fit = AutoBaseline.from_file(workdir / "auto.pt").fits[(3, 224, 224)]
    assert fit.max_prob_after < fit.max_prob_before
    saved = _run("--baseline", "auto.pt", "--out", "saved")
    assert saved.exit_code == 0, saved.output
    assert np.array_equal(
        np.load(workdir / "auto" / "a_2_rsi.npy"), np.load(workdir / "saved" / "a_2_rsi.npy")
    )
    summary = json.loads((workdir / "saved" / "a.json").read_text())
    assert summary["explanations"][0]["layer"] == "2"
    assert summary["baseline"] == "auto.pt"  # as the user named it
    assert json.loads((workdir / "auto" / "a.json").read_text())["baseline"] == "auto"
    refused = _run("--baseline", "black", "--save-baseline", "x.pt", "--out", "x")
    assert refused.exit_code == 2 and "--save-baseline needs --baseline auto" in refused.output


def test_tensor_file_baseline(workdir: Path) -> None:
    torch.save(torch.zeros(3, 224, 224), workdir / "zeros.pt")
    by_file = _run("--baseline", "zeros.pt", "--out", "f")
    by_name = _run("--baseline", "zeros", "--out", "n")
    assert by_file.exit_code == 0 and by_name.exit_code == 0, by_file.output
    by_file_map = np.load(workdir / "f" / "a_2_rsi.npy")
    assert np.array_equal(by_file_map, np.load(workdir / "n" / "a_2_rsi.npy"))


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("grey", "unknown baseline 'grey'"),
        ("missing.pt", "does not exist"),
        ("bad.pt", "holds a tensor of shape (2, 2)"),
    ],
)
def test_bad_baselines_exit_2_with_one_line(workdir: Path, value: str, fragment: str) -> None:
    torch.save(torch.zeros(2, 2), workdir / "bad.pt")
    result = _run("--baseline", value, "--out", "never")
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (workdir / "never").exists()
