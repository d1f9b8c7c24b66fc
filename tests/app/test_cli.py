"""The ``rsigradcam`` command line, in-process (typer's runner) and as a real subprocess."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from rsigradcam.app.cli import app
from rsigradcam.methods import METHODS, method_layers

runner = CliRunner()

# The cat's face in chelsea resized to 224x224 (x0, y0, x1, y1): from the left cheek to
# the right cheek, from the brow above the eyes to the chin. The forehead, the ears, the
# background on the right and the white chest at the bottom are outside (half the image).
CHELSEA_FACE = (24, 48, 176, 216)

# A small classifier with 4 classes and no class names, built by ``tinynet:build``.
TINY_MODULE = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=4, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def build():
    torch.manual_seed(0)
    return Tiny()
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with chelsea, a small photo, a file that is not an image and a cut JPEG."""
    from skimage import data

    folder = tmp_path_factory.mktemp("images")
    Image.fromarray(data.chelsea()).save(folder / "chelsea.png")
    Image.fromarray(data.coffee()).resize((160, 120)).save(folder / "coffee.jpg", quality=90)
    (folder / "notes.png").write_text("not an image\n")
    jpeg = (folder / "coffee.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "tinynet.py").write_text(TINY_MODULE)
    return folder


@pytest.fixture
def in_files(files: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the images folder, so that ``tinynet:build`` can be imported."""
    monkeypatch.chdir(files)
    return files


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def _layer_rows(stdout: str) -> dict[str, str]:
    """``rsigradcam layers`` output (after its header line) as {name: shape and note}
    (the module type, the second column, left out)."""
    rows = (line.split(None, 2) for line in stdout.splitlines()[1:])
    return {name: rest for name, _kind, rest in rows}


def _assert_one_clear_line(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    lines = _error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def _overlay_ok(path: Path) -> None:
    overlay = np.asarray(Image.open(path))
    assert overlay.shape == (224, 224, 3) and overlay.dtype == np.uint8
    assert overlay.std() > 10
    assert len(np.unique(overlay.reshape(-1, 3), axis=0)) > 1000  # not one colour


def _heatmap(path: Path) -> np.ndarray:
    heatmap = np.load(path)
    assert heatmap.shape == (224, 224) and heatmap.dtype == np.float32
    assert np.isfinite(heatmap).all() and heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    return heatmap


def _summary_ok(path: Path) -> dict:
    summary = json.loads(path.read_text())
    probabilities = [c["probability"] for c in summary["top5"]]
    assert len(probabilities) == 5
    assert all(0.0 <= p <= 1.0 for p in probabilities) and sum(probabilities) <= 1.0 + 1e-6
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0.0 <= summary["explained_class"]["probability"] <= 1.0
    assert math.isfinite(summary["seconds"]) and summary["seconds"] > 0
    for entry in summary["explanations"]:
        error = entry["completeness_error"]
        if entry["method"] == "rsi":
            assert math.isfinite(error) and error >= 0.0
            assert entry["steps"] == summary["steps"]
            assert entry["evaluations"] == summary["steps"] + 1
        else:
            assert error is None and entry["steps"] is None  # NaN is written as null
        assert 0.0 <= entry["score"] <= 1.0
        assert (path.parent / entry["overlay"]).is_file()
        assert (path.parent / entry["heatmap"]).is_file()
    return summary


# --------------------------------------------------------------------------------------
# explain: outputs
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chelsea_grid(files: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``rsigradcam explain`` on chelsea with three layers, Grad-CAM and RSI-Grad-CAM."""
    out = tmp_path_factory.mktemp("grid")
    layers = ["--layer", "blocks.5", "--layer", "blocks.10", "--layer", "head"]
    args = ["explain", str(files / "chelsea.png"), *layers, "--method", "gradcam", "-m", "rsi"]
    result = runner.invoke(app, [*args, "--steps", "8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "chelsea.png: Egyptian cat 285" in result.stdout
    return out


def test_explain_writes_overlays_heatmaps_summary_and_grid(chelsea_grid: Path) -> None:
    summary = _summary_ok(chelsea_grid / "chelsea.json")
    assert summary["explained_class"] == summary["top5"][0]
    assert summary["explained_class"]["class"] == "Egyptian cat"
    assert summary["layers"] == ["blocks.5", "blocks.10", "head"]
    assert summary["methods"] == ["gradcam", "rsi"]
    assert len(summary["explanations"]) == 6
    shapes = {e["layer"]: e["layer_shape"] for e in summary["explanations"]}
    assert shapes == {"blocks.5": [80, 14, 14], "blocks.10": [112, 14, 14], "head": [1280, 7, 7]}
    for layer in summary["layers"]:
        for method in ("gradcam", "rsi"):
            _overlay_ok(chelsea_grid / f"chelsea_{layer}_{method}.png")
            _heatmap(chelsea_grid / f"chelsea_{layer}_{method}.npy")
    grid = np.asarray(Image.open(chelsea_grid / summary["grid"]))
    assert grid.ndim == 3 and grid.shape[0] > 600 and grid.shape[1] > 600 and grid.std() > 10
    assert not list(chelsea_grid.glob(".*"))  # no temporary files left


def test_rsi_map_of_chelsea_falls_on_the_cat_face(chelsea_grid: Path) -> None:
    """Look at the figure as a person would: is the RSI-Grad-CAM heat on the cat's face?"""
    x0, y0, x1, y1 = CHELSEA_FACE
    heatmap = _heatmap(chelsea_grid / "chelsea_head_rsi.npy")
    mass = heatmap[y0:y1, x0:x1].sum() / heatmap.sum()
    area = (x1 - x0) * (y1 - y0) / 224**2
    assert mass > 0.6, f"RSI heat mass on the cat's face {mass:.3f}"
    assert mass > area + 0.1  # more concentrated on the face than a uniform map
    # The same map as drawn in the grid's overlay: its hottest pixels lie on the face.
    overlay = np.asarray(Image.open(chelsea_grid / "chelsea_head_rsi.png")).astype(int)
    redness = overlay[..., 0] - overlay[..., 2]
    hot_y, hot_x = np.nonzero(redness >= np.percentile(redness, 95))
    inside = (hot_x >= x0) & (hot_x < x1) & (hot_y >= y0) & (hot_y < y1)
    assert inside.mean() > 0.9


def test_explain_tiny_model_by_module_callable_with_class_id(in_files: Path) -> None:
    out = in_files / "out-tiny"
    args = ["explain", "coffee.jpg", "--model", "tinynet:build", "--target", "2", "--steps", "4"]
    result = runner.invoke(app, [*args, "--out", str(out), "--output", "logits"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "coffee.json").read_text())
    assert summary["explained_class"]["class_id"] == 2
    assert summary["explained_class"]["class"] is None  # a 4-class model has no names
    assert summary["output"] == "logits" and len(summary["top5"]) == 4
    assert summary["explanations"][0]["layer"] == "features"  # the last spatial layer
    _heatmap(out / "coffee_features_rsi.npy")
    assert not (out / "coffee_grid.png").exists()  # one layer, one method: no grid


def test_explain_method_all_writes_every_registry_method(in_files: Path, tmp_path: Path) -> None:
    """``--method all`` means every method of the registry, as in the other commands."""
    args = ["explain", "coffee.jpg", "--model", "tinynet:build", "--method", "all", "-s", "3"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "coffee.json").read_text())
    assert summary["methods"] == list(METHODS)
    pairs = [(m, layer) for m in METHODS for layer in method_layers(m, ["features"])]
    assert sorted((e["method"], e["layer"]) for e in summary["explanations"]) == sorted(pairs)
    assert ("ig", "input") in pairs
    expected = {"coffee.json", "coffee_grid.png"}
    for method, layer in pairs:
        expected |= {f"coffee_{layer}_{method}.png", f"coffee_{layer}_{method}.npy"}
        _heatmap(tmp_path / f"coffee_{layer}_{method}.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)
    for entry in summary["explanations"]:
        path_method = METHODS[entry["method"]].takes_steps
        assert entry["steps"] == (3 if path_method else None)
        assert entry["evaluations"] == (4 if path_method else 1)
    errors = {e["method"]: e["completeness_error"] for e in summary["explanations"]}
    assert errors["gradcam"] is None
    assert math.isfinite(errors["rsi"]) and math.isfinite(errors["ig"])
    grid = np.asarray(Image.open(tmp_path / "coffee_grid.png"))
    assert grid.ndim == 3 and grid.std() > 10


def test_unknown_method_is_refused_in_the_words_of_explain_dataset(
    in_files: Path, tmp_path: Path
) -> None:
    explain = runner.invoke(app, ["explain", "chelsea.png", "-m", "rsi,best", "-o", "a"])
    listing = ["explain-dataset", str(in_files), "-m", "rsi,best", "-o", str(tmp_path / "b")]
    dataset = runner.invoke(app, listing)
    _assert_one_clear_line(explain, 2, "unknown method 'best'", ", ".join(METHODS), "or all")
    _assert_one_clear_line(dataset, 2)
    assert explain.stderr == dataset.stderr
    assert not (in_files / "a").exists()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.export internals
def test_explain_exported_program_keeps_layer_names(in_files: Path, tmp_path: Path) -> None:
    sys.path.insert(0, str(in_files))
    try:
        from tinynet import build  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(in_files))
    batch = torch.export.Dim.AUTO
    program = torch.export.export(
        build().eval(), (torch.zeros(2, 3, 224, 224),), dynamic_shapes=({0: batch},)
    )
    torch.export.save(program, tmp_path / "tiny.pt2")
    layers = runner.invoke(app, ["layers", "--model", str(tmp_path / "tiny.pt2")])
    assert layers.exit_code == 0, layers.output
    assert _layer_rows(layers.stdout)["features.2"] == "16x14x14"
    args = ["explain", "coffee.jpg", "--model", str(tmp_path / "tiny.pt2"), "-l", "features.2"]
    result = runner.invoke(app, [*args, "--steps", "3", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "coffee_features.2_rsi.npy").is_file()


# --------------------------------------------------------------------------------------
# explain: bad inputs
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["missing.png"], ["image file not found: 'missing.png'"]),
        (["chelsea.png", "--layer", "blocks.99"], ["unknown layer 'blocks.99'", "'blocks.9'"]),
        (["chelsea.png", "--layer", "pool"], ["layer 'pool' cannot be explained", "1280x1x1"]),
        (["chelsea.png", "--target", "egyptian kat"], ["unknown class", "'Egyptian cat'"]),
        (["chelsea.png", "--target", "crane"], ["ambiguous", "134, 517"]),
        (["chelsea.png", "--target", "1000"], ["class id 1000 is out of range", "0 to 999"]),
        (["chelsea.png", "--out", "tinynet.py"], ["cannot write to the output folder"]),
        (["chelsea.png", "--out", "tinynet.py/sub"], ["cannot write to the output folder"]),
        (["chelsea.png", "--model", "efficientnet_lite1"], ["unknown model", "efficientnet_lite0"]),
        (["chelsea.png", "--model", "tinynet:nothing"], ["has no attribute 'nothing'"]),
        (["coffee.jpg", "--model", "tinynet:build", "--target", "tabby"], ["names are unknown"]),
        (["chelsea.png", "--steps", "0"], ["--steps"]),
        (["chelsea.png", "--method", "best"], ["unknown method 'best'", "rsi, gradcam"]),
    ],
)
def test_bad_arguments_exit_2_with_one_line_and_no_files(
    in_files: Path, args: list[str], fragments: list[str]
) -> None:
    before = set(in_files.rglob("*"))
    result = runner.invoke(app, ["explain", *args])
    _assert_one_clear_line(result, 2, *fragments)
    assert set(in_files.rglob("*")) == before


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # made on purpose
def test_torchscript_is_refused_with_the_alternative(in_files: Path, tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten())
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, 3, 8, 8)), tmp_path / "m.pt")
    result = runner.invoke(app, ["explain", "chelsea.png", "--model", str(tmp_path / "m.pt")])
    _assert_one_clear_line(result, 2, "TorchScript", "torch.export.save")


