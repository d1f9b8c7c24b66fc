"""The explorer without a browser: what the page computes, its errors, its wiring, the CLI."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rsigradcam.app.cli import app
from rsigradcam.app.errors import InputError
from rsigradcam.app.web.compute import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_QUEUE,
    MAX_UPLOAD_PIXELS,
    Explorer,
    ExplorerPool,
    check_options,
    check_upload,
    classify,
    error_line,
    open_explorer,
    parse_steps,
)
from rsigradcam.app.web.plot import convergence_figure, path_figure
from rsigradcam.app.web.results import convergence, explain_image
from rsigradcam.app.web.server import INSTALL_HINT, check_gradio, check_port
from rsigradcam.app.web.views import (
    convergence_note,
    error_note,
    gallery,
    results_table,
    summary,
)
from rsigradcam.io import ImageLoadError
from tests.helpers import png_header_only

SMALL = "tests.dataset_model:small_cnn"  # 5 classes, layers stem.*, conv, act
runner = CliRunner()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Explorer:
    return open_explorer(SMALL, work_dir=tmp_path_factory.mktemp("small"), samples=None)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Explorer:
    return open_explorer(work_dir=tmp_path_factory.mktemp("embedded"))


@pytest.fixture
def chelsea(small: Explorer) -> str:
    return str(small.samples["chelsea"])


def test_embedded_model_layers_samples_and_top5(embedded: Explorer) -> None:
    assert embedded.default_layer == "head"
    labels = dict((name, label) for label, name in embedded.layer_choices)
    assert labels["head"].split() == ["head", "Sequential", "1280x7x7"]
    assert "blocks.10" in labels and "(default)" not in labels["head"]
    assert {"chelsea", "coffee", "camera"} <= set(embedded.samples)
    assert all(path.is_file() for path in embedded.samples.values())
    found = classify(embedded, embedded.samples["chelsea"])
    assert len(found.top5) == 5
    assert found.choices()[0] == ("Egyptian cat  0.799", 285)


def test_layers_are_listed_in_model_order_parents_first(embedded: Explorer) -> None:
    names = [name for _, name in embedded.layer_choices]
    assert names.index("blocks.5") < names.index("blocks.5.expand.0") < names.index("blocks.6")
    for i, name in enumerate(names):  # every block comes before its own layers
        parents = [n for n in names if name.startswith(n + ".")]
        assert all(names.index(parent) < i for parent in parents), name
    assert names.index("head") < names.index("head.0")
    assert embedded.default_layer == "head"  # the last to finish, not the last listed


def test_unknown_typed_layers_are_refused_with_close_names(embedded: Explorer) -> None:
    with pytest.raises(InputError, match=r"unknown layer 'blocks\.55' \(did you mean 'blocks\.5"):
        check_options(embedded, ["head", "blocks.55"], ["rsi"], 8)
    with pytest.raises(InputError, match=r"unknown layer 'haed' \(did you mean 'head'"):
        check_options(embedded, ["haed"], ["rsi"], 8)


def test_embedded_model_explains_with_the_path_curve(
    embedded: Explorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rsigradcam.app.web.results.CURVE_POINTS", 9)  # fewer forward passes
    options = check_options(embedded, ["head"], ["rsi"], "2")
    result = explain_image(embedded, embedded.samples["coffee"], options)
    rsi = result.found.explanations["rsi"]["head"]
    assert result.found.explained.name == "espresso"
    assert result.curve is not None
    assert result.curve.points["rsi"].tolist() == [0.0, 0.5, 1.0]
    assert result.curve.y[0] == pytest.approx(float(rsi.baseline_scores[0]), abs=1e-5)
    assert result.curve.y[-1] == pytest.approx(float(rsi.scores[0]), abs=1e-5)
    assert result.curve.t.size == 9  # a coarse partition is filled in for the curve
    assert path_figure(result) is not None


def test_small_model_all_methods_gallery_table_downloads(small: Explorer, chelsea: str) -> None:
    options = check_options(small, ["conv", "act"], ["all"], 4, "logits", "blur")
    seen: list[float] = []
    result = explain_image(small, chelsea, options, target=2, progress=lambda f, _: seen.append(f))
    assert seen == sorted(seen) and seen[-1] < 1
    assert result.found.explained.class_id == 2
    items = gallery(result, alpha=0.5)
    assert len(items) == 2 * 5 + 1  # layers x layer methods, then ig's input map
    assert items[1][1].startswith("conv · Grad-CAM · 1 evaluation")
    assert "completeness error" in items[0][1] and "5 evaluations" in items[0][1]
    assert items[-1][1].startswith("input · Integrated Gradients")
    plain = gallery(result, alpha=0.0)[0][0]
    np.testing.assert_array_equal(plain, result.found.rgb)
    assert not np.array_equal(items[0][0], plain)
    table = results_table(result)
    assert "| conv | RSI-Grad-CAM |" in table and "explained: logit" in table
    assert result.curve is not None
    assert set(result.curve.points) == {"rsi", "integrated-gradcam", "ig"}
    names = {p.name for p in result.files}
    assert {"chelsea_conv_rsi.png", "chelsea_act_rsi.npy", "chelsea.json"} <= names
    assert {"chelsea_grid.png", "chelsea_path.json"} <= names
    assert all(p.is_file() and p.parent == result.folder for p in result.files)
    path = json.loads((result.folder / "chelsea_path.json").read_text())
    assert path["points"]["rsi"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert len(path["t"]) == len(path["y"])


def test_auto_steps_curve_marks_the_adaptive_points(small: Explorer, chelsea: str) -> None:
    options = check_options(small, ["conv"], ["rsi"], "auto", guided=True)
    result = explain_image(small, chelsea, options)
    exp = result.found.explanations["rsi"]["conv"]
    assert result.curve is not None
    points = result.curve.points["rsi"]
    assert points.size == exp.n_evaluations
    np.testing.assert_allclose(points, torch.unique(exp.partition).numpy())
    data = summary(result.found, "conv", "rsi")
    assert data["steps"] == "auto" and data["evaluations"] == exp.n_evaluations
    assert data["completeness_error"] is None  # guided: completeness does not apply
    assert any("completeness_error does not apply" in w for w in data["warnings"])


def test_api_summary_fields(small: Explorer, chelsea: str) -> None:
    result = explain_image(small, chelsea, check_options(small, "conv", "gradcam", 8.0))
    data = summary(result.found, "conv", "gradcam")
    assert data["class_id"] == data["top5"][0]["class_id"] and data["class"] is None
    assert data["steps"] is None and data["evaluations"] == 1
    assert data["completeness_error"] is None and data["baseline_score"] is None
    json.dumps(data, allow_nan=False)
    with pytest.raises(InputError, match="no map for layer 'conv' and method 'rsi'"):
        summary(result.found, "conv", "rsi")


def test_convergence_as_m_grows(small: Explorer, chelsea: str) -> None:
    result = explain_image(small, chelsea, check_options(small, ["conv"], ["rsi", "gradcam"], 4))
    found = convergence(small, result, steps=(1, 2, 4), reference=16)
    assert found.steps == (1, 2, 4) and found.reference == 16 and found.current == 4
    assert set(found.correlation) == {("rsi", "conv")}
    correlations = found.correlation["rsi", "conv"]
    assert all(-1 <= c <= 1 for c in correlations) and correlations[-1] > 0.8
    assert found.completeness["rsi", "conv"][-1] < found.completeness["rsi", "conv"][0]
    assert convergence_figure(found).axes
    no_path = explain_image(small, chelsea, check_options(small, ["conv"], ["gradcam"], 4))
    with pytest.raises(InputError, match="the convergence follows the path methods"):
        convergence(small, no_path)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((["conv2"], ["rsi"], 50), r"unknown layer 'conv2' \(did you mean 'conv'\?\)"),
        (([], ["rsi"], 50), "choose at least one layer"),
        ((["fc"], ["rsi"], 50), "layer 'fc' cannot be explained: its output has shape 5"),
        ((["conv"], [], 50), "no method given"),
        ((["conv"], ["rsi", "gradcm"], 50), "unknown method 'gradcm'"),
        ((["conv"], ["rsi"], "abc"), r"steps must be a positive integer .*got 'abc', or 'auto'"),
        ((["conv"], ["rsi"], "0"), "steps must be a positive integer"),
        ((["conv"], ["rsi"], 100_001), "steps must be at most 100000"),
        ((["conv"], ["rsi", "ig"], "auto"), "steps 'auto' is for rsi only; give ig a number"),
        ((["conv"], ["rsi"], 8, "probs"), "output must be softmax or logits"),
        ((["conv"], ["rsi"], 8, "softmax", "white"), "unknown baseline 'white'"),
        ((["conv"], ["gradcam"], 8, "softmax", "black", True), "--grad-relu applies only to rsi"),
    ],
)
def test_bad_options_are_one_line(small: Explorer, arguments: tuple, message: str) -> None:
    with pytest.raises(InputError, match=message) as error:
        check_options(small, *arguments)
    assert "\n" not in str(error.value)


def test_parse_steps() -> None:
    assert parse_steps(" 50 ") == 50 and parse_steps(32.0) == 32 and parse_steps("AUTO") == "auto"
    with pytest.raises(InputError, match=r"got 2\.5"):
        parse_steps(2.5)


def test_unreadable_uploads_are_one_line_naming_the_file(
    small: Explorer, chelsea: str, tmp_path: Path
) -> None:
    truncated = tmp_path / "half.png"
    truncated.write_bytes(Path(chelsea).read_bytes()[:5000])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(50_000, 50_000))
    big = tmp_path / "big.png"
    big.write_bytes(png_header_only(10_000, 10_000))
    cases = {
        truncated: "'half.png' is not a readable image: image file is truncated",
        text: "'notes.png' is not a readable image: not a recognised image format",
        bomb: "'bomb.png' has more pixels than Pillow opens; the app takes images up to 50,0",
        big: "'big.png' is 10000x10000 = 100,000,000 pixels; the app takes images up to "
        "50,000,000 pixels: make it smaller first",
    }
    options = check_options(small, ["conv"], ["rsi"], 2)
    for path, message in cases.items():
        for run in (classify, lambda ex, p: explain_image(ex, p, options)):
            with pytest.raises((ImageLoadError, InputError)) as error:
                run(small, path)
            assert str(error.value).startswith(message) and str(tmp_path) not in str(error.value)
            assert "\n" not in str(error.value)
    with pytest.raises(InputError, match="no image: upload one"):
        classify(small, None)
    with pytest.raises(InputError, match="class id 7 is out of range"):
        explain_image(small, chelsea, options, target=7)


def test_uploads_over_the_limits_are_refused_from_the_header(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(png_header_only(10_000, 10_000))  # no pixel data: a decode would fail
    with pytest.raises(InputError, match=r"'big\.png' is 10000x10000 = 100,000,000 pixels"):
        check_upload(big)
    check_upload(big, max_pixels=100_000_000)  # at the limit: left to load_image
    with pytest.raises(InputError, match=r"'big\.png' is 0\.0 MB; the app takes image files up to"):
        check_upload(big, max_bytes=10)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    check_upload(text)  # not an image: load_image says so, in its words
    assert MAX_UPLOAD_PIXELS < 100_000_000


def test_explorer_pool_gives_each_request_its_own_model(small: Explorer) -> None:
    with ExplorerPool(small).borrow() as alone:
        assert alone is small and alone.speed == "auto"
    pool = ExplorerPool(small, 2)
    with pool.borrow() as first, pool.borrow() as second:
        assert first.loaded.model is small.loaded.model
        assert second.loaded.model is not small.loaded.model
        assert second.layer_choices == small.layer_choices
        assert first.speed == second.speed == "off"  # no fx tracing while another runs
        for a, b in zip(
            first.loaded.model.parameters(), second.loaded.model.parameters(), strict=True
        ):
            assert torch.equal(a, b)
    with pool.borrow() as again:  # both were given back
        assert again in (first, second)
    with pytest.raises(InputError, match="concurrency must be a positive integer, got 0"):
        ExplorerPool(small, 0)


def test_notes_error_line_and_how_to_fill_the_convergence(small: Explorer, chelsea: str) -> None:
    assert error_note("a <b>") == '<div class="rsg-error" role="alert">a &lt;b&gt;</div>'
    empty = convergence_note(None)
    assert "Explain an image first" in empty and "m = 2, 4, 8, 16, 32, 64" in empty
    result = explain_image(small, chelsea, check_options(small, ["conv"], ["rsi", "gradcam"], 4))
    before = convergence_note(result)
    assert "Click <b>Convergence as m grows</b>" in before
    assert "with RSI-Grad-CAM at conv" in before and "7 more explanations" in before
    assert "this explanation's m = 4" in convergence_note(result, drawn=True)
    no_path = explain_image(small, chelsea, check_options(small, ["conv"], ["gradcam"], 4))
    assert "tick one and explain again" in convergence_note(no_path)


def test_error_line() -> None:
    assert error_line(ValueError("bad\n  layer")) == "bad layer"
    assert error_line(RuntimeError("boom\nthere")) == "RuntimeError: boom there"


def test_a_model_without_spatial_layers_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"'torch\.nn:Flatten' has no layer with a spatial"):
        open_explorer("torch.nn:Flatten", work_dir=tmp_path)


# --------------------------------------------------------------------------------------
# The page's wiring (Gradio, not launched) and the command line
# --------------------------------------------------------------------------------------


def test_page_has_one_public_endpoint_and_one_queue(small: Explorer) -> None:
    pytest.importorskip("gradio")
    from rsigradcam.app.web.page import MODEL_QUEUE, build_page

    page = build_page(small)
    functions = list(page.fns.values())
    assert [f.api_name for f in functions if f.api_visibility == "public"] == ["explain"]
    heavy = [f for f in functions if f.name != "on_sample"]
    assert {f.concurrency_id for f in heavy} == {MODEL_QUEUE}
    assert {f.concurrency_limit for f in heavy} == {1}
    assert page.analytics_enabled is False
    explain = next(f for f in functions if f.api_name == "explain")
    assert [type(b).__name__ for b in explain.inputs] == ["Image", "Textbox", "Textbox", "Number"]
    assert [type(b).__name__ for b in explain.outputs] == ["Image", "JSON"]


def test_page_queue_and_pool_follow_the_options(small: Explorer) -> None:
    pytest.importorskip("gradio")
    from rsigradcam.app.web.page import MODEL_QUEUE, build_page

    page = build_page(small, concurrency=2, max_queue=3)
    heavy = [f for f in page.fns.values() if f.name != "on_sample"]
    assert {(f.concurrency_id, f.concurrency_limit) for f in heavy} == {(MODEL_QUEUE, 2)}
    assert page._queue.max_size == 3
    assert build_page(small)._queue.max_size == DEFAULT_MAX_QUEUE
    with pytest.raises(InputError, match="max_queue must be a positive integer, got 0"):
        build_page(small, max_queue=0)
    layers = next(b for b in page.blocks.values() if getattr(b, "elem_id", "") == "rsg-layers")
    assert layers.allow_custom_value  # a typed name reaches the check, never dropped


def test_page_errors_are_one_line_and_the_next_run_clears_them(
    small: Explorer, chelsea: str
) -> None:
    pytest.importorskip("gradio")
    from rsigradcam.app.web.page import TabState, build_page

    page = build_page(small)
    on_explain = next(f.fn for f in page.fns.values() if f.name == "on_explain")
    on_convergence = next(f.fn for f in page.fns.values() if f.name == "on_convergence")
    photo = {"path": chelsea}
    rest = ("4", "softmax", "black", False, False, 0.5)
    good = on_explain(photo, None, ["conv"], ["rsi"], *rest, TabState())
    assert good[6] == "" and good[7].result is not None
    failed = on_explain(photo, None, ["conv", "conv2"], ["rsi"], *rest, good[7])
    overlays, table, path, note, plot, files, status, state = failed
    assert status == error_note("unknown layer 'conv2' (did you mean 'conv'?); run "
                                "'rsigradcam layers' to list the layers that can be explained")
    assert (overlays, table, path, files) == ([], "", None, None)  # nothing stale is left
    assert plot["visible"] is False and "Explain an image first" in note
    assert state.result is None and not good[7].result.folder.exists()
    again = on_explain(photo, None, ["conv"], ["gradcam"], *rest, state)
    assert again[6] == "" and len(again[0]["value"]) == 1 and "| conv | Grad-CAM |" in again[1]
    assert "tick one and explain again" in again[3]
    note, plot = on_convergence(TabState())
    assert "Explain an image first" in note and plot["visible"] is False
    note, plot = on_convergence(again[7])  # no path method: one line, not an Error pill
    assert 'class="rsg-error"' in note and "the convergence follows the path methods" in note


def test_app_command_help_and_module_entry() -> None:
    result = runner.invoke(app, ["app", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "--host", "--port", "--device", "--size"):
        assert option in result.output
    text = " ".join(result.output.split())
    assert "[default: 127.0.0.1]" in text
    assert "--max-queue" in text and "--concurrency" in text
    assert f"[default: {DEFAULT_MAX_QUEUE};" in text and f"[default: {DEFAULT_CONCURRENCY};" in text
    import rsigradcam.app.__main__ as entry

    assert callable(entry.main)


def test_app_without_gradio_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio fails
    with pytest.raises(InputError, match="pip install 'rsigradcam\\[app\\]'"):
        check_gradio()
    result = runner.invoke(app, ["app"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == [f"error: the app needs Gradio, which is not installed: {INSTALL_HINT}"]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_a_taken_port_is_one_line(taken_port: int) -> None:
    with pytest.raises(InputError, match=f"port {taken_port} on 127.0.0.1 is in use"):
        check_port("127.0.0.1", taken_port)
    result = runner.invoke(app, ["app", "--port", str(taken_port), "--model", SMALL])
    assert result.exit_code == 2 and "pass --port with a free port" in result.output
    result = runner.invoke(app, ["app", "--port", "70000"])
    assert result.exit_code == 2
