"""Is ``steps="auto"`` at least as converged as uniform m = 50? The 18 benchmark cases.

For each of the paper's six sample images and the layers ``blocks.5``, ``blocks.10`` and
``head`` of the embedded EfficientNet-Lite0 (all three cut the graph, so completeness
holds), this compares uniform m = 50 (51 evaluations, the paper's default) with
``steps="auto"`` at its default settings (``tolerance=0.1``, ``max_steps=127``):
evaluations, completeness error, and the Pearson correlation of the heatmap with the
uniform trapezoid m = 512 heatmap. Where completeness holds, ``steps="auto"`` also stops
only when the completeness error is at most ``min(tolerance, e_0 (8 / 50)^1.5)`` (``e_0``:
the sum of the absolute interval residuals of its first, uniform m = 8 partition; see
:mod:`rsigradcam.core.adaptive`). A
last row is the case of issue 16 (scikit-image's ``chelsea``, ``blocks.5``). The defaults
were chosen offline with ``benchmarks/auto_rules.py``; this confirms them in the real code
path.

Run from the repository root (needs the paper samples in ``../shared``; 1.5 to 3 minutes on
2 CPU cores)::

    python benchmarks/auto_completeness.py   # writes benchmarks/auto_completeness.md and .json
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rsigradcam import RSIGradCAM
from rsigradcam.app.bench import heatmap_correlation
from rsigradcam.app.samples import find_paper_samples
from rsigradcam.core.adaptive import AUTO_MAX_STEPS, AUTO_TOLERANCE
from rsigradcam.explanation import Explanation
from rsigradcam.io import load_image
from rsigradcam.models import efficientnet_lite0

LAYERS = ("blocks.5", "blocks.10", "head")
TOLERANCES = (AUTO_TOLERANCE,)  # the default; the keys of Case.auto
TARGET = 0.999
REFERENCE = 512
UNIFORM = 50


@dataclass
class Run:
    """One explanation: its evaluations, completeness error and correlation with m = 512."""

    evaluations: int
    completeness: float
    correlation: float


@dataclass
class Case:
    """One image and layer: uniform m = 50 and ``steps="auto"`` at each tolerance."""

    image: str
    layer: str
    uniform: Run
    auto: dict[str, Run]
    completeness_512: float


def _run(exp: Explanation, reference: Explanation) -> Run:
    return Run(
        exp.n_evaluations,
        float(exp.completeness_error[0]),
        heatmap_correlation(exp.heatmap, reference.heatmap),
    )


def measure(
    model: torch.nn.Module, name: str, image: torch.Tensor, layers: tuple[str, ...]
) -> list[Case]:
    """The cases of one image."""
    reference = RSIGradCAM(model, list(layers), steps=REFERENCE)(image)
    uniform = RSIGradCAM(model, list(layers), steps=UNIFORM)(image)
    assert isinstance(reference, dict) and isinstance(uniform, dict)
    cases = []
    for layer in layers:
        auto = {}
        for tol in TOLERANCES:
            exp = RSIGradCAM(model, layer, steps="auto", tolerance=tol)(image)  # default max
            assert isinstance(exp, Explanation)
            auto[f"{tol:g}"] = _run(exp, reference[layer])
        cases.append(
            Case(
                name,
                layer,
                _run(uniform[layer], reference[layer]),
                auto,
                float(reference[layer].completeness_error[0]),
            )
        )
        print(_row(cases[-1]), flush=True)
    return cases


def _cell(run: Run) -> str:
    return f"{run.evaluations} / {run.completeness:.4f} / {run.correlation:.4f}"


def _row(case: Case) -> str:
    autos = []
    for tol in TOLERANCES:
        run = case.auto[f"{tol:g}"]
        mark = "yes" if run.completeness <= case.uniform.completeness else "**no**"
        autos += [_cell(run), mark]
    return (
        f"| {case.image} | {case.layer} | {_cell(case.uniform)} | "
        + " | ".join(autos)
        + f" | {case.completeness_512:.4f} |"
    )


def markdown(cases: list[Case], seconds: float) -> str:
    """The report."""
    columns = "".join(f" auto tol {tol:g} | ≤ m=50? |" for tol in TOLERANCES)
    paper = [c for c in cases if c.image != "chelsea"]
    lines = [
        "# steps=\"auto\" against uniform m = 50",
        "",
        f"EfficientNet-Lite0 (embedded), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {seconds:.0f} s. Each cell: evaluations / "
        "completeness error / Pearson correlation of the heatmap with the uniform trapezoid "
        f"m = {REFERENCE} heatmap. '≤ m=50?': whether auto's completeness error is at most "
        f"uniform m = 50's. auto runs at its defaults (tolerance={AUTO_TOLERANCE:g}, "
        f"max_steps={AUTO_MAX_STEPS}). The last row is the case of issue 16.",
        "",
        f"| image | layer | uniform m=50 |{columns} completeness m=512 |",
        "|---|---|---:|" + "---:|:-:|" * len(TOLERANCES) + "---:|",
        *(_row(c) for c in cases),
        "",
    ]
    uniform_below = sum(c.uniform.correlation < TARGET for c in paper)
    for tol in TOLERANCES:
        runs = [c.auto[f"{tol:g}"] for c in paper]
        pairs = list(zip(runs, paper, strict=True))
        wins = sum(r.completeness <= c.uniform.completeness for r, c in pairs)
        converged = sum(r.correlation >= TARGET for r in runs)
        better = sum(r.correlation >= c.uniform.correlation for r, c in pairs)
        evals = [r.evaluations for r in runs]
        lines.append(
            f"- tolerance {tol:g}: completeness error ≤ uniform m = 50's in {wins} of "
            f"{len(paper)} cases; heatmap correlation ≥ {TARGET} in {converged} of "
            f"{len(paper)} (uniform m = 50: {len(paper) - uniform_below} of {len(paper)}) "
            f"and ≥ m = 50's in {better} of {len(paper)}; evaluations: mean "
            f"{sum(evals) / len(evals):.1f}, median {sorted(evals)[len(evals) // 2]}, "
            f"{min(evals)}-{max(evals)}, {sum(e > 128 for e in evals)} above 128 "
            f"(uniform m = 50 uses {UNIFORM + 1})."
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    """Measure every case and write the Markdown and JSON reports next to this file."""
    from skimage import data

    samples = find_paper_samples()
    if samples is None:
        print("the paper samples were not found (../shared/data/paper-samples)", file=sys.stderr)
        return 1
    model = efficientnet_lite0()
    start = time.perf_counter()
    cases: list[Case] = []
    for path in sorted(samples.glob("*.jpg")):
        cases += measure(model, path.stem, load_image(path)[0], LAYERS)
    chelsea = load_image(data.chelsea())[0]  # type: ignore[no-untyped-call]
    cases += measure(model, "chelsea", chelsea, ("blocks.5",))
    seconds = time.perf_counter() - start
    here = Path(__file__).parent
    (here / "auto_completeness.md").write_text(markdown(cases, seconds))
    (here / "auto_completeness.json").write_text(
        json.dumps([asdict(c) for c in cases], indent=2)
    )
    print(f"wrote {here / 'auto_completeness.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
