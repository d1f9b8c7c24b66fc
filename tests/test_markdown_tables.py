"""Every Markdown table the project writes or commits is well formed (issue 16, item 2).

A GitHub (GFM) table is a header row, a delimiter row (``|---|:---:|``) with as many cells,
then body rows up to the first blank line. GitHub splits every row on each ``|`` that is not
escaped as ``\\|``, inside code spans as well, so a cell text with a bare ``|`` (a metric
named ``max |Δ|``, a layer or class name) gives its row more cells than the header, and
GitHub silently drops the extra ones. The parser below checks the raw text the same way.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rsigradcam.app.bench import ConvergenceRow, SpeedRow, bench_markdown
from rsigradcam.app.cli import app
from rsigradcam.app.evaluation import EvaluationResults, markdown_summary, read_results
from rsigradcam.files import md_cell
from rsigradcam.serialization import decode
from tests.helpers import DISCS_MODULE, load_benchmark, load_module

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted(
    [
        ROOT / "README.md",
        *(p for p in (ROOT / "docs").rglob("*.md") if "generated" not in p.parts),
        *(ROOT / "benchmarks").glob("*.md"),
    ]
)
_DELIMITER = re.compile(r"^\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


@dataclass(frozen=True)
class Table:
    """One table: where its header is (1-based line) and its rows' cells, header first."""

    line: int
    rows: list[list[str]]


def split_row(line: str) -> list[str]:
    """A GFM row's cells: split on each ``|`` not preceded by a backslash, without the
    optional leading and trailing pipe."""
    text = line.strip()
    if text.startswith("|"):
        text = text[1:]
    if text.endswith("|") and not text.endswith("\\|"):
        text = text[:-1]
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", text)]


def tables(markdown: str) -> list[Table]:
    """Every GFM table of ``markdown`` (not those inside fenced code blocks)."""
    lines = markdown.splitlines()
    found: list[Table] = []
    fence: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        opening = _FENCE.match(line)
        if fence is not None:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = None
            i += 1
            continue
        if opening:
            fence = opening.group(1)
            i += 1
            continue
        below = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if "|" in line and "-" in below and _DELIMITER.match(below):
            rows = [split_row(line), split_row(below)]
            j = i + 2
            while j < len(lines) and lines[j].strip():
                rows.append(split_row(lines[j]))
                j += 1
            found.append(Table(i + 1, rows))
            i = j
            continue
        i += 1
    return found


def malformed(markdown: str) -> list[str]:
    """One line per row whose cell count differs from its table's header."""
    problems = []
    for table in tables(markdown):
        header = len(table.rows[0])
        for k, row in enumerate(table.rows[1:], start=1):
            if len(row) != header:
                problems.append(f"table at line {table.line}, row {k}: {len(row)} cells, "
                                f"header {header}: {' | '.join(row)}")
    return problems


# ------------------------------------------------------------------ the parser and md_cell


def test_the_parser_counts_cells_as_github_does() -> None:
    text = "\n".join([
        "| a | b |", "|---|---:|", "| 1 | x \\| y |", "| `p|q` | 2 |", "",
        "```", "| not | a | table |", "|---|---|---|", "| 1 |", "```",
        "c | d", "--- | ---", "3 | 4",
    ])
    found = tables(text)
    assert [t.line for t in found] == [1, 11]
    assert found[0].rows[2] == ["1", "x \\| y"]
    assert found[0].rows[3] == ["`p", "q`", "2"]  # GFM splits inside code spans too
    assert malformed(text) == ["table at line 1, row 3: 3 cells, header 2: `p | q` | 2"]
    assert found[1].rows == [["c", "d"], ["---", "---"], ["3", "4"]]


def test_md_cell_escapes_pipes_and_joins_lines() -> None:
    assert md_cell("float32 vs float64: max |Δ|") == "float32 vs float64: max \\|Δ\\|"
    assert md_cell("one\nrow,\r\n  please") == "one row, please"
    assert md_cell(0.5) == "0.5"
    row = "| " + " | ".join(md_cell(c) for c in ["a|b", "`c|d`", "e\nf"]) + " |"
    assert split_row(row) == ["a\\|b", "`c\\|d`", "e f"]


