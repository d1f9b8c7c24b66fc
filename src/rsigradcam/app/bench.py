"""The benchmark: speed, memory, convergence and precision, measured in one process.

Speed table, on one image, one layer and one m, with warm-up and the median of repeats:

* ``rsigradcam``: :class:`~rsigradcam.RSIGradCAM` (batched points, backward stops at the
  layer);
* ``official-style loop``: one point at a time, a full backward pass to the input through
  parameters that require grad, as in the authors' PyTorch notebook;
* ``captum LayerConductance``: the same m + 1 points (``method="riemann_trapezoid"``);
* ``no-grad forward (floor)``: a plain ``torch.no_grad()`` forward of the same points;
* ``Grad-CAM``: one point.

Convergence table: for each image and layer, the Pearson correlation of the heatmap with
the uniform trapezoid m = 512 heatmap, for uniform m, and the smallest uniform m that
reaches the target correlation. Precision: the float32 vs float64 heatmap difference.

Run it with ``rsigradcam bench`` or ``python -m rsigradcam.app.bench``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import gc
import json
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsigradcam.app.loading import check_device
from rsigradcam.app.samples import find_paper_samples
from rsigradcam.app.startup import cli_startup, startup_markdown
from rsigradcam.baselines import BlackBaseline
from rsigradcam.constants import IMAGENET_NORMALIZE
from rsigradcam.core.capture import logits_of
from rsigradcam.core.memory import proc_kib_field
from rsigradcam.core.path import StraightLinePath, uniform_partition
from rsigradcam.files import md_cell
from rsigradcam.io import load_image
from rsigradcam.methods import GradCAM, RSIGradCAM
from rsigradcam.metrics.correlation import pearson
from rsigradcam.models import efficientnet_lite0, imagenet_classes

__all__ = [
    "SpeedRow",
    "convergence_table",
    "heatmap_correlation",
    "main",
    "official_style_loop",
    "peak_memory",
    "speed_table",
]

UNIFORM_STEPS: tuple[int, ...] = (8, 16, 32, 50, 64, 128, 256)
AUTO_TOLERANCES: tuple[float, ...] = (0.1, 0.01)


# --------------------------------------------------------------------------- measurement
class _Peak:
    """Peak memory (bytes) above the level at entry, filled in on exit."""

    bytes: int = 0


def _release_free_memory() -> None:
    """Return freed heap memory to the OS (glibc), so that RSS starts from what is in use."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_rss_high_water() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[_Peak]:
    """Measure the peak memory used inside the block, above the level at entry.

    CUDA: the allocator's peak. CPU (Linux): the process's resident-set high-water mark,
    reset on entry through ``/proc/self/clear_refs``; 0 where that is not available.
    """
    peak = _Peak()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        allocated = torch.cuda.memory_allocated(device)
        yield peak
        torch.cuda.synchronize(device)
        peak.bytes = torch.cuda.max_memory_allocated(device) - allocated
        return
    _release_free_memory()
    ok = _reset_rss_high_water()
    resident = proc_kib_field("/proc/self/status", "VmRSS")
    yield peak
    high = proc_kib_field("/proc/self/status", "VmHWM")
    if ok and resident is not None and high is not None:
        peak.bytes = max(0, high - resident)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _interleaved_times(
    fns: Sequence[Callable[[], object]], device: torch.device, repeats: int
) -> list[list[float]]:
    """Time each function ``repeats`` times, round-robin after one warm-up of each.

    Interleaving spreads slow drifts of the machine (other load, frequency changes) over
    all contenders instead of favouring whichever ran at a quiet moment.
    """
    for fn in fns:
        fn()
    _sync(device)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            _sync(device)
            bucket.append(time.perf_counter() - start)
    return times


