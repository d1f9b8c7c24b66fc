"""The benchmark's speed table: each contender at its best configuration, interleaved.

* ``rsigradcam``: :class:`~rsigradcam.RSIGradCAM` (batched points, backward stops at the
  layer; for the embedded model, BatchNorms folded and channels-last by default);
* the option rows: ours with no option (eager NCHW), channels-last only, BatchNorm folded
  only, ``compile=True`` (compile time apart), CUDA autocast; and ours at its best fixed
  ``batch_size`` (against ``batch_size=None``);
* ``official-style loop``: one point at a time, a full backward pass to the input through
  parameters that require grad, as in the authors' PyTorch notebook;
* ``captum LayerConductance``: the same m + 1 points (``method="riemann_trapezoid"``), at
  its best ``internal_batch_size``;
* ``no-grad forward (floor)``: a plain eager NCHW ``torch.no_grad()`` forward of the same
  points at its best batch size;
* ``Grad-CAM``: one point.

Batch sizes are swept over :data:`SWEEP_SIZES`.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import gc
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsigradcam.baselines import BlackBaseline
from rsigradcam.constants import IMAGENET_NORMALIZE
from rsigradcam.core.capture import logits_of
from rsigradcam.core.inference import SpeedOptions, SpeedSpec
from rsigradcam.core.memory import proc_kib_field
from rsigradcam.core.path import StraightLinePath, uniform_partition
from rsigradcam.methods import GradCAM, RSIGradCAM

__all__ = [
    "SPEED_CONTENDERS",
    "SWEEP_SIZES",
    "SpeedExtras",
    "SpeedRow",
    "official_style_loop",
    "peak_memory",
    "speed_table",
    "synchronize",
]


# --------------------------------------------------------------------------- measurement
class _Peak:
    """Peak memory (bytes) above the level at entry, filled in on exit."""

    bytes: int = 0


def _release_free_memory() -> None:
    """Return freed heap memory to the OS (glibc), so that RSS starts from what is in use."""
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc
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


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on a CPU."""
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
    synchronize(device)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            synchronize(device)
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


#: Batch sizes swept for the forward floor, Captum's ``internal_batch_size`` and our fixed
#: ``batch_size`` (51 = all the points of m = 50 at once, 17 = a third of them).
SWEEP_SIZES: tuple[int, ...] = (1, 2, 4, 8, 17, 51)

#: The speed contenders, in the order of the table (``compile`` and ``autocast`` on demand).
SPEED_CONTENDERS: tuple[str, ...] = (
    "ours", "eager", "channels_last", "fold", "fixed", "official", "captum", "floor", "gradcam"
)

#: Per option row: the RSIGradCAM ``speed`` and how the row is named.
_OPTION_ROWS: dict[str, tuple[str, SpeedSpec]] = {
    "eager": ("rsigradcam, speed='off' (the model as given)", "off"),
    "channels_last": (
        "rsigradcam, channels-last only",
        SpeedOptions(fold_batchnorm=False, channels_last=True, cpu_tuning=False),
    ),
    "fold": (
        "rsigradcam, BatchNorm folded only",
        SpeedOptions(fold_batchnorm=True, channels_last=False, cpu_tuning=False),
    ),
    "compile": (
        "rsigradcam, SpeedOptions(compile=True) (compile time apart)", SpeedOptions(compile=True)
    ),
    "autocast": (
        "rsigradcam, CUDA autocast bfloat16", SpeedOptions(autocast=torch.bfloat16)
    ),
}


@dataclass
class SpeedExtras:
    """What the speed table measured besides its rows."""

    best_fixed_batch: int = 0
    auto_vs_best_fixed: float = float("nan")
    best_captum_batch: int = 0
    best_floor_batch: int = 0
    compile_seconds: float = float("nan")
    autocast_heatmap_diff: float = float("nan")


def _best_of(
    make: Callable[[int], Callable[[], object]],
    sizes: Sequence[int],
    device: torch.device,
    repeats: int,
) -> int:
    """The size whose run has the lowest median time, the candidates interleaved."""
    medians = [
        statistics.median(t)
        for t in _interleaved_times([make(size) for size in sizes], device, repeats)
    ]
    return sizes[medians.index(min(medians))]


