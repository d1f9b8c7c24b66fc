"""The benchmark: speed, memory, convergence and precision, measured in one process.

Speed table (:mod:`rsigradcam.app.speed`): on one image, one layer and one m, each
contender at its best configuration, with warm-up and the median of interleaved repeats.

Convergence table: for each image and layer, the Pearson correlation of the heatmap with
the uniform trapezoid m = 512 heatmap, for uniform m, and the smallest uniform m that
reaches the target correlation. Precision: the float32 vs float64 heatmap difference.

Run it with ``rsigradcam bench`` or ``python -m rsigradcam.app.bench``.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rsigradcam.app.loading.models import check_device
from rsigradcam.app.samples import find_paper_samples
from rsigradcam.app.speed import (
    SPEED_CONTENDERS,
    SWEEP_SIZES,
    SpeedExtras,
    SpeedRow,
    official_style_loop,
    peak_memory,
    speed_table,
)
from rsigradcam.app.startup import cli_startup, startup_markdown
from rsigradcam.app.throughput import DatasetThroughput, dataset_throughput
from rsigradcam.core.capture import logits_of
from rsigradcam.files import md_cell
from rsigradcam.io import load_image
from rsigradcam.methods import RSIGradCAM
from rsigradcam.metrics.correlation import pearson
from rsigradcam.models import efficientnet_lite0, imagenet_classes

__all__ = [
    "SPEED_CONTENDERS",
    "SWEEP_SIZES",
    "SpeedExtras",
    "SpeedRow",
    "bench_markdown",
    "convergence_table",
    "heatmap_correlation",
    "main",
    "official_style_loop",
    "peak_memory",
    "speed_table",
]

UNIFORM_STEPS: tuple[int, ...] = (8, 16, 32, 50, 64, 128, 256)
AUTO_TOLERANCES: tuple[float, ...] = (0.1, 0.01)


# --------------------------------------------------------------------------- convergence
def heatmap_correlation(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two single heatmaps of any shape, as a float (in float64).

    :func:`~rsigradcam.metrics.correlation.pearson` on the two maps flattened into a
    batch of one (so an identical pair gives exactly 1.0).

    Example:
        >>> heatmap_correlation(torch.tensor([[0.0, 1.0], [2.0, 3.0]]), torch.arange(4.0))
        1.0
    """
    return float(pearson(a.reshape(1, -1), b.reshape(1, -1))[0])


@dataclass
class ConvergenceRow:
    """Correlations with the m = 512 map, for one image and one layer."""

    image: str
    layer: str
    top1: str
    probability: float
    uniform: dict[int, float] = field(default_factory=dict)
    uniform_needed: int | None = None
    completeness_512: float = float("nan")
    auto: dict[float, tuple[int, float]] = field(default_factory=dict)


def convergence_table(
    model: nn.Module,
    images: Sequence[tuple[str, Tensor]],
    layers: Sequence[str],
    class_names: Sequence[str],
    uniform_steps: Sequence[int] = UNIFORM_STEPS,
    reference_steps: int = 512,
    target_corr: float = 0.999,
    auto_tolerances: Sequence[float] = AUTO_TOLERANCES,
) -> list[ConvergenceRow]:
    """Correlation with the uniform m = ``reference_steps`` map, per image and layer.

    Uniform m runs all layers in one call; ``steps="auto"`` runs each layer on its own
    (its partition adapts to the layer), once per tolerance.
    """
    rows: list[ConvergenceRow] = []
    for name, image in images:
        with torch.no_grad():
            probs = torch.softmax(logits_of(model(image)), dim=1)[0]
        top = int(probs.argmax())
        reference = RSIGradCAM(model, list(layers), steps=reference_steps)(image)
        per_layer = {
            layer: ConvergenceRow(
                name,
                layer,
                class_names[top],
                float(probs[top]),
                completeness_512=float(reference[layer].completeness_error[0]),
            )
            for layer in layers
        }
        for m in uniform_steps:
            exps = RSIGradCAM(model, list(layers), steps=m)(image)
            for layer in layers:
                corr = heatmap_correlation(exps[layer].heatmap, reference[layer].heatmap)
                row = per_layer[layer]
                row.uniform[m] = corr
                if row.uniform_needed is None and corr >= target_corr:
                    row.uniform_needed = m + 1
        for layer in layers:
            for tol in auto_tolerances:
                exp = RSIGradCAM(model, layer, steps="auto", tolerance=tol)(image)
                corr = heatmap_correlation(exp.heatmap, reference[layer].heatmap)
                per_layer[layer].auto[tol] = (exp.n_evaluations, corr)
        rows.extend(per_layer.values())
    return rows


