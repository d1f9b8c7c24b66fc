"""Issue 16, items 6, 7, 10, 13-16: a light --help, one method vocabulary, no empty folders,
overlays at the image's size, grid figures that say what they show, ``layers --filter``
and wording."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner, Result

from rsigradcam.app import options
from rsigradcam.app.cli import app
from rsigradcam.app.explain import ClassScore, ImageExplanation
from rsigradcam.app.figures import grid_caption, zero_note
from rsigradcam.app.folders import removed_if_left_empty
from rsigradcam.app.layer_list import matches
from rsigradcam.app.loading.methods import parse_methods
from rsigradcam.constants import METHOD_NAMES
from rsigradcam.methods import METHODS
from rsigradcam.viz import GridCell, grid_figure, overlay, resize_heatmap

runner = CliRunner()
SRC = Path(__file__).resolve().parents[2] / "src"
TINY = ["--model", "tests.dataset_model:small_cnn", "--layer", "act"]


def _error_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return str(lines[0])


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A 40x30 photo, and a text file renamed .jpg."""
    folder = tmp_path / "photos"
    folder.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "photo.png")
    (folder / "bad.jpg").write_text("this is not an image\n")
    return folder


# --------------------------------------------------------------------------------------
# Item 6: the command line answers before torch is imported
# --------------------------------------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_importing_the_cli_loads_no_torch_and_no_library_module() -> None:
    done = _python(
        "import sys, rsigradcam.app.cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch' "
        "or m.startswith(('rsigradcam.methods', 'rsigradcam.core', 'rsigradcam.app.loading'))))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("args", "code"),
    [(["--help"], 0), (["explain", "--help"], 0), (["layers", "--help"], 0),
     (["explain", "--no-such-option"], 2), (["evaluate", "--seed", "x"], 2)],
)  # fmt: skip
def test_help_and_usage_errors_run_without_torch(args: list[str], code: int) -> None:
    # torch cannot be imported at all here: --help and a usage error must not need it.
    done = _python(
        "import sys; sys.modules['torch'] = None; from rsigradcam.app.cli import main; "
        f"sys.argv = ['rsigradcam', *{args!r}]; main()"
    )
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr


def test_the_help_texts_list_the_registry_methods() -> None:
    assert tuple(METHODS) == METHOD_NAMES
    text = " ".join(runner.invoke(app, ["explain", "--help"]).output.split())
    assert ", ".join(METHOD_NAMES) in text.replace("- ", "-")  # (help lines break at hyphens)


def test_the_package_exports_are_imported_on_first_use() -> None:
    import rsigradcam

    assert rsigradcam.RSIGradCAM is METHODS["rsi"]
    assert set(rsigradcam.__all__) <= set(dir(rsigradcam))
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        _ = rsigradcam.nothing


# --------------------------------------------------------------------------------------
# Item 7: one method vocabulary, our own words for bad values
# --------------------------------------------------------------------------------------


def test_all_means_every_registry_method() -> None:
    assert parse_methods(["all"]) == tuple(METHODS)
    assert parse_methods(["ig,all"]) == ("ig", *(m for m in METHODS if m != "ig"))