# ------------------------------------------------------------------ what the project writes


@pytest.fixture(scope="module")
def evaluation_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """results.json and summary.md of a small `rsigradcam evaluate` run (the tiny disc
    classifier of tests/helpers.py, Grad-CAM and RSI, every metric on)."""
    folder = tmp_path_factory.mktemp("markdown")
    (folder / "tinydiscs.py").write_text(DISCS_MODULE)
    module = load_module(folder / "tinydiscs.py", "tinydiscs_markdown")
    from PIL import Image

    (folder / "images").mkdir()
    for i in range(4):
        Image.fromarray(module.picture(i, i)).save(folder / "images" / f"disc{i}.png")
    args = [
        "evaluate", "--images", "images", "--model", "tinydiscs:build", "-l", "features.1",
        "-l", "features.3", "--method", "rsi,gradcam", "--steps", "4", "--curve-points",
        "4", "--sanity-images", "2", "--sanity-stages", "1", "--stability-steps", "2",
        "--reference-steps", "8", "--steps-images", "2", "--noise-samples", "1",
        "--bootstrap", "50", "--out", "run",
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = folder / "run"
    return {
        "json": read_results(out),
        "summary": (out / "summary.md").read_text(encoding="utf-8"),
    }


def test_summary_md_tables_are_well_formed(evaluation_results: dict[str, Any]) -> None:
    summary = evaluation_results["summary"]
    found = tables(summary)
    assert len(found) >= 2 + 1  # the two claims, then one table per metric
    assert "float32 vs float64: max \\|Δ\\| ↓" in summary
    assert malformed(summary) == []


def test_summary_md_escapes_layer_names(evaluation_results: dict[str, Any]) -> None:
    """A layer whose name has a pipe (names come from the user's model) stays one cell,
    in the rows of the claims' tables and in the header of the metrics' tables."""
    text = json.dumps(evaluation_results["json"]).replace('"features.1"', '"feat|ures.1"')
    summary = markdown_summary(decode(EvaluationResults, json.loads(text)))
    assert "| feat\\|ures.1 | **claim** |" in summary
    assert "| method | feat\\|ures.1 | features.3 |" in summary
    assert malformed(summary) == []


def _bench_markdown(name: str) -> str:
    speed = [SpeedRow(f"rsigradcam {name}", 0.5, [0.5], 1.0, 1.0, 12.0),
             SpeedRow("captum (floor)", 0.25, [0.25], 1.0, 0.5, 10.0)]
    convergence = [ConvergenceRow(name, name, name, 0.8, {16: 0.99, 64: 0.999}, 65, 0.01,
                                  {0.1: (33, 0.998), 0.05: (41, 0.9991)})]
    meta = {"device_name": "cpu", "torch": "x", "threads": 1, "image": name, "layer": name,
            "steps": 4, "repeats": 1, "target_corr": 0.999}
    return bench_markdown(meta, speed, convergence, {"max_abs_heatmap_diff": 1e-7})


def test_bench_results_md_tables_are_well_formed() -> None:
    plain = _bench_markdown("chelsea")
    assert [len(t.rows[0]) for t in tables(plain)] == [5, 8]
    assert malformed(plain) == []
    piped = _bench_markdown("a|b\nc")  # an image, layer or class name with a pipe
    assert "| a\\|b c (a\\|b c, 0.80) | a\\|b c |" in piped
    assert malformed(piped) == []


def test_limits_md_tables_are_well_formed() -> None:
    row = {"image": "cat|dog", "layer": "blocks.5", "uniform_17": 0.99, "uniform_33": 0.995,
           "uniform_65": 0.998, "uniform_129": 0.9995, "order": 1.1, "coherence": 1.2,
           "density_33": 0.997}
    text = load_benchmark("limits")._markdown([row, {**row, "image": "chelsea"}])
    assert [len(t.rows[0]) for t in tables(text)] == [9]
    assert "| cat\\|dog | blocks.5 |" in text
    assert malformed(text) == []


def test_ceiling_md_tables_are_well_formed() -> None:
    sizes = {1: 0.31, 2: 0.26, 4: 0.21, 8: 0.18, 17: 0.23, 51: 0.36}
    results = {
        "cpu": "CPU | with a pipe", "torch": "2.13.0", "threads": 2, "points": 51,
        "gemm_gflops": 347.0, "macs_per_image": 385e6, "gflop_per_call": 39.3,
        "conv_seconds_by_batch": sizes, "conv_best_batch": 8,
        "conv_seconds_single_batch": 0.184, "conv_seconds_per_layer_best": 0.164,
        "eager_forward_by_batch": {2: 0.64, 4: 0.7}, "folded_forward_by_batch": {2: 0.44},
        "frozen_forward_by_batch": {4: 0.256, 8: 0.27}, "frozen_compile_seconds": 10.0,
        "ours_seconds": 0.46, "captum_seconds": 0.866,
        "captum_method": "captum LayerConductance, internal_batch_size=8", "goal_ratio": 3.5,
    }
    text = load_benchmark("ceiling").markdown(results)
    assert [len(t.rows[0]) for t in tables(text)] == [5, 7]
    assert malformed(text) == []
    assert "| what Captum >= 3.5x ours needs of ours | 0.247 |" in text
    assert "Captum at its best is 1.88x ours" in text


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_markdown_tables_are_well_formed(path: Path) -> None:
    assert malformed(path.read_text(encoding="utf-8")) == []


def test_the_committed_files_have_tables() -> None:
    """The check above reads real tables (README, docs, benchmarks all have some)."""
    counts = {
        p.relative_to(ROOT).as_posix(): len(tables(p.read_text(encoding="utf-8")))
        for p in COMMITTED
    }
    assert counts["README.md"] >= 2 and counts["docs/evidence.md"] >= 3
    assert counts["benchmarks/results.md"] >= 2 and counts["benchmarks/limits.md"] >= 1
    assert counts["benchmarks/ceiling.md"] >= 2


# ------------------------------------------------------------------ the authors' notebooks

AUTHORS = ROOT / "docs" / "guides" / "authors-notebooks.md"


@pytest.mark.slow
def test_reproducing_the_authors_notebooks_example_runs() -> None:
    """The guide's Python example runs as written, and what it says holds: their
    mean over channels is a scale factor that the normalisation removes, the upsampling is
    bilinear without antialiasing, and completeness does not apply to their variants."""
    import torch
    import torch.nn.functional as F

    from rsigradcam.core.reduction import normalize_heatmap

    section = AUTHORS.read_text(encoding="utf-8")
    for claim in ("`grad_relu=True`", "`guided=True`", "`--grad-relu`", "`--guided`",
                  "`layer4.2.conv3`", "`layer3.5.conv3`", "`features.36`", "`features.27`",
                  "`block5_pool`", "1 − 1e-8", "2.1e-4"):
        assert claim in section
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1
    namespace: dict[str, Any] = {}
    exec(compile(blocks[0], str(AUTHORS), "exec"), namespace)
    paper, pytorch, keras = namespace["paper"], namespace["pytorch"], namespace["keras"]
    assert int(paper.targets[0]) == int(pytorch.targets[0]) == 285  # Egyptian cat
    assert torch.isfinite(paper.completeness_error).all()
    assert torch.isnan(pytorch.completeness_error).all()
    assert torch.isnan(keras.completeness_error).all()
    assert not torch.allclose(paper.heatmap, pytorch.heatmap, atol=1e-3)  # by design
    for alone, shared in zip((paper, pytorch, keras), namespace["shared"], strict=True):
        assert torch.equal(alone.heatmap, shared.heatmap)
    their = namespace["their_layer_map"]
    torch.testing.assert_close(normalize_heatmap(their, (224, 224)), pytorch.heatmap,
                               rtol=0, atol=1e-5)
    up = F.interpolate(their.unsqueeze(1), size=(224, 224), mode="bilinear",
                       align_corners=False, antialias=False)[:, 0]
    low, high = up.amin(dim=(1, 2), keepdim=True), up.amax(dim=(1, 2), keepdim=True)
    # Their min-max adds 1e-8 to the range: a relative change of 1e-8 / range, no more.
    theirs = (up - low) / (high - low + 1e-8)
    torch.testing.assert_close(theirs, pytorch.heatmap, rtol=0,
                               atol=1e-5 + 2e-8 / float((high - low).min()))