def test_unreadable_images_are_skipped_and_leave_no_files(in_files: Path, tmp_path: Path) -> None:
    images = ["notes.png", "coffee.jpg", "cut.jpg"]
    args = ["explain", *images, "--model", "tinynet:build", "--steps", "2", "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    lines = _error_lines(result.stderr)
    assert "not a readable image: not a recognised image format" in lines[0]
    assert "'cut.jpg' is not a readable image" in lines[1] and "truncated" in lines[1]
    assert lines[2] == "error: 2 of 3 images could not be explained"
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "coffee.json",
        "coffee_features_rsi.npy",
        "coffee_features_rsi.png",
    ]


def test_demo_refuses_an_unwritable_out(in_files: Path) -> None:
    result = runner.invoke(app, ["demo", "--out", "tinynet.py"])
    _assert_one_clear_line(result, 2, "cannot write to the output folder 'tinynet.py'")


def test_debug_shows_the_traceback(in_files: Path) -> None:
    result = runner.invoke(app, ["explain", "chelsea.png", "-l", "blocks.99", "--debug"])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: unknown layer 'blocks.99'")


# --------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------


def test_layers_lists_spatial_layers_with_shapes() -> None:
    result = runner.invoke(app, ["layers"])
    assert result.exit_code == 0, result.output
    rows = _layer_rows(result.stdout)
    assert rows["blocks.5"] == "80x14x14" and rows["blocks.10"] == "112x14x14"
    assert rows["stem"] == "32x112x112"
    assert rows["head"] == "1280x7x7  (default)"
    assert "pool" not in rows and "classifier" not in rows
    assert len(rows) == int(result.stdout.split()[1])


