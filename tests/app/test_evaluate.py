"""``rsigradcam evaluate``: results.json, statistics, reproducibility, and the HTML report.

The command runs in-process on a tiny classifier of coloured discs (four classes, written
to a temporary module), with few steps and images so that it takes seconds. The report is
opened in headless Chromium (Debian's ``chromium``; installed when missing and possible).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from rsigradcam.app.cli import app
from rsigradcam.app.evaluation import (
    METRICS,
    EvaluationOptions,
    EvaluationResults,
    Units,
    bootstrap_mean,
    evaluate,
    judge_claims,
    markdown_summary,
    read_results,
    render_report,
    sanity_stages,
    verdict,
)
from rsigradcam.app.evaluation.results import Evaluation
from rsigradcam.app.evaluation.stats import paired_bootstrap_mean
from rsigradcam.files import finite
from rsigradcam.serialization import decode, encode
from tests.helpers import DISCS_MODULE, load_module

runner = CliRunner()

N_IMAGES = 4  # classes 0, 1, 2, 3: one grid; images 0 and 2 are saturated, 1 and 3 not
LAYERS = ("features.1", "features.3")
ALL_METHODS = ("rsi", "gradcam", "gradcam++", "layercam", "integrated-gradcam", "ig")
FULL = [
    "evaluate", "--images", "images", "--model", "tinydiscs:build", "-l", LAYERS[0],
    "-l", LAYERS[1], "--steps", "4", "--curve-points", "4", "--sanity-images", "2",
    "--sanity-stages", "1", "--stability-steps", "2", "--reference-steps", "8",
    "--steps-images", "2", "--noise-samples", "1", "--bootstrap", "200",
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model module and four disc images (saturated and unsaturated ones)."""
    folder = tmp_path_factory.mktemp("evaluate")
    module_file = folder / "tinydiscs.py"
    module_file.write_text(DISCS_MODULE)
    module = load_module(module_file, "tinydiscs_pictures")
    (folder / "images").mkdir()
    for i in range(N_IMAGES):
        Image.fromarray(module.picture(i % 4, i)).save(folder / "images" / f"disc{i}.png")
    return folder


def _invoke(folder: Path, args: list[str]) -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        return runner.invoke(app, args)


@pytest.fixture(scope="module")
def full_run(folder: Path) -> Path:
    """One run with all six methods."""
    result = _invoke(folder, [*FULL, "--out", "full"])
    assert result.exit_code == 0, result.output
    assert ("Wrote results.json, results-units.json.gz, report.html and summary.md"
            in result.stdout)
    assert re.search(r"^focus: features\.1 (holds|does not hold|inconclusive)", result.stdout,
                     re.MULTILINE)
    return folder / "full"


def _results(out: Path) -> dict[str, Any]:
    return read_results(out)


# --------------------------------------------------------------------------------------
# results.json
# --------------------------------------------------------------------------------------


