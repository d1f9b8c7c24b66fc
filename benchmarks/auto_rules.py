"""Offline search for a stopping rule of ``steps="auto"``: simulate rules exactly on dumps.

``steps="auto"`` (:mod:`rsigradcam.core.adaptive`) refines dyadically from a uniform m = 8
partition, so every partition it can reach is a subset of the grid t = i / 512. This script
records the activations A and gradients G of the embedded EfficientNet-Lite0 at all 513
grid points for the 18 benchmark cases (the paper's six images x ``blocks.5``,
``blocks.10``, ``head``; plus issue 16's ``chelsea`` at ``blocks.5``) and ``y(x) - y(x')``,
once, into a cache file; then it replays the refinement of :func:`run_adaptive` on the
grid for a set of candidate stopping rules and reports, per rule, the evaluations, the
completeness error and the heatmap correlation with the m = 512 map, against uniform
m = 50 (its completeness error and correlation are measured on the same dump).

Run from the repository root (needs the paper samples in ``../shared``)::

    python benchmarks/auto_rules.py dump /tmp/auto_rules   # about 3 minutes on 2 cores
    python benchmarks/auto_rules.py rules /tmp/auto_rules  # seconds
"""

from __future__ import annotations

import itertools
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from rsigradcam.app.bench import heatmap_correlation
from rsigradcam.app.samples import find_paper_samples
from rsigradcam.core.adaptive import MATCH_ORDER, MATCH_STEPS
from rsigradcam.core.reduction import cam_reduction, normalize_heatmap
from rsigradcam.io import load_image
from rsigradcam.models import efficientnet_lite0

# The recorder of limits.py, beside this script (run as python benchmarks/auto_rules.py).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from limits import FINE, LAYERS, record_path


def dump(out: Path) -> None:
    """Record A, G at t = i / 512 and the score gap of every case into ``out/<image>.pt``."""
    from skimage import data

    samples = find_paper_samples()
    assert samples is not None, "the paper samples (../shared/data/paper-samples) are needed"
    out.mkdir(parents=True, exist_ok=True)
    model = efficientnet_lite0()
    images = [(p.stem, load_image(p)[0]) for p in sorted(samples.glob("*.jpg"))]
    images.append(("chelsea", load_image(data.chelsea())[0]))  # type: ignore[no-untyped-call]
    for name, image in images:
        start = time.perf_counter()
        # float32 copies: the 19 cases' recordings take about 2.4 GB as they are.
        paths, explained, gap = record_path(model, image, torch.float32)
        record: dict[str, object] = {"gap": gap}
        for layer, (acts, grads) in paths.items():
            record[layer] = (acts, grads)
            record[layer + ":completeness"] = float(explained[layer].completeness_error[0])
        torch.save(record, out / f"{name}.pt")
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)


# --------------------------------------------------------------------------- replay


@dataclass
class Recorded:
    """One case's recorded path on the grid, reduced to what the replay needs."""

    image: str
    layer: str
    acts: Tensor  # (513, K, h, w), float64
    grads: Tensor
    gap: float
    reference: Tensor  # the m = 512 heatmap
    uniform: tuple[float, float]  # uniform m = 50: completeness error, correlation
    cache: dict[tuple[int, int], tuple[Tensor, float, Tensor]]
    scores: Tensor | None = None  # y(t_i) - y(x') on the grid (see :meth:`residual`)

    def interval(self, i: int, j: int) -> tuple[Tensor, float, Tensor]:
        """(trapezoid term mean_hw, trapezoid term sum, indicator term mean_hw) of [i, j]."""
        key = (i, j)
        if key not in self.cache:
            da = self.acts[j] - self.acts[i]
            term = 0.5 * (self.grads[i] + self.grads[j]) * da
            ind = (0.5 * (self.grads[j] - self.grads[i]) * da).mean(dim=(1, 2))
            self.cache[key] = (term.mean(dim=(1, 2)), float(term.sum()), ind)
        return self.cache[key]

    def residual(self, i: int, j: int) -> float:
        """``|trapezoid sum - (y_j - y_i)| / |gap|`` of [i, j], the library's :func:`_residual`.

        The dump holds no y(t), so y is the fine-grid trapezoid sum (cumulated over the
        one-step intervals): the replay measures each residual against the m = 512 sum,
        whose own completeness error it cannot see (at most 0.036 of the gap, beagle
        ``blocks.5``).
        """
        if self.scores is None:
            steps = torch.tensor([self.interval(q, q + 1)[1] for q in range(FINE)])
            self.scores = torch.cat([torch.zeros(1), steps.double().cumsum(0)])
        change = float(self.scores[j] - self.scores[i])
        return abs(self.interval(i, j)[1] - change) / max(abs(self.gap), 1e-12)


@dataclass
class Round:
    """The state after one round of the replay."""

    n: int  # evaluations so far
    added: int
    weights: Tensor
    layer_map: Tensor
    completeness: float
    change: float  # relative change of the layer map in this round (nan in the first)
    spread: float  # spread of the intervals' residuals, sqrt(sum r_ij^2)


