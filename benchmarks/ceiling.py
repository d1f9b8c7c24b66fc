"""How fast can 51 path points of the embedded model run on this CPU? The bound on speed goals.

One RSI-Grad-CAM call at m = 50 runs 51 forward passes of EfficientNet-Lite0 up to the
explained layer (and a small backward after it at ``head``). This script measures, in one
run on the machine it runs on, what stands between that work and the hardware:

* **matrix peak**: float32 GEMM throughput (2048 x 2048, the threads torch uses), the most
  any convolution could reach here;
* **work**: multiply-accumulates of one 224 x 224 forward (every convolution and linear
  layer, counted from their shapes);
* **convolution kernels alone**: every convolution of the BatchNorm-folded, channels-last
  copy (the one our calls run), timed on its own with its real input, at each batch size of
  1, 2, 4, 8, 17 and 51, per image. Two sums over the 51 points: at the best single batch
  size, and with each convolution at *its own* best batch size. The second is a lower bound
  for any implementation that runs oneDNN's convolutions, whatever its batching, and it
  leaves out everything but the convolutions (activations, padding, additions, the
  backward pass);
* **whole forwards**: the 51 points through the eager model as given (the benchmark's
  floor), through the folded channels-last copy, and through ``torch.compile`` with
  Inductor's freezing (weights pre-packed, activations fused into the convolutions), each
  at its best batch size, no gradients;
* **the contenders**: our default call and Captum's LayerConductance at its best
  ``internal_batch_size``, interleaved as in ``rsigradcam bench``.

It ends with what a goal "Captum >= R x ours" requires of ours, next to those floors.

Run from the repository root, on a quiet machine (about 3 minutes on 2 CPU cores)::

    python benchmarks/ceiling.py       # writes benchmarks/ceiling.md and ceiling.json
"""

from __future__ import annotations

import copy
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsigradcam.app.bench import _cpu_name
from rsigradcam.app.speed import SWEEP_SIZES, speed_table
from rsigradcam.baselines import BlackBaseline
from rsigradcam.constants import IMAGENET_NORMALIZE
from rsigradcam.core.inference import SpeedOptions, prepare_model
from rsigradcam.core.path import StraightLinePath, uniform_partition
from rsigradcam.files import md_cell
from rsigradcam.io import load_image
from rsigradcam.models import efficientnet_lite0
from rsigradcam.models.efficientnet_lite import SameConv2d, _same_padding

POINTS = 51  # m = 50
LAYER = "head"
GOAL_RATIO = 3.5  # the "Captum >= 3.5x ours"