def test_results_hold_every_per_image_number(full_run: Path) -> None:
    results = _results(full_run)
    config = results["config"]
    assert config["methods"] == list(ALL_METHODS) and config["layers"] == list(LAYERS)
    assert config["seed"] == 0 and config["steps"] == 4 and config["model"] == "tinydiscs:build"
    assert config["version"] and config["model_digest"]
    assert [i["name"] for i in results["images"]] == [f"disc{i}.png" for i in range(N_IMAGES)]
    assert [i["class_id"] for i in results["images"]] == [i % 4 for i in range(N_IMAGES)]
    saturated = [i["saturated"] for i in results["images"]]
    assert any(saturated) and not all(saturated)  # both groups are present

    pairs = {(m, layer) for m in ALL_METHODS if m != "ig" for layer in LAYERS} | {("ig", "input")}
    found = results["metrics"]
    expected_units = {
        "deletion_auc": N_IMAGES, "insertion_auc": N_IMAGES, "average_drop": N_IMAGES,
        "increase_in_confidence": N_IMAGES, "gridpg": 4, "sanity_spearman": 2,
        "dtype_max_abs": N_IMAGES, "noise_sensitivity": N_IMAGES, "steps_max_abs": 2,
    }
    assert set(found) == set(expected_units) == set(METRICS)
    for metric, n in expected_units.items():
        have = {(m, layer) for m, by in found[metric].items() for layer in by}
        if metric in ("dtype_max_abs", "noise_sensitivity", "steps_max_abs"):
            assert have == {(m, layer) for m in ("rsi", "gradcam") for layer in LAYERS}
        elif metric in ("deletion_auc", "insertion_auc"):
            assert have == pairs | {("random", "input")}
        else:
            assert have == pairs
        assert len(results["units"][metric]["ids"]) == n
        for by_layer in found[metric].values():
            for values in by_layer.values():
                assert len(values) == n and all(isinstance(v, float) for v in values)
    assert all(0.0 <= v <= 1.0 for v in found["gridpg"]["rsi"]["features.3"])
    assert found["steps_max_abs"]["gradcam"]["features.3"] == [0.0, 0.0]  # no steps

    # The summary is the mean of those numbers, inside its bootstrap interval.
    for metric, by_method in results["summary"].items():
        for method, by_layer in by_method.items():
            for layer, groups in by_layer.items():
                stats = groups["all"]
                assert stats["mean"] == pytest.approx(np.mean(found[metric][method][layer]))
                if stats["n"] > 1:
                    assert stats["low"] - 1e-12 <= stats["mean"] <= stats["high"] + 1e-12
                else:
                    assert stats["low"] is None and stats["high"] is None
                sizes = [groups[g]["n"] for g in ("saturated", "unsaturated")]
                assert sum(sizes) == stats["n"]

    curves = results["details"]["curves"]
    assert len(curves["deletion"]["fractions"]) == 5  # 4 steps
    assert np.asarray(curves["insertion"]["rsi"]["features.1"]).shape == (N_IMAGES, 5)
    assert results["details"]["sanity"]["stages"] == ["original", "fc"]
    assert results["details"]["gridpg"]["threshold"] <= 0.95
    assert set(results["timings"]) >= {"setup", "explanations", "stability", "total"}
    rsi = results["explanations"]["rsi"]["features.3"]
    assert len(rsi["completeness_error"]) == N_IMAGES and rsi["n_evaluations"] == 5
    gradcam = results["explanations"]["gradcam"]["features.3"]
    assert gradcam["completeness_error"] == [None] * N_IMAGES


def test_results_json_round_trips_through_the_typed_results(full_run: Path) -> None:
    """results.json reads back into EvaluationResults and writes out the same values, and
    the summary and the report render from the results read back as from the run's own.
    The per-unit numbers are in results-units.json.gz, not in results.json."""
    head = json.loads((full_run / "results.json").read_text(encoding="utf-8"))
    assert "metrics" not in head and head["per_unit"]["file"] == "results-units.json.gz"
    data = _results(full_run)
    loaded = decode(EvaluationResults, data)
    assert json.dumps(finite(encode(loaded))) == json.dumps(data)
    assert loaded.claims[0].key == "focus" and loaded.config.layers == list(LAYERS)
    assert loaded.units["gridpg"].unit == "cell"
    summary = (full_run / "summary.md").read_text(encoding="utf-8")
    assert markdown_summary(loaded) == summary

    def without_images_and_gallery(text: str) -> str:
        text = re.sub(r"<h2>Gallery</h2>.*?<h2>Notes</h2>", "", text, flags=re.DOTALL)
        return re.sub(r"<img[^>]*>", "", text)

    written = (full_run / "report.html").read_text(encoding="utf-8")
    again = render_report(Evaluation(loaded, [], {}))
    assert without_images_and_gallery(again) == without_images_and_gallery(written)
    assert len(_data_images(again)) == 5  # every plot, drawn from the values read back