def test_no_user_facing_text_uses_other_method_names() -> None:
    offenders = [
        f"{path.relative_to(SRC)}: {word}"
        for path in SRC.rglob("*.py")
        for word in ("rsi-gradcam", "integrated-gradients", "rsi_gradcam")
        if word in path.read_text(encoding="utf-8").lower()
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["explain", "x.png", "--output", "foo"],
         "error: --output must be one of softmax, logits, sigmoid, got 'foo' (see --help)"),
        (["explain", "x.png", "--overlay-size", "big"],
         "error: --overlay-size must be one of model, original, got 'big' (see --help)"),
        (["explain-dataset", "x", "--out", "o", "--dtype", "int8"],
         "error: --dtype must be one of uint8, float16, got 'int8' (see --help)"),
        (["explain-dataset", "x", "--out", "o", "--workers", "-1"],
         "error: --workers must be at least 0, got '-1' (see --help)"),
        (["evaluate", "--seed", "1.5"], "error: --seed must be an integer, got '1.5' (see --help)"),
        (["evaluate", "--curve-points", "1"],
         "error: --curve-points must be at least 2, got '1' (see --help)"),
        (["explain", "x.png", "-s", "0"],
         "error: --steps must be at least 1, got '0' (see --help)"),
        (["explain-dataset", "x", "--out", "o", "-b", "two"],
         "error: --batch-size must be an integer, got 'two' (see --help)"),
        (["app", "--port", "70000"],
         "error: --port must be at most 65535, got '70000' (see --help)"),
        (["evaluate", "--preset", "all"],
         "error: --preset must be one of claims, got 'all' (see --help)"),
        (["evaluate", "--stability-steps", "8,x"],
         "error: --stability-steps must be a comma list of integers, got '8,x' (see --help)"),
    ],
)  # fmt: skip
def test_a_bad_option_value_is_one_line_in_our_words(args: list[str], line: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert _error_line(result) == line
    assert "Value error" not in result.output and "Input should" not in result.output


# --------------------------------------------------------------------------------------
# Item 10: failures leave no empty folders
# --------------------------------------------------------------------------------------


def test_removed_if_left_empty_removes_only_the_empty_folders_it_made(tmp_path: Path) -> None:
    with removed_if_left_empty(tmp_path / "a" / "b" / "out") as out:
        out.mkdir(parents=True)
    assert list(tmp_path.iterdir()) == []
    kept = tmp_path / "kept"
    kept.mkdir()
    with removed_if_left_empty(kept / "out") as out:
        out.mkdir()
    assert kept.is_dir() and list(kept.iterdir()) == []
    with pytest.raises(KeyboardInterrupt), removed_if_left_empty(tmp_path / "c" / "d") as out:
        out.mkdir(parents=True)
        raise KeyboardInterrupt
    assert not (tmp_path / "c").exists()
    with removed_if_left_empty(tmp_path / "e" / "f") as out:
        out.mkdir(parents=True)
        (out.parent / "note.txt").write_text("x")
    assert not out.exists() and (tmp_path / "e" / "note.txt").exists()


def test_explain_of_a_text_file_named_jpg_leaves_no_out(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["explain", str(photos / "bad.jpg"), "--out", "out4/x", *TINY])
    assert result.exit_code == 1, result.output
    assert "is not a readable image" in result.stderr
    assert not (tmp_path / "out4").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    result = runner.invoke(app, ["explain", str(photos / "bad.jpg"), "--out", "existing", *TINY])
    assert result.exit_code == 1 and existing.is_dir()


def test_an_interrupted_explain_or_demo_leaves_no_out(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rsigradcam.app import demo, outputs

    def interrupt(*args: object, **kwargs: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs, "explain_images", interrupt)
    monkeypatch.setattr(demo, "run_demo", interrupt)
    out = tmp_path / "a" / "out"
    result = runner.invoke(app, ["explain", str(photos / "photo.png"), "--out", str(out), *TINY])
    assert result.exit_code == 130 and _error_line(result) == "error: interrupted"
    assert not (tmp_path / "a").exists()
    result = runner.invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 130 and not (tmp_path / "a").exists()


def test_failed_dataset_and_evaluation_runs_leave_no_out(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs" / "out"
    bad_model = ["--model", "no_such_module_h7:build"]
    result = runner.invoke(app, ["explain-dataset", str(photos), "--out", str(out), *bad_model])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "runs").exists()
    args = ["--images", str(photos), "--out", str(out), *bad_model]
    result = runner.invoke(app, ["evaluate", *args])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------------------
# Item 13: overlays at the image's own size
# --------------------------------------------------------------------------------------


def test_resize_heatmap_is_the_bilinear_upsampling_of_the_maps() -> None:
    heatmap = np.random.default_rng(1).random((7, 9)).astype(np.float32)
    want = F.interpolate(
        torch.from_numpy(heatmap)[None, None], size=(30, 40), mode="bilinear",
        align_corners=False,
    )[0, 0].numpy()  # fmt: skip
    np.testing.assert_allclose(resize_heatmap(heatmap, (30, 40)), want, atol=1e-6)
    image = np.zeros((30, 40, 3), np.uint8)
    np.testing.assert_array_equal(overlay(image, heatmap), overlay(image, want))


def test_overlay_size_original_keeps_the_npy_at_the_model_size(
    photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["explain", str(photos / "photo.png"), "--out", str(out), *TINY, "--steps", "3"]
    result = runner.invoke(app, [*args, "--overlay-size", "original"])
    assert result.exit_code == 0, result.output
    assert np.asarray(Image.open(out / "photo_act_rsi.png")).shape == (30, 40, 3)
    assert np.load(out / "photo_act_rsi.npy").shape == (224, 224)
    result = runner.invoke(app, args)  # the default: the model's input size
    assert result.exit_code == 0, result.output
    assert np.asarray(Image.open(out / "photo_act_rsi.png")).shape == (224, 224, 3)


# --------------------------------------------------------------------------------------
# Item 14: grid figures
# --------------------------------------------------------------------------------------


def _result(output: str, methods: tuple[str, ...], name: str | None) -> ImageExplanation:
    score = ClassScore(285, name, 0.8)
    return ImageExplanation(
        name="cat", source="cat.jpg", rgb=np.zeros((4, 4, 3), np.uint8), top5=[score],
        explained=score, layers=("head",), explanations={m: {} for m in methods}, steps=50,
        output=output, seconds=1.0, baseline="blur",  # type: ignore[arg-type]
    )  # fmt: skip


def test_grid_caption_names_the_score_the_class_and_the_baseline() -> None:
    assert grid_caption(_result("softmax", ("gradcam", "rsi"), "Egyptian cat")) == (
        "Explained: softmax probability p of 'Egyptian cat' (class 285, p = 0.80); "
        "path methods (RSI-Grad-CAM) from the blur baseline, m = 50"
    )
    assert grid_caption(_result("logits", ("gradcam",), None)) == (
        "Explained: logit of class 285 (p = 0.80)"
    )


def test_grid_figure_has_a_colour_bar_a_caption_and_marks_all_zero_maps() -> None:
    zero, some = np.zeros((8, 8)), np.eye(8)
    rgb = np.zeros((8, 8, 3), np.uint8)
    rows = [
        [GridCell(rgb, "image"), GridCell(overlay(rgb, zero), "Grad-CAM", zero_note(zero)),
         GridCell(overlay(rgb, some), "RSI-Grad-CAM", zero_note(some))],
    ]  # fmt: skip
    fig = grid_figure(rows, ["head"], "cat", caption="Explained: logit of class 3 (p = 0.10)")
    panels, bar = fig.axes[:3], fig.axes[3:]
    assert [[t.get_text() for t in ax.texts] for ax in panels] == [[], ["all zero"], []]
    assert len(bar) == 1 and bar[0].get_ylabel() == "heatmap (0 to 1)"
    assert fig.get_supxlabel() == "Explained: logit of class 3 (p = 0.10)"
    assert len(grid_figure(rows, colorbar=None).axes) == 3


def test_explain_grid_is_written_with_several_methods(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["explain", str(photos / "photo.png"), "--out", str(out), *TINY, "-m", "gradcam,rsi"]
    result = runner.invoke(app, [*args, "--steps", "3"])
    assert result.exit_code == 0, result.output
    assert Image.open(out / "photo_grid.png").size[0] > 600


# --------------------------------------------------------------------------------------
# Item 15: layers with their types, --filter
# --------------------------------------------------------------------------------------


def test_layer_filter_is_a_substring_or_a_glob() -> None:
    assert matches("blocks.10", "blocks.*") and matches("blocks.10", "s.1")
    assert not matches("head", "blocks.*") and not matches("blocks.10", "Blocks")
    assert matches("anything", None) and matches("anything", "")


def test_layers_shows_the_module_type_and_filters() -> None:
    result = runner.invoke(app, ["layers", "--filter", "blocks.1?"])
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.startswith("# 6 layers of efficientnet_lite0 that can be explained matching")
    assert [row.split()[0] for row in rows] == [f"blocks.1{i}" for i in range(6)]
    assert rows[0] == "blocks.10  MBConvBlock  112x14x14"
    result = runner.invoke(app, ["layers", "--filter", "blocks.15.project"])
    names = [row.split()[0] for row in result.stdout.splitlines()[1:]]
    assert len(names) > 1 and all("blocks.15.project" in name for name in names)
    result = runner.invoke(app, ["layers", "--filter", "hea?"])
    assert result.stdout.splitlines()[1:] == ["head  Sequential  1280x7x7  (default)"]


def test_layers_filter_matching_nothing_says_so() -> None:
    result = runner.invoke(app, ["layers", "--filter", "nothing*"])
    assert result.exit_code == 1
    assert _error_line(result).startswith(
        "error: no layer of efficientnet_lite0 matches --filter 'nothing*'; run without "
        "--filter to see all "
    )


# --------------------------------------------------------------------------------------
# Item 16: wording
# --------------------------------------------------------------------------------------


def test_a_callable_returning_an_int_is_named_with_an(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "h7_intmodel.py").write_text("def build():\n    return 3\n")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["layers", "--model", "h7_intmodel:build"])
    assert result.exit_code == 2
    assert _error_line(result) == (
        "error: model 'h7_intmodel:build': build() returned an int, not a torch.nn.Module"
    )


def test_plural_counts() -> None:
    counts = [options.plural(n, "shard") for n in (0, 1, 2)]
    assert counts == ["0 shards", "1 shard", "2 shards"]
    assert options.plural(1, "process") == "1 process"
    assert options.plural(4, "process") == "4 processes"


def test_explain_dataset_summary_says_1_shard(photos: Path, tmp_path: Path) -> None:
    (photos / "bad.jpg").unlink()
    out = tmp_path / "out"
    args = [str(photos), "--out", str(out), *TINY, "--steps", "2", "--threads", "1", "-w", "0"]
    result = runner.invoke(app, ["explain-dataset", *args])
    assert result.exit_code == 0, result.output
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("Explained 1 of 1 image in 1 shard (1 process, "), summary