# --------------------------------------------------------------------------- contenders
def official_style_loop(
    model: nn.Module, layer: str, image: Tensor, baseline: Tensor, target: int, steps: int
) -> Tensor:
    """RSI-Grad-CAM weights the way the authors' PyTorch notebook computes them.

    One point at a time, softmax output, a full ``backward()`` through a copy of the model
    whose parameters require grad, the activation and its gradient taken with hooks.
    """
    model = copy.deepcopy(model).eval()
    for p in model.parameters():
        p.requires_grad_(True)
    store: dict[str, Tensor] = {}

    def keep_grad(grad: Tensor) -> None:
        store["grad"] = grad

    def hook(module: nn.Module, args: Any, out: Tensor) -> None:
        store["act"] = out
        out.register_hook(keep_grad)  # type: ignore[no-untyped-call]

    handle = model.get_submodule(layer).register_forward_hook(hook)
    acts, grads = [], []
    try:
        for i in range(steps + 1):
            point = baseline + (i / steps) * (image - baseline)
            score = F.softmax(logits_of(model(point.unsqueeze(0))), dim=1)[0, target]
            model.zero_grad()
            score.backward()  # type: ignore[no-untyped-call]
            acts.append(store["act"].detach()[0])
            grads.append(F.relu(store["grad"])[0])
    finally:
        handle.remove()
    a, g = torch.stack(acts), torch.stack(grads)
    integrated = ((g[:-1] + g[1:]) / 2 * (a[1:] - a[:-1])).sum(dim=0)
    return integrated.mean(dim=(1, 2))


@dataclass
class SpeedRow:
    """One line of the speed table."""

    method: str
    seconds: float
    seconds_all: list[float]
    ratio_to_floor: float = float("nan")
    ratio_to_ours: float = float("nan")
    peak_mb: float = float("nan")
    note: str = ""


def speed_table(
    model: nn.Module,
    image: Tensor,
    layer: str,
    steps: int = 50,
    repeats: int = 5,
    include: Sequence[str] = ("ours", "official", "captum", "floor", "gradcam"),
) -> list[SpeedRow]:
    """Time every contender on the same image, layer and m, in this process.

    Args:
        model: The classifier (eval mode, on its device).
        image: One (1, C, H, W) normalised image on the model's device.
        layer: Layer name.
        steps: m.
        repeats: Timed repeats after one warm-up; the median is reported.
        include: Which contenders to run.
    """
    device = image.device
    baseline = BlackBaseline(*IMAGENET_NORMALIZE)(image)
    with torch.no_grad():
        target = int(logits_of(model(image)).argmax(dim=1))
    points = StraightLinePath(image, baseline)(
        torch.zeros(steps + 1, dtype=torch.long, device=device), uniform_partition(steps)
    )
    cam = RSIGradCAM(model, layer, steps=steps)
    gradcam = GradCAM(model, layer)

    def forward_in(chunk: int) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                for start in range(0, points.shape[0], chunk):
                    model(points[start : start + chunk])

        return run

    # The floor is the fastest plain forward of the same points over batch sizes: on a CPU
    # small batches are faster per point, on a GPU large ones.
    floor_chunk = points.shape[0]
    if "floor" in include:
        candidates = sorted({c for c in (1, 2, 4, 8, 16, points.shape[0]) if c <= points.shape[0]})
        medians = [
            statistics.median(t)
            for t in _interleaved_times([forward_in(c) for c in candidates], device, repeats)
        ]
        floor_chunk = candidates[medians.index(min(medians))]
    floor = forward_in(floor_chunk)

    contenders: dict[str, tuple[str, Callable[[], object]]] = {
        "ours": ("rsigradcam RSIGradCAM", lambda: cam(image)),
        "official": (
            "official-style loop",
            lambda: official_style_loop(model, layer, image[0], baseline[0], target, steps),
        ),
        "floor": (f"no-grad forward of the same points, batches of {floor_chunk} (floor)", floor),
        "gradcam": ("rsigradcam GradCAM (1 point)", lambda: gradcam(image)),
    }
    if "captum" in include:
        try:
            from captum.attr import LayerConductance

            def captum_run() -> None:
                forward = lambda x: torch.softmax(logits_of(model(x)), dim=1)  # noqa: E731
                LayerConductance(forward, model.get_submodule(layer)).attribute(
                    image, baselines=baseline, target=target, n_steps=steps,
                    method="riemann_trapezoid",
                )

            contenders["captum"] = ("captum LayerConductance", captum_run)
        except ImportError:
            pass
    present = [key for key in include if key in contenders]
    all_times = dict(
        zip(
            present,
            _interleaved_times([contenders[k][1] for k in present], device, repeats),
            strict=True,
        )
    )
    rows: list[SpeedRow] = []
    for key in include:
        if key not in contenders:
            rows.append(SpeedRow(key, float("nan"), [], note="not installed"))
            continue
        name, fn = contenders[key]
        with peak_memory(device) as peak:
            fn()
        times = all_times[key]
        rows.append(SpeedRow(name, statistics.median(times), times, peak_mb=peak.bytes / 2**20))
    by_key = dict(zip(include, rows, strict=True))
    floor_s = by_key["floor"].seconds if "floor" in by_key else float("nan")
    ours_s = by_key["ours"].seconds if "ours" in by_key else float("nan")
    for row in rows:
        row.ratio_to_floor = row.seconds / floor_s
        row.ratio_to_ours = row.seconds / ours_s
    return rows


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
        assert isinstance(reference, dict)
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
            assert isinstance(exps, dict)
            for layer in layers:
                corr = heatmap_correlation(exps[layer].heatmap, reference[layer].heatmap)
                row = per_layer[layer]
                row.uniform[m] = corr
                if row.uniform_needed is None and corr >= target_corr:
                    row.uniform_needed = m + 1
        for layer in layers:
            for tol in auto_tolerances:
                exp = RSIGradCAM(model, layer, steps="auto", tolerance=tol)(image)
                assert not isinstance(exp, dict)
                corr = heatmap_correlation(exp.heatmap, reference[layer].heatmap)
                per_layer[layer].auto[tol] = (exp.n_evaluations, corr)
        rows.extend(per_layer.values())
    return rows