def test_claims_are_judged_per_layer(full_run: Path) -> None:
    claims = _results(full_run)["claims"]
    assert [c["key"] for c in claims] == ["focus", "stability"]
    for claim in claims:
        assert set(claim["layers"]) == set(LAYERS)
        for entry in claim["layers"].values():
            assert entry["verdict"] in ("holds", "does not hold", "inconclusive")
            for m in entry["measures"]:
                # On all units the p-values are Holm-adjusted: no verdict above 0.05.
                holm_fails = m["group"] == "all" and (m["p_holm"] is None or m["p_holm"] >= 0.05)
                expected = verdict(m["low"], m["high"], m["better"])
                assert m["verdict"] == ("inconclusive" if holm_fails else expected)
                if m["group"] != "all":
                    assert m["p_holm"] is None
                if m["group"] == "all":
                    assert m["mean"] == pytest.approx(m["rsi"] - m["gradcam"])


def test_same_seed_gives_the_same_numbers(folder: Path) -> None:
    def run(seed: int) -> dict[str, Any]:
        options = EvaluationOptions(
            model="tinydiscs:build", images=Path("images"), layers=(LAYERS[1],),
            methods=("rsi", "gradcam"), steps=4, seed=seed, curve_points=4, sanity_images=1,
            sanity_stages=1, stability_steps=(), noise_samples=1, bootstrap=100,
        )
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(folder)
            results = finite(encode(evaluate(options, echo=lambda line: None).results))
        del results["timings"]
        return results

    first, again, other = run(0), run(0), run(1)
    assert json.dumps(first) == json.dumps(again)
    found, changed = first["metrics"], other["metrics"]
    assert found["deletion_auc"]["random"] != changed["deletion_auc"]["random"]
    assert found["deletion_auc"]["rsi"] == changed["deletion_auc"]["rsi"]


# --------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------


def test_bootstrap_interval() -> None:
    rng = np.random.default_rng(0)
    assert encode(bootstrap_mean([2.0] * 5, 100, rng)) == {
        "n": 5, "mean": 2.0, "low": 2.0, "high": 2.0
    }
    assert encode(bootstrap_mean([3.0], 100, rng)) == {
        "n": 1, "mean": 3.0, "low": None, "high": None
    }
    assert bootstrap_mean([], 100, rng).mean is None
    values = np.random.default_rng(1).normal(1.0, 2.0, size=400)
    stats = bootstrap_mean(values, 2000, np.random.default_rng(2))
    half = 1.96 * values.std() / np.sqrt(values.size)  # the normal approximation
    assert stats.mean == pytest.approx(values.mean())
    assert stats.low == pytest.approx(values.mean() - half, abs=0.1 * half)
    assert stats.high == pytest.approx(values.mean() + half, abs=0.1 * half)
    again = bootstrap_mean(values, 2000, np.random.default_rng(2))
    assert again == stats


def _hand_written_bootstrap(x: np.ndarray, resamples: int, rng: np.random.Generator) -> Any:
    """The bootstrap that scipy.stats.bootstrap replaced: means of the resamples, and their
    2.5 and 97.5 percentiles."""
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    return means, np.percentile(means, [2.5, 97.5])


def test_scipy_bootstrap_draws_the_hand_written_resamples() -> None:
    """scipy.stats.bootstrap (percentile, seeded) draws the same resamples as the
    hand-written bootstrap it replaced: its bootstrap distribution is equal element by
    element; the intervals differ only by a few units in the last place (scipy's quantile
    interpolates in another order), far below the three digits that the evidence page quotes."""
    from scipy import stats

    for seed in range(40):
        draw = np.random.default_rng(seed)
        n, resamples = int(draw.integers(2, 40)), int(draw.choice([100, 200, 1000]))
        x = draw.normal(size=n) * 10 ** draw.uniform(-6, 1)
        y = draw.normal(size=n)
        means, ours = _hand_written_bootstrap(x, resamples, np.random.default_rng([seed, 1]))
        found = stats.bootstrap(
            (x,), np.mean, n_resamples=resamples, method="percentile",
            rng=np.random.default_rng([seed, 1]),
        )
        assert np.array_equal(found.bootstrap_distribution, means)
        interval = bootstrap_mean(x, resamples, np.random.default_rng([seed, 1]))
        assert [interval.low, interval.high] == pytest.approx(ours, rel=1e-12, abs=1e-300)
        assert interval.mean == x.mean()

        _, ours = _hand_written_bootstrap(x - y, resamples, np.random.default_rng([seed, 2]))
        paired = paired_bootstrap_mean(x, y, resamples, np.random.default_rng([seed, 2]))
        assert [paired.low, paired.high] == pytest.approx(ours, rel=1e-12, abs=1e-300)
        assert paired.mean == (x - y).mean()
        for better in ("higher", "lower"):
            assert verdict(paired.low, paired.high, better) == verdict(*ours, better)


