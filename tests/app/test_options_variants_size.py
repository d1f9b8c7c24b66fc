"""Issue 16 items 3, 4, 8, 11 and 12 in the command line.

The authors' variants (``--grad-relu``, ``--guided``) on explain, explain-dataset and
evaluate; the input size and normalisation (``--size``, ``--mean``/``--std``,
``--no-normalize``) on every command that loads a model, checked with a model that only
takes 32x32 images; torch threads that honour ``OMP_NUM_THREADS``; a resume that ignores
the parameters the chosen methods do not use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner, Result

from rsigradcam.app import outputs as explaining
from rsigradcam.app import threads
from rsigradcam.app.cli import app
from rsigradcam.app.dataset import run as dataset_run
from rsigradcam.app.errors import InputError
from rsigradcam.app.evaluation import EvaluationOptions, read_results
from rsigradcam.app.explain import ImageExplainer
from rsigradcam.app.loading.models import load_model
from rsigradcam.app.settings import (
    NO_COMPLETENESS_REASON,
    InputFormat,
    Variants,
    input_format,
    parse_size,
)
from rsigradcam.app.threads import torch_threads
from rsigradcam.constants import IMAGENET_MEAN, IMAGENET_STD
from rsigradcam.methods import RSIGradCAM
from rsigradcam.serialization import encode

runner = CliRunner()
CIFAR = "tests.dataset_model:cifar_cnn"
SMALL = "tests.dataset_model:small_cnn"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three random 40x48 PNGs in a folder."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
            folder / f"img{i}.png"
        )
    return folder


def _invoke(*args: str) -> Result:
    return runner.invoke(app, list(args))


def _error_line(result: Result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


# --------------------------------------------------------------------------------------
# --size, --mean, --std, --no-normalize
# --------------------------------------------------------------------------------------


def test_size_and_normalisation_are_parsed() -> None:
    assert parse_size("32") == (32, 32) and parse_size(" 224x320 ") == (224, 320)
    assert input_format() == InputFormat((224, 224), IMAGENET_MEAN, IMAGENET_STD)
    found = input_format("32", "0.5,0.5,0.5", "0.25, 0.25, 0.25")
    assert found.normalize == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert input_format("28", mean="0.5,0.4,0.3").std == IMAGENET_STD
    plain = input_format("16x24", no_normalize=True)
    assert plain.normalize is None
    assert plain.describe() == "16x24, not normalised (pixels in [0, 1])"
    assert encode(plain) == {"input_size": [16, 24], "mean": None, "std": None}
    tensor, rgb = plain.load(np.full((10, 40, 3), 255, dtype=np.uint8))
    assert tuple(tensor.shape) == (1, 3, 16, 24) and rgb.shape == (16, 24, 3)
    assert float(tensor.min()) == 1.0  # pixels in [0, 1], not normalised


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "big"], "error: --size must be one number or HxW (e.g. 224 or 224x320), "
                            "got 'big'"),
        (["--size", "0"], "error: --size 0: each side must be from 1 to 4096 pixels"),
        (["--mean", "0.5,0.5"], "error: --mean must be three numbers (R, G, B) separated by "
                                "commas, e.g. --mean 0.5,0.5,0.5; got '0.5,0.5'"),
        (["--std", "0.5,0,0.5"], "error: --std values must be positive, got '0.5,0,0.5'"),
        (["--no-normalize", "--std", "1,1,1"],
         "error: --no-normalize cannot be combined with --mean or --std"),
    ],
)
def test_bad_input_options_are_one_line_usage_errors(
    images: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    for command in (
        ["explain", str(images / "img0.png"), "--out", str(tmp_path / "out")],
        ["layers"],
    ):
        result = _invoke(*command, "--model", CIFAR, *args)
        assert result.exit_code == 2 and _error_line(result) == message
    assert not (tmp_path / "out").exists()


def test_a_model_that_fails_at_the_size_is_told_which_size_works() -> None:
    with pytest.raises(InputError) as caught:
        load_model(CIFAR)
    message = str(caught.value)
    assert message.startswith(f"model {CIFAR!r} fails on a 224x224 input (RuntimeError: ")
    assert message.endswith("; pass --size 32 if the model expects 32x32 images")
    assert "batch size" not in message
    assert load_model(CIFAR, size=(32, 32)).num_classes == 10


def test_layers_takes_the_size(tmp_path: Path) -> None:
    result = _invoke("layers", "--model", CIFAR)
    assert result.exit_code == 2
    assert "pass --size 32 if the model expects 32x32 images" in _error_line(result)
    result = _invoke("layers", "--model", CIFAR, "--size", "32")
    assert result.exit_code == 0, result.output
    assert "for a 32x32 image" in result.output
    assert any(line.startswith("act") and "8x32x32" in line for line in result.output.splitlines())


def test_explain_a_32x32_model_with_its_normalisation(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _invoke(
        "explain", str(images / "img0.png"), "--model", CIFAR, "--size", "32", "-l", "act",
        "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "--method", "rsi,gradcam",
        "--steps", "4", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "img0.json").read_text())
    assert summary["input_size"] == [32, 32]
    assert summary["mean"] == [0.5, 0.5, 0.5] and summary["std"] == [0.25, 0.25, 0.25]
    assert summary["grad_relu"] is False and summary["guided"] is False
    assert np.load(out / "img0_act_rsi.npy").shape == (32, 32)
    rsi = next(e for e in summary["explanations"] if e["method"] == "rsi")
    assert rsi["completeness_error"] is not None  # the default formula: completeness applies


def test_the_black_baseline_follows_the_normalisation() -> None:
    loaded = load_model(CIFAR, size=(32, 32))
    fmt = input_format("32", "0.5,0.5,0.5", "0.25,0.25,0.25")
    explainer = ImageExplainer(loaded, ["act"], ["rsi", "gradcam", "ig"], input_format=fmt)
    assert explainer.cams["rsi"].normalize == fmt.normalize
    assert explainer.cams["ig"].normalize == fmt.normalize
    plain = ImageExplainer(
        loaded, ["act"], ["rsi"], input_format=input_format("32", no_normalize=True)
    )
    assert plain.cams["rsi"].normalize is None


# --------------------------------------------------------------------------------------
# --grad-relu and --guided
# --------------------------------------------------------------------------------------


def test_variants_reach_rsi_only() -> None:
    loaded = load_model(SMALL)
    explainer = ImageExplainer(
        loaded, ["act"], ["rsi", "gradcam"], steps=2, variants=Variants(grad_relu=True)
    )
    rsi = explainer.cams["rsi"]
    assert isinstance(rsi, RSIGradCAM) and rsi.grad_relu and not rsi.guided
    assert not hasattr(explainer.cams["gradcam"], "grad_relu")
    assert Variants(guided=True).caption("rsi") == " (guided)"
    assert Variants(True, True).caption("rsi") == " (grad ReLU, guided)"
    assert Variants(True, True).caption("gradcam") == ""


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--grad-relu"], "error: --grad-relu applies only to rsi, which is not among the "
                          "chosen methods (gradcam, layercam); add --method rsi or drop "
                          "--grad-relu"),
        (["--grad-relu", "--guided"], "error: --grad-relu and --guided apply only to rsi, which "
                                      "is not among the chosen methods (gradcam, layercam); add "
                                      "--method rsi or drop --grad-relu and --guided"),
    ],
)
def test_variants_without_rsi_are_refused(
    images: Path, tmp_path: Path, flags: list[str], message: str
) -> None:
    commands = [
        ["explain", str(images / "img0.png"), "--out", str(tmp_path / "a")],
        ["explain-dataset", str(images), "--out", str(tmp_path / "b")],
        ["evaluate", "--images", str(images), "--out", str(tmp_path / "c")],
    ]
    for command in commands:
        result = _invoke(*command, "--model", SMALL, "--method", "gradcam,layercam", *flags)
        assert result.exit_code == 2 and _error_line(result) == message, command
    assert not any((tmp_path / name).exists() for name in "abc")


def test_explain_records_the_variant_and_nulls_completeness(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grids: list[str] = []
    save_grid = explaining.save_grid

    def capture(*args: Any, **kwargs: Any) -> Any:
        grids.append(repr((args, kwargs)))
        return save_grid(*args, **kwargs)

    monkeypatch.setattr(explaining, "save_grid", capture)
    out = tmp_path / "out"
    result = _invoke(
        "explain", str(images / "img1.png"), "--model", SMALL, "--layer", "act",
        "--method", "gradcam,rsi", "--steps", "3", "--grad-relu", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "img1.json").read_text())
    assert summary["grad_relu"] is True and summary["guided"] is False
    by_method = {e["method"]: e for e in summary["explanations"]}
    assert by_method["rsi"]["completeness_error"] is None
    assert by_method["gradcam"]["completeness_error"] is None  # never applies to Grad-CAM
    assert f"rsi: {NO_COMPLETENESS_REASON}" in summary["warnings"]
    assert len(grids) == 1 and "RSI-Grad-CAM (grad ReLU)" in grids[0]
    assert "Grad-CAM (grad ReLU)" not in grids[0].replace("RSI-Grad-CAM (grad ReLU)", "")


def test_explain_dataset_records_size_and_variant(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _invoke(
        "explain-dataset", str(images), "--out", str(out), "--model", CIFAR, "--size", "32",
        "--no-normalize", "--method", "rsi", "--guided", "--steps", "2", "--workers", "0",
        "--threads", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    params = run["parameters"]
    assert params["input_size"] == [32, 32] and params["heatmap_size"] == [32, 32]
    assert params["mean"] is None and params["std"] is None
    assert params["guided"] is True and params["grad_relu"] is False
    assert run["warnings"] == [f"rsi: {NO_COMPLETENESS_REASON}"]
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    assert all(e["completeness_error"] is None for line in lines for e in line["explanations"])
    with np.load(out / "shards" / "shard-00000.npz") as shard:
        heatmaps = [shard[k] for k in shard.files if k.startswith("heatmap")]
    assert heatmaps and all(h.shape[1:] == (32, 32) for h in heatmaps)


def test_evaluate_records_size_and_variant(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "evaluation"
    result = _invoke(
        "evaluate", "--images", str(images), "--out", str(out), "--model", CIFAR, "-l", "act",
        "--size", "32", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--method",
        "rsi,gradcam", "--grad-relu", "--steps", "2", "--no-sanity", "--no-stability",
        "--max-grids", "0", "--curve-points", "2", "--bootstrap", "20",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    found = read_results(out)
    config = found["config"]
    assert config["grad_relu"] is True and config["guided"] is False
    assert config["input_size"] == [32, 32]
    assert config["mean"] == [0.5, 0.5, 0.5] and config["std"] == [0.5, 0.5, 0.5]
    assert all(v is None for v in found["explanations"]["rsi"]["act"]["completeness_error"])
    assert f"rsi: {NO_COMPLETENESS_REASON}" in found["notes"]
    options = EvaluationOptions(grad_relu=True, input_size=(32, 32), mean=None, std=None)
    assert options.input_format.normalize is None and options.variants.options_for("rsi") == {
        "grad_relu": True, "guided": False,
    }


# --------------------------------------------------------------------------------------
# Threads and resuming
# --------------------------------------------------------------------------------------


def test_threads_honour_omp_num_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "usable_cpus", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert torch_threads(None, 2) == 4  # cores / processes
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert torch_threads(None, 2) == 1  # the user's explicit setting
    assert torch_threads(3, 2) == 3  # --threads overrides both
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    assert torch_threads(None, 2) == 4  # not a number: ignored


def test_explain_dataset_runs_with_the_omp_threads(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(threads, "usable_cpus", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    seen: list[int] = []
    monkeypatch.setattr(dataset_run, "_run", lambda *args: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    dataset_run.explain_dataset(
        dataset_run.DatasetOptions(images, tmp_path / "out", model=SMALL, methods=("gradcam",))
    )
    assert seen == [1] and torch.get_num_threads() == before


def test_a_resume_ignores_parameters_the_methods_do_not_use(
    images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    common = ["--model", SMALL, "--layer", "act", "--workers", "0", "--threads", "1"]
    first = _invoke("explain-dataset", str(images), "--out", str(out), *common,
                    "--method", "gradcam", "--steps", "3")
    assert first.exit_code == 0, first.output
    again = _invoke("explain-dataset", str(images), "--out", str(out), *common,
                    "--method", "gradcam", "--steps", "7")
    assert again.exit_code == 0, again.output
    assert "1 already done" in again.output

    rsi = tmp_path / "rsi"
    first = _invoke("explain-dataset", str(images), "--out", str(rsi), *common,
                    "--method", "rsi", "--steps", "3")
    assert first.exit_code == 0, first.output
    refused = _invoke("explain-dataset", str(images), "--out", str(rsi), *common,
                      "--method", "rsi", "--steps", "7")
    assert refused.exit_code == 2
    line = _error_line(refused)
    assert line.startswith(f"error: --out '{rsi}' holds a run with other parameters (")
    assert "steps 3 -> 7" in line
    refused = _invoke("explain-dataset", str(images), "--out", str(rsi), *common,
                      "--method", "rsi", "--steps", "3", "--grad-relu")
    assert refused.exit_code == 2 and "grad_relu False -> True" in _error_line(refused)