def _median_seconds(fn: Callable[[], object], repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gemm_gflops(n: int = 2048) -> float:
    """Float32 GEMM throughput in GFLOP/s (median of 5)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / _median_seconds(lambda: a @ b) / 1e9


class _ConvCall:
    """One convolution of the model, replayed on its real (already padded) input."""

    def __init__(self, name: str, conv: nn.Conv2d, x: Tensor) -> None:
        self.name = name
        self.conv = conv
        padding: Any = conv.padding
        if isinstance(conv, SameConv2d) and not conv._static_padding:
            top, bottom = _same_padding(x.shape[-2], conv.kernel_size[0], conv.stride[0])
            left, right = _same_padding(x.shape[-1], conv.kernel_size[1], conv.stride[1])
            x = F.pad(x, (left, right, top, bottom))
            padding = 0
        self.x = x[:1].contiguous(memory_format=torch.channels_last)
        self.padding = padding

    def macs(self) -> int:
        """Multiply-accumulates per image."""
        c = self.conv
        with torch.no_grad():
            out = self._run(self.x)
        per_output = (c.in_channels // c.groups) * math.prod(c.kernel_size)
        return int(out[0].numel() * per_output)

    def _run(self, x: Tensor) -> Tensor:
        c = self.conv
        return F.conv2d(x, c.weight, c.bias, c.stride, self.padding, c.dilation, c.groups)

    def seconds_per_image(self, batch: int) -> float:
        """Median time per image of the calls that cover 51 images in batches of ``batch``."""
        xb = self.x.expand(batch, *self.x.shape[1:]).contiguous(memory_format=torch.channels_last)
        calls = math.ceil(POINTS / batch)

        def run() -> None:
            for _ in range(calls):
                self._run(xb)

        with torch.inference_mode():
            return _median_seconds(run) / (calls * batch)


def conv_calls(model: nn.Module, image: Tensor) -> list[_ConvCall]:
    """Every convolution of ``model`` with the input it gets for ``image``."""
    inputs: dict[str, Tensor] = {}
    handles = [
        module.register_forward_pre_hook(
            lambda _m, args, name=name: inputs.__setitem__(name, args[0].detach())
        )
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d)
    ]
    try:
        with torch.inference_mode():
            model(image)
    finally:
        for handle in handles:
            handle.remove()
    return [
        _ConvCall(name, model.get_submodule(name), x)  # type: ignore[arg-type]
        for name, x in inputs.items()
    ]


def forward_seconds(fn: Callable[[Tensor], object], points: Tensor, batch: int) -> float:
    """Median seconds to push all of ``points`` through ``fn`` in batches of ``batch``."""

    def run() -> None:
        with torch.inference_mode():
            for start in range(0, points.shape[0], batch):
                fn(points[start : start + batch])

    return _median_seconds(run)


def frozen_compiled(model: nn.Module) -> Callable[[Tensor], object]:
    """``torch.compile`` with Inductor freezing (pre-packed weights, fused activations)."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    frozen = copy.deepcopy(model)
    for p in frozen.parameters():
        p.requires_grad_(False)
    return torch.compile(frozen, dynamic=False)


def best(seconds: dict[int, float]) -> tuple[int, float]:
    """The batch size with the lowest time, and that time."""
    size = min(seconds, key=seconds.__getitem__)
    return size, seconds[size]


def measure(sizes: Sequence[int] = SWEEP_SIZES) -> dict[str, Any]:
    """Every figure of the report, in one run."""
    from skimage import data

    threads = torch.get_num_threads()
    model = efficientnet_lite0()
    image = load_image(data.chelsea())[0]  # type: ignore[no-untyped-call]
    baseline = BlackBaseline(*IMAGENET_NORMALIZE)(image)
    points = StraightLinePath(image, baseline)(
        torch.zeros(POINTS, dtype=torch.long), uniform_partition(POINTS - 1)
    )
    prepared = prepare_model(
        model, image, SpeedOptions(fold_batchnorm=True, channels_last=True)
    ).module
    nhwc = points.contiguous(memory_format=torch.channels_last)
    print("GEMM peak ...", flush=True)
    peak = gemm_gflops()
    calls = conv_calls(prepared, nhwc[:1])
    macs = sum(c.macs() for c in calls) + sum(
        m.in_features * m.out_features for m in prepared.modules() if isinstance(m, nn.Linear)
    )
    print(f"{len(calls)} convolutions, timing each at batch sizes {list(sizes)} ...", flush=True)
    per_conv = {c.name: {b: c.seconds_per_image(b) for b in sizes} for c in calls}
    conv_at = {b: POINTS * sum(per_conv[n][b] for n in per_conv) for b in sizes}
    conv_best_batch, conv_single = best(conv_at)
    conv_per_layer = POINTS * sum(min(v.values()) for v in per_conv.values())
    print("whole forwards ...", flush=True)
    eager = {b: forward_seconds(model, points, b) for b in sizes}
    folded = {b: forward_seconds(prepared, nhwc, b) for b in sizes}
    compiled = frozen_compiled(prepared)
    frozen: dict[int, float] = {}
    compile_seconds = 0.0
    for b in (4, 8):  # the sizes where the folded copy is fastest here; each compiles once
        start = time.perf_counter()
        with torch.inference_mode():
            compiled(nhwc[:b])
        compile_seconds += time.perf_counter() - start
        frozen[b] = forward_seconds(compiled, nhwc, b)
    print("ours and Captum ...", flush=True)
    rows = speed_table(model, image, LAYER, POINTS - 1, 5, ("ours", "captum"))
    ours, captum = rows[0], rows[1]
    gflop = 2 * macs * POINTS / 1e9
    return {
        "cpu": _cpu_name(),
        "torch": torch.__version__,
        "threads": threads,
        "points": POINTS,
        "gemm_gflops": peak,
        "macs_per_image": macs,
        "gflop_per_call": gflop,
        "conv_seconds_by_batch": conv_at,
        "conv_best_batch": conv_best_batch,
        "conv_seconds_single_batch": conv_single,
        "conv_seconds_per_layer_best": conv_per_layer,
        "conv_per_layer": per_conv,
        "eager_forward_by_batch": eager,
        "folded_forward_by_batch": folded,
        "frozen_forward_by_batch": frozen,
        "frozen_compile_seconds": compile_seconds,
        "ours_seconds": ours.seconds,
        "captum_seconds": captum.seconds,
        "captum_method": captum.method,
        "goal_ratio": GOAL_RATIO,
    }


def markdown(r: dict[str, Any]) -> str:
    """The report."""
    gflop = r["gflop_per_call"]
    need = r["captum_seconds"] / r["goal_ratio"]

    def row(what: str, seconds: float, note: str = "") -> str:
        rate = gflop / seconds
        cells = (what, f"{seconds:.3f}", f"{rate:.0f}", f"{rate / r['gemm_gflops']:.0%}", note)
        return "| " + " | ".join(md_cell(c) for c in cells) + " |\n"

    eager_b, eager_s = best(r["eager_forward_by_batch"])
    folded_b, folded_s = best(r["folded_forward_by_batch"])
    frozen_b, frozen_s = best(r["frozen_forward_by_batch"])
    text = (
        f"# How fast can {r['points']} points of EfficientNet-Lite0 run here?\n\n"
        f"{r['cpu']}, torch {r['torch']}, {r['threads']} threads. One forward is "
        f"{r['macs_per_image'] / 1e6:.0f} M multiply-accumulates, so the {r['points']} points "
        f"of one call at m = 50 are {gflop:.1f} GFLOP. Float32 GEMM peak (2048 x 2048): "
        f"**{r['gemm_gflops']:.0f} GFLOP/s**. Written by `python benchmarks/ceiling.py`.\n\n"
        "| what runs the 51 points | seconds | GFLOP/s | of GEMM peak | note |\n"
        "|---|---:|---:|---:|---|\n"
        + row(
            "convolution kernels alone, each at its own best batch size",
            r["conv_seconds_per_layer_best"],
            "lower bound for any oneDNN-based forward: no activations, padding or additions",
        )
        + row(
            f"convolution kernels alone, batches of {r['conv_best_batch']}",
            r["conv_seconds_single_batch"],
            "best single batch size",
        )
        + row(
            f"torch.compile with Inductor freezing, batches of {frozen_b}",
            frozen_s,
            f"no gradients; compiled in {r['frozen_compile_seconds']:.0f} s",
        )
        + row(f"folded channels-last copy, batches of {folded_b}", folded_s, "no gradients")
        + row(f"eager model as given, batches of {eager_b}", eager_s, "the benchmark's floor")
        + row("rsigradcam RSIGradCAM, default call", r["ours_seconds"], "forward + backward")
        + row(r["captum_method"], r["captum_seconds"], "at its best")
        + row(
            f"what Captum >= {r['goal_ratio']}x ours needs of ours",
            need,
            f"Captum's time / {r['goal_ratio']}",
        )
    )
    text += (
        f"\nCaptum at its best is {r['captum_seconds'] / r['ours_seconds']:.2f}x ours. "
        f"Captum >= {r['goal_ratio']}x would need a whole call (51 forwards and the backward "
        f"after `{LAYER}`) in {need:.3f} s: "
        f"{need / r['conv_seconds_per_layer_best']:.2f}x the time of the convolution kernels "
        f"alone at their best batch sizes, and {need / frozen_s:.2f}x that of the fastest "
        "forward a PyTorch compiler builds here.\n\n"
        "Convolution kernels, seconds per image by batch size, summed over the model:\n\n"
        "| batch size | " + " | ".join(str(b) for b in r["conv_seconds_by_batch"]) + " |\n"
        "|---|" + "---:|" * len(r["conv_seconds_by_batch"]) + "\n"
        "| seconds for 51 points | "
        + " | ".join(f"{s:.3f}" for s in r["conv_seconds_by_batch"].values())
        + " |\n"
    )
    return text


def main() -> int:
    """Measure, then write ceiling.md and ceiling.json next to this script."""
    results = measure()
    out = Path(__file__).resolve().parent
    text = markdown(results)
    (out / "ceiling.md").write_text(text)
    (out / "ceiling.json").write_text(json.dumps(results, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