def test_verdicts() -> None:
    assert verdict(0.1, 0.2, "higher") == "holds"
    assert verdict(-0.2, -0.1, "higher") == "does not hold"
    assert verdict(-0.2, -0.1, "lower") == "holds"
    assert verdict(0.1, 0.2, "lower") == "does not hold"
    assert verdict(-0.1, 0.1, "higher") == "inconclusive"
    assert verdict(0.0, 0.0, "higher") == "inconclusive"
    assert verdict(None, None, "lower") == "inconclusive"


def _claims_for(rsi: dict[str, list[float]], gradcam: dict[str, list[float]]) -> dict[str, str]:
    n = len(rsi["gridpg"])
    units = {m: Units("image", [str(i) for i in range(n)], [False] * n) for m in rsi}
    metrics = {m: {"rsi": {"head": rsi[m]}, "gradcam": {"head": gradcam[m]}} for m in rsi}
    claims = judge_claims(metrics, units, seed=0, resamples=200)
    return {c.key: c.layers["head"].verdict for c in claims}


def test_claim_verdicts_combine_metrics() -> None:
    grid = [0.5, 0.6, 0.4, 0.7, 0.5, 0.6]
    better = [g + 0.1 for g in grid]
    base = {"gridpg": grid, "deletion_auc": grid, "dtype_max_abs": grid}
    # RSI better on GridPG (higher) and on deletion (lower), more stable (lower difference).
    rsi = {"gridpg": better, "deletion_auc": [g - 0.1 for g in grid],
           "dtype_max_abs": [g - 0.1 for g in grid]}
    assert _claims_for(rsi, base) == {"focus": "holds", "stability": "holds"}
    assert _claims_for(base, rsi) == {"focus": "does not hold", "stability": "does not hold"}
    assert _claims_for(base, base) == {"focus": "inconclusive", "stability": "inconclusive"}
    mixed = {**rsi, "deletion_auc": better}  # GridPG for, deletion against
    assert _claims_for(mixed, base)["focus"] == "inconclusive"