def speed_table(
    model: nn.Module,
    image: Tensor,
    layer: str,
    steps: int = 50,
    repeats: int = 5,
    include: Sequence[str] = SPEED_CONTENDERS,
    extras: SpeedExtras | None = None,
) -> list[SpeedRow]:
    """Time every contender, each at its best configuration, on the same image, layer and m.

    The forward floor, Captum's ``internal_batch_size`` and our fixed ``batch_size`` are
    first swept over :data:`SWEEP_SIZES` (interleaved); the table then interleaves the best
    of each with the other contenders.

    Args:
        model: The classifier (eval mode, on its device).
        image: One (1, C, H, W) normalised image on the model's device.
        layer: Layer name.
        steps: m.
        repeats: Timed repeats after one warm-up; the median is reported.
        include: Which contenders to run (:data:`SPEED_CONTENDERS`, ``"compile"``,
            ``"autocast"``).
        extras: Filled in with the sweeps' choices, the ratio of ``batch_size=None`` to the
            best fixed size, the compile time and the autocast map difference.
    """
    extras = extras if extras is not None else SpeedExtras()
    device = image.device
    baseline = BlackBaseline(*IMAGENET_NORMALIZE)(image)
    with torch.no_grad():
        target = int(logits_of(model(image)).argmax(dim=1))
    points = StraightLinePath(image, baseline)(
        torch.zeros(steps + 1, dtype=torch.long, device=device), uniform_partition(steps)
    )
    n_points = points.shape[0]
    sizes = sorted({min(c, n_points) for c in SWEEP_SIZES})
    cam = RSIGradCAM(model, layer, steps=steps)
    gradcam = GradCAM(model, layer)

    def forward_in(chunk: int) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                for start in range(0, n_points, chunk):
                    model(points[start : start + chunk])

        return run

    def ours_in(chunk: int) -> Callable[[], object]:
        fixed = RSIGradCAM(model, layer, steps=steps, batch_size=chunk)
        return lambda: fixed(image)

    def captum_in(chunk: int) -> Callable[[], None]:
        from captum.attr import LayerConductance

        def run() -> None:
            forward = lambda x: torch.softmax(logits_of(model(x)), dim=1)  # noqa: E731
            LayerConductance(forward, model.get_submodule(layer)).attribute(
                image, baselines=baseline, target=target, n_steps=steps,
                method="riemann_trapezoid", internal_batch_size=chunk,
            )

        return run

    # On a CPU small batches are faster per point, on a GPU large ones: each contender
    # that batches is timed at its best size.
    if "floor" in include:
        extras.best_floor_batch = _best_of(forward_in, sizes, device, repeats)
    contenders: dict[str, tuple[str, Callable[[], object]]] = {
        "ours": ("rsigradcam RSIGradCAM", lambda: cam(image)),
        "official": (
            "official-style loop",
            lambda: official_style_loop(model, layer, image[0], baseline[0], target, steps),
        ),
        "floor": (
            f"no-grad forward of the same points, batches of {extras.best_floor_batch} "
            "(floor)",
            forward_in(extras.best_floor_batch or n_points),
        ),
        "gradcam": ("rsigradcam GradCAM (1 point)", lambda: gradcam(image)),
    }
    if "fixed" in include:
        extras.best_fixed_batch = _best_of(ours_in, sizes, device, repeats)
        contenders["fixed"] = (
            f"rsigradcam, best fixed batch_size={extras.best_fixed_batch}",
            ours_in(extras.best_fixed_batch),
        )
    for key, (name, options) in _OPTION_ROWS.items():
        if key not in include or (key == "autocast" and device.type != "cuda"):
            continue
        optioned = RSIGradCAM(model, layer, steps=steps, speed=options)
        if key == "compile":
            optioned(image)  # compiles, apart from the timed runs
            extras.compile_seconds = optioned.compile_seconds
            name = f"{name}: {extras.compile_seconds:.0f} s once"
        if key == "autocast":
            low, full = optioned(image), cam(image)
            assert not isinstance(low, dict) and not isinstance(full, dict)
            extras.autocast_heatmap_diff = float((low.heatmap - full.heatmap).abs().max())
            name = f"{name} (max heatmap diff to float32 {extras.autocast_heatmap_diff:.2g})"
        contenders[key] = (name, functools.partial(optioned, image))
    if "captum" in include:
        try:
            import captum.attr  # noqa: F401

            # Captum's finite differences need at least 2 points per internal batch.
            captum_sizes = [c for c in sizes if c >= 2] or [n_points]
            extras.best_captum_batch = _best_of(captum_in, captum_sizes, device, repeats)
            contenders["captum"] = (
                f"captum LayerConductance, internal_batch_size={extras.best_captum_batch}",
                captum_in(extras.best_captum_batch),
            )
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
            note = "CUDA only" if key == "autocast" else "not installed"
            rows.append(SpeedRow(key, float("nan"), [], note=note))
            continue
        name, fn = contenders[key]
        with peak_memory(device) as peak:
            fn()
        times = all_times[key]
        rows.append(SpeedRow(name, statistics.median(times), times, peak_mb=peak.bytes / 2**20))
    by_key = dict(zip(include, rows, strict=True))
    floor_s = by_key["floor"].seconds if "floor" in by_key else float("nan")
    ours_s = by_key["ours"].seconds if "ours" in by_key else float("nan")
    if "fixed" in by_key:
        extras.auto_vs_best_fixed = ours_s / by_key["fixed"].seconds
    for row in rows:
        row.ratio_to_floor = row.seconds / floor_s
        row.ratio_to_ours = row.seconds / ours_s
    return rows