def precision_row(model: nn.Module, image: Tensor, layer: str, steps: int) -> dict[str, float]:
    """Float32 vs float64 heatmaps of the same call."""
    a = RSIGradCAM(model, layer, steps=steps)(image)
    b = RSIGradCAM(model, layer, steps=steps, dtype=torch.float64)(image)
    assert not isinstance(a, dict) and not isinstance(b, dict)
    return {
        "max_abs_heatmap_diff": float((a.heatmap - b.heatmap).abs().max()),
        "correlation": heatmap_correlation(a.heatmap, b.heatmap),
        "completeness_error_float32": float(a.completeness_error[0]),
        "completeness_error_float64": float(b.completeness_error[0]),
    }


# --------------------------------------------------------------------------- report
def _markdown(
    meta: dict[str, Any],
    speed: list[SpeedRow],
    convergence: list[ConvergenceRow],
    precision: dict[str, float],
) -> str:
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
    if precision:
        lines += [
            "",
            "Float32 vs float64 (same image, layer and m): "
            + ", ".join(f"{k} = {v:.3g}" for k, v in precision.items()),
        ]
    return "\n".join(lines) + "\n"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_benchmark(
    device: str = "cpu",
    layer: str = "head",
    steps: int = 50,
    repeats: int = 5,
    out: Path = Path("benchmarks"),
    convergence: bool = True,
    progress: Callable[[str], None] = print,
) -> Path:
    """Run the whole benchmark on the embedded model and write Markdown and JSON results.

    The speed rows use scikit-image's ``chelsea``; the convergence table uses the paper's
    six sample images when they are found (else ``chelsea``).

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
    speed = speed_table(model, speed_image, layer, steps, repeats)
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
    startup = cli_startup()
    progress("".join(f"{row.name:45s} {row.seconds:8.3f} s\n" for row in startup).rstrip())
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if dev.type == "cpu" else f"-{dev.type}"
    markdown = out / f"results{suffix}.md"
    markdown.write_text(_markdown(meta, speed, rows, precision) + startup_markdown(startup))
    (out / f"results{suffix}.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "speed": [asdict(r) for r in speed],
                "convergence": [asdict(r) for r in rows],
                "precision": precision,
                "cli_startup": [asdict(row) for row in startup],
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
    args = parser.parse_args(argv)
    run_benchmark(
        args.device, args.layer, args.steps, args.repeats, args.out, not args.no_convergence
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