def precision_row(model: nn.Module, image: Tensor, layer: str, steps: int) -> dict[str, float]:
    """Float32 vs float64 heatmaps of the same call."""
    a = RSIGradCAM(model, layer, steps=steps)(image)
    b = RSIGradCAM(model, layer, steps=steps, dtype=torch.float64)(image)
    return {
        "max_abs_heatmap_diff": float((a.heatmap - b.heatmap).abs().max()),
        "correlation": heatmap_correlation(a.heatmap, b.heatmap),
        "completeness_error_float32": float(a.completeness_error[0]),
        "completeness_error_float64": float(b.completeness_error[0]),
    }


# --------------------------------------------------------------------------- report
def bench_markdown(
    meta: dict[str, Any],
    speed: list[SpeedRow],
    convergence: list[ConvergenceRow],
    precision: dict[str, float],
    extras: SpeedExtras | None = None,
) -> str:
    """The benchmark's Markdown report: the setup, the speed table and the convergence table."""
    lines = [
        f"# Benchmark ({meta['device_name']}, torch {meta['torch']}, "
        f"{meta['threads']} threads)",
        "",
        f"Image `{meta['image']}`, layer `{meta['layer']}`, m = {meta['steps']} "
        f"({meta['steps'] + 1} points), median of {meta['repeats']} runs after a warm-up, "
        "the contenders interleaved run by run. Peak memory: above the level at the start "
        "of one run (resident set on a CPU, allocator peak on a GPU).",
        "",
        "| method | median time (s) | × floor | × ours | peak memory (MB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in speed:
        lines.append(
            f"| {md_cell(r.method)} | {r.seconds:.3f} | {r.ratio_to_floor:.2f} "
            f"| {r.ratio_to_ours:.2f} | {r.peak_mb:.0f} |"
        )
    if extras is not None:
        sweep = ", ".join(str(c) for c in SWEEP_SIZES)
        lines += [
            "",
            f"Each batching contender at its best size of {sweep} (swept first, interleaved): "
            f"the forward floor {extras.best_floor_batch}, Captum's internal_batch_size "
            f"{extras.best_captum_batch}, our fixed batch_size {extras.best_fixed_batch}. "
            f"Ours with batch_size=None takes {extras.auto_vs_best_fixed:.2f}× the best "
            "fixed size. The default call folds the BatchNorms, runs channels-last, pads "
            "the stride-2 convolutions in their kernels and clamps activations in place "
            "(the embedded model on a CPU); the option rows turn one of the first two on "
            "at a time (on a CPU kernel padding comes with every private copy, activations "
            "in place with folding). The process runs with the C allocator as Python "
            "starts it: every contender is a library call.",
        ]
        if extras.compile_seconds == extras.compile_seconds:
            lines[-1] += (
                f" compile=True's first call took {extras.compile_seconds:.1f} s (the copy, "
                "and a compile for each chunk size), outside the timed runs."
            )
        if extras.autocast_heatmap_diff == extras.autocast_heatmap_diff:
            lines[-1] += (
                " bfloat16 autocast: max heatmap difference to float32 "
                f"{extras.autocast_heatmap_diff:.2g}."
            )
    if convergence:
        steps = sorted({m for row in convergence for m in row.uniform})
        tols = sorted({tol for row in convergence for tol in row.auto}, reverse=True)
        lines += [
            "",
            f"Correlation of the heatmap with the uniform trapezoid m = 512 heatmap. "
            f"'Uniform needed' is the number of evaluations (m + 1) of the first uniform m "
            f"that reaches {meta['target_corr']}; 'auto' gives evaluations / correlation of "
            f"`steps=\"auto\"` at each tolerance.",
            "",
            "| image (top-1, p) | layer | "
            + " | ".join(f"m={m}" for m in steps)
            + " | uniform needed | "
            + " | ".join(f"auto tol {tol:g}" for tol in tols)
            + " | completeness err. m=512 |",
            "|---|---|" + "---:|" * (len(steps) + 1 + len(tols)) + "---:|",
        ]
        for row in convergence:
            cells = " | ".join(f"{row.uniform[m]:.4f}" for m in steps)
            needed = str(row.uniform_needed) if row.uniform_needed is not None else "> 257"
            autos = " | ".join(f"{row.auto[t][0]} / {row.auto[t][1]:.4f}" for t in tols)
            lines.append(
                f"| {md_cell(row.image)} ({md_cell(row.top1)}, {row.probability:.2f}) "
                f"| {md_cell(row.layer)} | {cells} | {needed} | {autos} "
                f"| {row.completeness_512:.4f} |"
            )
        lines += ["", _convergence_summary(convergence, steps, tols, meta["target_corr"])]
    if precision:
        lines += [
            "",
            "Float32 vs float64 (same image, layer and m): "
            + ", ".join(f"{k} = {v:.3g}" for k, v in precision.items()),
        ]
    return "\n".join(lines) + "\n"


def _convergence_summary(
    rows: list[ConvergenceRow], steps: list[int], tols: list[float], target: float
) -> str:
    """Mean and maximum cost of auto against uniform m = 50 and the best uniform m."""
    n = len(rows)
    parts = []
    for tol in tols:
        evals = [row.auto[tol][0] for row in rows]
        good = sum(row.auto[tol][1] >= target for row in rows)
        parts.append(
            f"auto tol {tol:g}: mean {sum(evals) / n:.1f} evaluations, at most {max(evals)}, "
            f"{good} of {n} reach {target}"
        )
    if 50 in steps:
        parts.append(
            f"uniform m = 50 (51 evaluations): {sum(r.uniform[50] >= target for r in rows)} "
            f"of {n} reach {target}"
        )
    needed = [r.uniform_needed for r in rows]
    if all(x is not None for x in needed):
        hindsight = sum(x for x in needed if x is not None) / n
        parts.append(
            f"the first uniform m of {', '.join(map(str, steps))} that reaches {target}, "
            f"chosen per case with hindsight: mean {hindsight:.1f} evaluations"
        )
    return "; ".join(parts) + "."


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def throughput_markdown(found: DatasetThroughput) -> str:
    """The ``explain-dataset`` throughput section of the benchmark's Markdown."""
    return (
        f"\n## explain-dataset throughput\n\n{found.images} photos, `{found.layer}`, "
        f"m = {found.steps}, batches of {found.batch_size}: **{found.images_per_s:.2f} "
        f"images/s** ({found.seconds:.1f} s); the no-grad forward of the same path points in "
        f"the same batches: {found.floor_images_per_s:.2f} images/s ({found.floor_seconds:.1f} "
        f"s), so the engine runs at {found.images_per_s / found.floor_images_per_s:.2f}x the "
        "floor's rate.\n"
    )


def run_benchmark(
    device: str = "cpu",
    layer: str = "head",
    steps: int = 50,
    repeats: int = 5,
    out: Path = Path("benchmarks"),
    convergence: bool = True,
    progress: Callable[[str], None] = print,
    compile: bool = True,
    dataset: Path | None = None,
    dataset_images: int = 256,
    dataset_batch: int | None = None,
) -> Path:
    """Run the whole benchmark on the embedded model and write Markdown and JSON results.

    The speed rows use scikit-image's ``chelsea``; the convergence table uses the paper's
    six sample images when they are found (else ``chelsea``). ``compile`` adds the
    ``compile=True`` row (its compile time is reported apart); on CUDA the autocast row is
    added. ``dataset``: a folder of photos, whose first ``dataset_images`` run through
    ``explain-dataset`` against the forward floor
    (:func:`~rsigradcam.app.throughput.dataset_throughput`; batches of ``dataset_batch``,
    default 8 on a CPU and 64 on a GPU), written as ``dataset_throughput``.

    Returns:
        The path of the Markdown file.

    Example:
        >>> run_benchmark(convergence=False, out=Path("/tmp/bench"))  # doctest: +SKIP
    """
    from skimage import data

    dev = check_device(device)
    model = efficientnet_lite0().to(dev)
    samples = find_paper_samples()
    speed_name = "chelsea"
    speed_image = load_image(data.chelsea())[0].to(dev)  # type: ignore[no-untyped-call]
    named = [(speed_name, speed_image)]
    if samples is not None:
        named = [(p.stem, load_image(p)[0].to(dev)) for p in sorted(samples.glob("*.jpg"))]
    meta: dict[str, Any] = {
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "image": speed_name,
        "layer": layer,
        "steps": steps,
        "repeats": repeats,
        "target_corr": 0.999,
    }
    include = (*SPEED_CONTENDERS, *(("compile",) if compile else ()))
    include += ("autocast",) if dev.type == "cuda" else ()
    extras = SpeedExtras()
    speed = speed_table(model, speed_image, layer, steps, repeats, include, extras)
    for r in speed:
        progress(
            f"{r.method:45s} {r.seconds:8.3f} s  x{r.ratio_to_floor:6.2f} floor  "
            f"{r.peak_mb:8.0f} MB"
        )
    rows: list[ConvergenceRow] = []
    if convergence:
        rows = convergence_table(
            model, named, ["blocks.5", "blocks.10", "head"], imagenet_classes()
        )
    precision = precision_row(model, speed_image, layer, steps)
    throughput = None
    if dataset is not None:
        batch = dataset_batch or (64 if dev.type == "cuda" else 8)
        throughput = dataset_throughput(dataset, str(dev), dataset_images, layer, steps, batch)
        progress(
            f"explain-dataset on {throughput.images} images, batches of {batch}: "
            f"{throughput.images_per_s:.2f} images/s; the forward floor "
            f"{throughput.floor_images_per_s:.2f} images/s"
        )
    startup = cli_startup()
    progress("".join(f"{row.name:45s} {row.seconds:8.3f} s\n" for row in startup).rstrip())
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if dev.type == "cpu" else f"-{dev.type}"
    markdown = out / f"results{suffix}.md"
    markdown.write_text(
        bench_markdown(meta, speed, rows, precision, extras)
        + (throughput_markdown(throughput) if throughput is not None else "")
        + startup_markdown(startup)
    )
    (out / f"results{suffix}.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "speed": [asdict(r) for r in speed],
                "speed_extras": asdict(extras),
                "convergence": [asdict(r) for r in rows],
                "precision": precision,
                "cli_startup": [asdict(row) for row in startup],
                **({"dataset_throughput": asdict(throughput)} if throughput else {}),
            },
            indent=2,
        )
    )
    progress(f"wrote {markdown}")
    return markdown


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry of ``python -m rsigradcam.app.bench``."""
    parser = argparse.ArgumentParser(prog="python -m rsigradcam.app.bench", description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--layer", default="head")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks"))
    parser.add_argument("--no-convergence", action="store_true")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile=True row")
    parser.add_argument("--dataset", type=Path, help="a folder of photos for explain-dataset")
    parser.add_argument("--dataset-images", type=int, default=256)
    parser.add_argument("--dataset-batch", type=int, default=None)
    args = parser.parse_args(argv)
    run_benchmark(
        args.device, args.layer, args.steps, args.repeats, args.out, not args.no_convergence,
        compile=not args.no_compile, dataset=args.dataset, dataset_images=args.dataset_images,
        dataset_batch=args.dataset_batch,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