def _state(path: Recorded, pts: list[int], prev: Round | None) -> Round:
    terms = [path.interval(i, j) for i, j in itertools.pairwise(pts)]
    weights = torch.stack([t[0] for t in terms]).sum(0)
    total = sum(t[1] for t in terms)
    layer_map = torch.relu(torch.einsum("k,khw->hw", weights, path.acts[-1]))
    comp = abs(total - path.gap) / max(abs(path.gap), 1.1920929e-07)
    change = math.nan
    if prev is not None:
        norm = float(layer_map.norm())
        change = float((layer_map - prev.layer_map).norm()) / norm if norm > 0 else 0.0
    added = len(pts) - (prev.n if prev is not None else 0)
    spread = math.sqrt(sum(path.residual(i, j) ** 2 for i, j in itertools.pairwise(pts)))
    return Round(len(pts), added, weights, layer_map, comp, change, spread)


Rule_ = Callable[[list[Round]], bool]


def replay(
    path: Recorded,
    stop: Rule_,
    initial: int = 8,
    fraction: float = 0.5,
    max_steps: int = 256,
    weight: float = 0.0,
) -> list[Round]:
    """The rounds :func:`run_adaptive` would run on this path with the stopping rule ``stop``.

    ``weight``: an interval's score is the larger of its map indicator and ``weight`` times
    its residual (:data:`~rsigradcam.core.adaptive.RESIDUAL_WEIGHT`; 0: the map alone).
    """
    pts = list(range(0, FINE + 1, FINE // initial))
    rounds = [_state(path, pts, None)]
    budget = max_steps + 1
    final = path.acts[-1]
    while len(pts) < budget:
        scale = max(float(rounds[-1].layer_map.norm()), 1e-30)
        ind = torch.stack([path.interval(i, j)[2] for i, j in itertools.pairwise(pts)])
        scores = torch.einsum("ik,khw->ihw", ind, final).flatten(1).norm(dim=1) / scale
        if weight > 0:
            res = torch.tensor([path.residual(i, j) for i, j in itertools.pairwise(pts)])
            scores = torch.maximum(scores, weight * res.to(scores.dtype))
        widths = torch.tensor([j - i for i, j in itertools.pairwise(pts)])
        scores = torch.where(widths > 1, scores, torch.full_like(scores, -1.0))
        k = min(
            max(2, math.ceil(fraction * len(widths))), budget - len(pts), int((scores >= 0).sum())
        )
        if k <= 0:
            break
        top = scores.topk(k).indices.tolist()
        pts = sorted(pts + [(pts[i] + pts[i + 1]) // 2 for i in top])
        rounds.append(_state(path, pts, rounds[-1]))
        if stop(rounds):
            break
    return rounds


def heatmap(path: Recorded, weights: Tensor) -> Tensor:
    """The heatmap of ``weights`` at this path's layer, as the explainer makes it."""
    size = (int(path.reference.shape[-2]), int(path.reference.shape[-1]))
    return normalize_heatmap(cam_reduction(weights[None], path.acts[-1][None]), size)[0]


def load(file: Path, uniform: dict[tuple[str, str], tuple[float, float]]) -> list[Recorded]:
    """The cases of one recorded image, with their m = 512 heatmaps (float64 copies)."""
    record = torch.load(file)
    paths = []
    for layer in ("blocks.5",) if file.stem == "chelsea" else LAYERS:
        acts, grads = (x.double() for x in record[layer])
        weights = (0.5 * (grads[1:] + grads[:-1]) * (acts[1:] - acts[:-1])).mean(dim=(2, 3))
        ref = normalize_heatmap(cam_reduction(weights.sum(0)[None], acts[-1:]), (224, 224))[0]
        gap, figures = float(record["gap"]), uniform[(file.stem, layer)]
        path = Recorded(file.stem, layer, acts, grads, gap, ref, figures, {})
        total = sum(path.interval(i, i + 1)[1] for i in range(FINE))
        recorded = record[layer + ":completeness"]
        assert abs(abs(total - path.gap) / abs(path.gap) - recorded) < 1e-3, "replay mismatch"
        paths.append(path)
    return paths


def uniform_figures() -> dict[tuple[str, str], tuple[float, float]]:
    """Uniform m = 50's completeness error and correlation, from auto_completeness.json."""
    rows = json.loads((Path(__file__).parent / "auto_completeness.json").read_text())
    return {
        (r["image"], r["layer"]): (r["uniform"]["completeness"], r["uniform"]["correlation"])
        for r in rows
    }


def _fitted(rounds: list[Round]) -> float:
    """The completeness error at m = 50 predicted by a power law fitted to all rounds."""
    xs = [math.log(r.n) for r in rounds]
    ys = [math.log(max(r.completeness, 1e-12)) for r in rounds]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return math.exp(my + slope * (math.log(MATCH_STEPS + 1) - mx))


def rule(tolerance: float, target: str) -> Rule_:
    """Map estimate (change x points / added) below ``tolerance`` and a completeness target.

    ``target``: ``"power"`` (``min(tolerance, e_0 (8 / 50)^1.5)`` with ``e_0`` the first
    partition's completeness error), ``"spread"`` (the same with ``e_0`` the larger of
    that and the spread ``sqrt(sum r_ij^2)`` of its residuals, :mod:`core.adaptive`),
    ``"fitted"`` (a power law fitted to every round so far, evaluated at m = 50) or
    ``"none"``.
    """

    def stop(rounds: list[Round]) -> bool:
        last = rounds[-1]
        if last.change * last.n / last.added > tolerance:
            return False
        if target in ("power", "spread"):
            scale = float(((rounds[0].n - 1) / MATCH_STEPS) ** MATCH_ORDER)
            first = rounds[0].completeness
            if target == "spread":
                first = max(first, rounds[0].spread)
            goal = min(tolerance, first * scale)
        elif target == "fitted":
            goal = _fitted(rounds)
        else:
            return True
        return last.completeness <= goal

    return stop


@dataclass(frozen=True)
class Candidate:
    """One stopping rule and refinement pace."""

    name: str
    tolerance: float
    target: str
    fraction: float
    max_steps: int
    weight: float = 0.0  # residual weight of the bisection score (0: the map alone)


CANDIDATES = (
    Candidate("previous default", 0.01, "power", 0.5, 256),
    Candidate("previous, tolerance 0.1", 0.1, "power", 0.5, 256),
    Candidate("bisect 30 %, map only", 0.1, "none", 0.3, 127),
    Candidate("bisect 30 %, fitted completeness target", 0.2, "fitted", 0.3, 127),
    Candidate("bisect 30 %, tolerance 0.12", 0.12, "power", 0.3, 127),
    Candidate("bisect 30 %, tolerance 0.1", 0.1, "power", 0.3, 127),
    Candidate("+ residual score x3", 0.1, "power", 0.3, 127, 3.0),
    Candidate("+ residual score x3, tolerance 0.12", 0.12, "power", 0.3, 127, 3.0),
    Candidate(
        "**default**: + residual score x3, target from the spread of the first residuals",
        0.1, "spread", 0.3, 127, 3.0,
    ),
)


def rules(cache: Path) -> str:
    """Replay every candidate on every recorded case; the Markdown table."""
    uniform = uniform_figures()
    results: dict[str, list[tuple[int, bool, float]]] = {c.name: [] for c in CANDIDATES}
    for file in sorted(cache.glob("*.pt")):
        if file.stem == "chelsea":
            continue  # the 18 paper cases only
        for path in load(file, uniform):
            for c in CANDIDATES:
                rounds = replay(
                    path, rule(c.tolerance, c.target), fraction=c.fraction,
                    max_steps=c.max_steps, weight=c.weight,
                )
                corr = heatmap_correlation(heatmap(path, rounds[-1].weights), path.reference)
                wins = rounds[-1].completeness <= path.uniform[0]
                results[c.name].append((rounds[-1].n, wins, corr))
        print(f"{file.stem} replayed", flush=True)
    lines = [
        "| rule | mean | median | max | > 128 | completeness ≤ m=50's | correlation ≥ 0.999 "
        "| lowest correlation |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in CANDIDATES:
        rows = results[c.name]
        evals = sorted(r[0] for r in rows)
        lines.append(
            f"| {c.name} | {sum(evals) / len(evals):.1f} | {evals[len(evals) // 2]} "
            f"| {evals[-1]} | {sum(e > 128 for e in evals)} | {sum(r[1] for r in rows)} of "
            f"{len(rows)} | {sum(r[2] >= 0.999 for r in rows)} of {len(rows)} "
            f"| {min(r[2] for r in rows):.4f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    """``dump CACHE`` or ``rules CACHE`` (the latter writes benchmarks/auto_rules.md)."""
    if len(sys.argv) != 3 or sys.argv[1] not in ("dump", "rules"):
        print("usage: python benchmarks/auto_rules.py dump|rules CACHE_FOLDER", file=sys.stderr)
        return 2
    cache = Path(sys.argv[2])
    if sys.argv[1] == "dump":
        dump(cache)
        return 0
    table = rules(cache)
    text = (
        "# Stopping rules for steps=\"auto\", replayed on the 18 benchmark cases\n\n"
        "Generated by `python benchmarks/auto_rules.py rules CACHE` from A and G recorded at "
        "t = i / 512 (replays of `run_adaptive`, exact for the map score; the residual "
        "score takes y(t) from the fine-grid sum, as the dump holds no y; an interval of one "
        "grid step is not split further). Evaluations per image; completeness error and "
        "heatmap correlation (with the m = 512 map) of the final sum, against uniform m = 50 "
        "(`auto_completeness.json`).\n\n" + table
    )
    (Path(__file__).parent / "auto_rules.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
