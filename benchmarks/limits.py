"""How few path points can any partition get away with? Evidence for the convergence table.

For each of the paper's six sample images and the layers ``blocks.5``, ``blocks.10`` and
``head`` of the embedded EfficientNet-Lite0, this records the activations A and gradients G
at all 513 points t = i / 512 of the straight path in one pass, and then, without running
the model again, measures on that grid:

* how the uniform trapezoid sum converges to the m = 512 sum (the slope of log error
  against log m, from m = 16 to 128; 2 for a smooth integrand, 1 for a rough one);
* whether the errors of the 32 intervals add up coherently (a systematic error that a
  better rule or an extrapolation could remove) or like independent random terms:
  ``coherence = |sum of interval errors| / sqrt(sum of squared interval errors)`` in map
  space, about 1 for independent errors and up to sqrt(32) = 5.7 for coherent ones;
* the best heatmap correlation any *density-based* placement of 33 points reaches, when
  the density is taken from the true per-interval errors measured on the 512-point grid
  (point density proportional to error density to the power 1/2, 2/3 or 1). This is an
  upper bound for schemes that place points where the sum changes, the adaptive
  partitions of :mod:`rsigradcam.core.adaptive` included, since they must estimate that density.

Run from the repository root (needs the paper samples in ``../shared``; about 10 minutes on
2 CPU cores)::

    python benchmarks/limits.py            # writes benchmarks/limits.md and limits.json
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

from rsigradcam import Explanation, RSIGradCAM
from rsigradcam.app.bench import heatmap_correlation
from rsigradcam.app.samples import find_paper_samples
from rsigradcam.core.evaluator import PathEvaluator, PathResult
from rsigradcam.core.integrate import PathAccumulator
from rsigradcam.core.reduction import cam_reduction, normalize_heatmap
from rsigradcam.files import md_cell
from rsigradcam.io import load_image
from rsigradcam.models import efficientnet_lite0

LAYERS = ("blocks.5", "blocks.10", "head")
FINE = 512
BUDGET = 33  # evaluations: 32 intervals
DENSITY_POWERS = (0.5, 2 / 3, 1.0)
TARGET = 0.999


class Recorder:
    """Pass rows through to the real accumulator and keep a copy of each, in ``dtype``."""

    def __init__(self, inner: PathAccumulator, dtype: torch.dtype = torch.float64) -> None:
        self.inner = inner
        self.dtype = dtype
        self.activations: list[Tensor] = []
        self.gradients: list[Tensor] = []

    def update(self, image_index: Tensor, activations: Tensor, gradients: Tensor) -> None:
        """Keep a copy of the rows, then pass them on."""
        self.activations.append(activations.detach().to(self.dtype, copy=True))
        self.gradients.append(gradients.detach().to(self.dtype, copy=True))
        self.inner.update(image_index, activations, gradients)

    def result(self) -> Tensor:
        """The real accumulator's result."""
        return self.inner.result()


class Recording(RSIGradCAM):
    """RSIGradCAM that keeps every row's A and G, and image 0's score gap y(x) - y(x')."""

    recorders: list[Recorder]
    record_dtype: torch.dtype = torch.float64
    gap: float

    def _accumulator(self, n_images: int, partition: Tensor) -> PathAccumulator:
        recorder = Recorder(super()._accumulator(n_images, partition), self.record_dtype)
        self.recorders.append(recorder)
        return recorder

    def _run_path(self, evaluator: PathEvaluator, partition: Tensor) -> PathResult:
        result = super()._run_path(evaluator, partition)
        self.gap = float((evaluator.scores - evaluator.baseline_scores)[0].double())
        return result


def record_path(
    model: torch.nn.Module, image: Tensor, dtype: torch.dtype = torch.float64
) -> tuple[dict[str, tuple[Tensor, Tensor]], dict[str, Explanation], float]:
    """A and G at t = i / FINE, ascending in t, per layer: (FINE + 1, K, h, w) each.

    Also returns the explanations at m = FINE and the score gap y(x) - y(x').
    """
    explainer = Recording(model, list(LAYERS), steps=FINE)
    explainer.recorders = []
    explainer.record_dtype = dtype
    explained = explainer(image)
    assert isinstance(explained, dict)
    channels = {name: int(exp.weights.shape[1]) for name, exp in explained.items()}
    assert len(set(channels.values())) == len(LAYERS), "layers are matched by channel count"
    out = {}
    for rec in explainer.recorders:
        acts = torch.cat(rec.activations).flip(0)  # rows arrive from t = 1 down to t = 0
        grads = torch.cat(rec.gradients).flip(0)
        name = next(n for n, k in channels.items() if k == acts.shape[1])
        out[name] = (acts, grads)
    return out, explained, explainer.gap