def test_sanity_stages_are_evenly_spaced_from_the_output() -> None:
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(7)])
    assert sanity_stages(model, 4) == ["6", "4", "2", "0"]
    assert sanity_stages(model, 1) == ["6"]
    assert sanity_stages(model, 10) == [str(i) for i in range(6, -1, -1)]


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--images", "nowhere"], "--images 'nowhere' not found"),
        (["--images", "images", "--methods", "rsi,nope"], "unknown method 'nope'"),
        (["--images", "images", "--model", "tinydiscs:build", "-l", "fc"],
         "layer 'fc' cannot be explained"),
        (["--images", "images", "--stability-steps", "8,x"], "--stability-steps must be"),
        (["--images", "images", "--steps", "0"], "--steps"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(
    folder: Path, args: list[str], fragment: str
) -> None:
    result = _invoke(folder, ["evaluate", *args, "--out", "never"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0]
    assert not (folder / "never" / "results.json").exists()


# --------------------------------------------------------------------------------------
# The HTML report
# --------------------------------------------------------------------------------------


def _data_images(text: str) -> list[str]:
    return re.findall(r'<img[^>]*src="data:image/(?:png|jpeg);base64,([A-Za-z0-9+/=]+)"', text)


def test_report_is_self_contained(full_run: Path) -> None:
    text = (full_run / "report.html").read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert len(re.findall(r"<img", text)) == len(_data_images(text))
    # Plots: deletion, insertion, GridPG, randomisation, stability vs m. Gallery: per image,
    # 3 rows (2 layers and the input) of the image, plus 11 overlays (method x layer).
    assert len(_data_images(text)) == 5 + N_IMAGES * (3 + 2 * 5 + 1)
    for title in ("Verdicts on the paper", "Deletion AUC", "GridPG", "Max-sensitivity",
                  "Gallery", "Stability vs m", "difference [95% CI]", "Holm p"):
        assert title in text
    assert text.count("<table") >= 2 + len(METRICS) + N_IMAGES
    for encoded in _data_images(text)[:5]:
        plot = Image.open(io.BytesIO(base64.b64decode(encoded)))
        assert plot.format == "PNG" and min(plot.size) > 100
    thumb = Image.open(io.BytesIO(base64.b64decode(_data_images(text)[-1])))
    assert thumb.format == "JPEG" and thumb.size == (128, 128)
    summary = (full_run / "summary.md").read_text(encoding="utf-8")
    assert "| features.3 | **claim** |" in summary


def _install_chromium() -> str | None:
    """Debian's chromium, installed with apt-get when missing and running as root."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found or getattr(os, "geteuid", lambda: 1)() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    try:
        if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=300)
            subprocess.run(install, env=env, capture_output=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium() -> Iterator[str]:
    found = _install_chromium()
    if found is None:
        pytest.skip(
            "headless Chromium is not available: install Debian's chromium package "
            "(apt-get install chromium) to check the report's rendering"
        )
    yield found


def _headless(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


@pytest.mark.browser
def test_report_renders_in_headless_chromium(
    full_run: Path, chromium: str, tmp_path: Path
) -> None:
    url = (full_run / "report.html").resolve().as_uri()
    dom = _headless(chromium, tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<table") >= 2 + len(METRICS)
    html = (full_run / "report.html").read_text(encoding="utf-8")
    assert len(_data_images(dom.stdout)) == len(_data_images(html))
    assert "Verdicts on the paper" in dom.stdout and "Gallery" in dom.stdout

    shot = tmp_path / "report.png"
    found = _headless(
        chromium, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1200,12000",
        "--hide-scrollbars", url,
    )
    assert found.returncode == 0 and shot.exists(), found.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
    assert pixels.shape[:2] == (12000, 1200)
    assert pixels.std() > 20  # not a blank page
    top = pixels[:2000]
    assert (top.max(axis=2) < 100).mean() > 0.005  # text and table lines were drawn
    # The plots and overlays: strongly coloured pixels, which no text or table has.
    colourful = (pixels.max(axis=2) - pixels.min(axis=2)) > 120
    assert colourful.mean() > 0.002


def test_output_files_are_replaced_whole_or_not_at_all(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """results.json, results-units.json.gz, report.html and summary.md go through
    save_json / write_atomically / save_text: a write that fails half-way (a full disk)
    leaves the previous file and no temporary file."""
    import inspect

    from rsigradcam.app.evaluation import save_results, write_evaluation
    from rsigradcam.files import save_json, save_text

    source = inspect.getsource(write_evaluation)
    assert source.count("save_text(") == 2 and source.count("save_results(") == 1
    source = inspect.getsource(save_results)
    assert source.count("save_json(") == 2 and source.count("write_atomically(") == 1
    target = tmp_path / "report.html"
    save_text("old", target)
    real_write_text = Path.write_text

    def disk_full(self: Path, text: str, encoding: str | None = None) -> int:
        real_write_text(self, text[:3], encoding=encoding)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_text("new contents", target)
    with pytest.raises(OSError, match="No space"):
        save_json({"new": 1}, tmp_path / "results.json")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