# --------------------------------------------------------------------------------------
# A real process: the module and the console script
# --------------------------------------------------------------------------------------


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_subprocess_explain_writes_files(files: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "rsigradcam.app.cli", "explain", str(files / "coffee.jpg")]
    done = _run([*cmd, "--steps", "4", "--out", "out"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "coffee.jpg: espresso 967" in done.stdout
    out = tmp_path / "out"
    summary = _summary_ok(out / "coffee.json")
    assert [e["layer"] for e in summary["explanations"]] == ["head"]
    _overlay_ok(out / "coffee_head_rsi.png")
    _heatmap(out / "coffee_head_rsi.npy")
    assert sorted(p.name for p in out.iterdir()) == [
        "coffee.json",
        "coffee_head_rsi.npy",
        "coffee_head_rsi.png",
    ]


def test_subprocess_console_script_usage_error(tmp_path: Path) -> None:
    script = shutil.which("rsigradcam", path=str(Path(sys.executable).parent))
    cmd = [script] if script else [sys.executable, "-m", "rsigradcam.app.cli"]
    done = _run([*cmd, "explain", "missing.jpg", "--out", "out"], cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == "error: image file not found: 'missing.jpg'\n"
    assert not (tmp_path / "out").exists()
    helped = _run([*cmd, "explain", "--help"], cwd=tmp_path)
    assert helped.returncode == 0 and "--layer" in helped.stdout
    assert helped.stderr == ""