def record(model: torch.nn.Module, image: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
    """A and G at t = i / FINE, ascending in t, per layer, in float64."""
    return record_path(model, image)[0]


def _terms(acts: Tensor, grads: Tensor, points: Tensor) -> Tensor:
    """Per-interval trapezoid terms, spatially averaged: (intervals, K)."""
    i, j = points[:-1], points[1:]
    return (0.5 * (grads[i] + grads[j]) * (acts[j] - acts[i])).mean(dim=(2, 3))


def _heatmap(weights: Tensor, final: Tensor) -> Tensor:
    return normalize_heatmap(cam_reduction(weights[None], final[None]), (224, 224))[0]


def _uniform(m: int) -> Tensor:
    return torch.arange(0, FINE + 1, FINE // m)


def _density_points(density: Tensor, n: int) -> Tensor:
    """Grid indices, n of them, spread so that each holds an equal share of ``density``."""
    cells = len(density)
    cdf = torch.cat([torch.zeros(1, dtype=density.dtype), density.cumsum(0)])
    cdf = cdf / cdf[-1]
    q = torch.linspace(0, 1, n, dtype=density.dtype)
    k = torch.searchsorted(cdf, q).clamp(1, cells)
    frac = (q - cdf[k - 1]) / (cdf[k] - cdf[k - 1]).clamp(min=1e-300)
    t = (k - 1 + frac) / cells
    points: Tensor = torch.unique((t * FINE).round().long().clamp(0, FINE))
    return points


def analyse(acts: Tensor, grads: Tensor) -> dict[str, float]:
    """Convergence order, coherence and the density-placed bound for one recorded path."""
    fine = _terms(acts, grads, torch.arange(FINE + 1))
    w_ref = fine.sum(0)
    final = acts[-1]
    ref = _heatmap(w_ref, final)
    ref_map = cam_reduction(w_ref[None], final[None])[0]

    def map_error(weights: Tensor) -> float:
        layer_map = cam_reduction(weights[None], final[None])[0]
        return float((layer_map - ref_map).norm() / ref_map.norm().clamp(min=1e-300))

    result: dict[str, float] = {}
    errors = {}
    for m in (16, 32, 64, 128):
        w = _terms(acts, grads, _uniform(m)).sum(0)
        errors[m] = map_error(w)
        result[f"uniform_{m + 1}"] = heatmap_correlation(_heatmap(w, final), ref)
    xs = [math.log(m) for m in errors]
    ys = [math.log(max(e, 1e-300)) for e in errors.values()]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    result["order"] = -slope

    m = BUDGET - 1
    interval_err = fine.view(m, FINE // m, -1).sum(1) - _terms(acts, grads, _uniform(m))
    in_map = torch.einsum("ik,khw->ihw", interval_err, final).flatten(1)
    result["coherence"] = float(in_map.sum(0).norm() / in_map.norm(dim=1).pow(2).sum().sqrt())

    m = 64
    interval_err = fine.view(m, FINE // m, -1).sum(1) - _terms(acts, grads, _uniform(m))
    density = torch.einsum("ik,khw->ihw", interval_err, final).flatten(1).norm(dim=1)
    density = density.clamp(min=float(density.max()) * 1e-6 + 1e-300)
    best = -1.0
    for power in DENSITY_POWERS:
        points = _density_points(density**power, BUDGET)
        corr = heatmap_correlation(_heatmap(_terms(acts, grads, points).sum(0), final), ref)
        best = max(best, corr)
    result["density_33"] = best
    return result


def _markdown(rows: list[dict[str, object]]) -> str:
    n_fail_uniform = sum(float(str(r["uniform_33"])) < TARGET for r in rows)
    n_fail_density = sum(float(str(r["density_33"])) < TARGET for r in rows)
    lines = [
        "# How far can 33 evaluations go?",
        "",
        "Generated by `python benchmarks/limits.py`. Heatmap correlation with the uniform "
        "trapezoid m = 512 heatmap; 'order' is the convergence order of the uniform sum "
        "(2 for a smooth integrand); 'coherence' compares the 32 interval errors' sum to "
        "their root-sum-square (about 1: independent, 5.7: all alike); 'density-placed' is "
        "the best 33-point partition placed by the true error density (an upper bound for "
        "density-based adaptive schemes).",
        "",
        "| image | layer | uniform 17 | uniform 33 | uniform 65 | uniform 129 | order "
        "| coherence | density-placed 33 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {md_cell(r['image'])} | {md_cell(r['layer'])} | {r['uniform_17']:.4f} "
            f"| {r['uniform_33']:.4f} | {r['uniform_65']:.4f} | {r['uniform_129']:.4f} "
            f"| {r['order']:.2f} "
            f"| {r['coherence']:.2f} | {r['density_33']:.4f} |"
        )
    lines += [
        "",
        f"Below {TARGET} at 33 evaluations: uniform {n_fail_uniform} of {len(rows)}, "
        f"density-placed {n_fail_density} of {len(rows)}.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    """Record every image, analyse every layer, write limits.md and limits.json."""
    samples = find_paper_samples()
    if samples is None:
        print("the paper samples (../shared/data/paper-samples) are needed", file=sys.stderr)
        return 2
    model = efficientnet_lite0()
    rows: list[dict[str, object]] = []
    for path in sorted(samples.glob("*.jpg")):
        start = time.perf_counter()
        image = load_image(path)[0]
        recorded = record(model, image)
        for layer in LAYERS:
            acts, grads = recorded[layer]
            rows.append({"image": path.stem, "layer": layer, **analyse(acts, grads)})
        del recorded
        print(f"{path.stem}: {time.perf_counter() - start:.0f} s", flush=True)
    out = Path(__file__).resolve().parent
    (out / "limits.md").write_text(_markdown(rows))
    (out / "limits.json").write_text(json.dumps(rows, indent=2))
    print(_markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
