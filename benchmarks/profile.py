"""Where the time of one call goes: ``torch.profiler`` on one image and on a batch.

On the embedded EfficientNet-Lite0 (``chelsea`` repeated, ``head``, m = 50, the default
``speed="auto"``), after two warm-up calls, one call is profiled per case (1 image and 64
images by default) and summarised:

* **wall**: the call's seconds (synchronised on a GPU);
* **device kernels**: the summed time of the GPU kernels and their count (0 on a CPU);
* **launches**: CUDA kernel launches from the host (``cudaLaunchKernel`` and kin);
* **host overhead**: wall minus device kernel time (on a GPU: what the GPU waited for);
* **synchronisations**: the host waiting for the device (``cudaStreamSynchronize``,
  ``cudaDeviceSynchronize``, synchronous copies) and the scalars read back to Python
  (``aten::_local_scalar_dense``: every ``.item()``, ``bool(tensor)``, ``float(tensor)``);
* **copies**: host-device copies (``Memcpy HtoD / DtoH``) and ``aten::copy_`` calls;
* the ten operators with the most self time (device time on a GPU, CPU time on a CPU).

It writes ``benchmarks/profile-<device>.md`` and ``.json``. Run from the repository
root (about a minute on a GPU; several on 2 CPU cores)::

    python benchmarks/profile.py --device cuda
    python benchmarks/profile.py --device cpu --batches 1,8
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from rsigradcam import RSIGradCAM
from rsigradcam.files import md_cell, save_json, save_text

ROOT = Path(__file__).resolve().parents[1]

#: CPU-side events that launch a GPU kernel.
LAUNCHES = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx")
#: CPU-side events in which the host waits for the device.
SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize",
         "cudaMemcpy", "cudaStreamWaitEvent")
#: Scalars read back to Python (each is a synchronisation on a GPU).
SCALAR_READS = "aten::_local_scalar_dense"


@dataclass
class ProfileSummary:
    """What one profiled call spent, and on what."""

    case: str
    wall_s: float
    kernel_s: float = 0.0
    kernels: int = 0
    launches: int = 0
    host_overhead_s: float = 0.0
    syncs: int = 0
    scalar_reads: int = 0
    memcpy: int = 0
    copy_calls: int = 0
    top: list[tuple[str, float, int]] = field(default_factory=list)


def summarise(prof: Any, case: str, wall_s: float, device: torch.device) -> ProfileSummary:
    """Summarise a finished ``torch.profiler.profile`` of one call that took ``wall_s``."""
    events = list(prof.events())
    names = Counter(e.name for e in events)
    on_gpu = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    kernels = [e for e in on_gpu if not e.name.startswith("Memcpy") and
               not e.name.startswith("Memset")]
    kernel_s = sum(e.self_device_time_total for e in kernels) / 1e6
    table = prof.key_averages()
    gpu = device.type == "cuda"
    ranked = sorted(table, key=lambda a: a.self_device_time_total if gpu else a.self_cpu_time_total,
                    reverse=True)
    top = [(a.key, (a.self_device_time_total if gpu else a.self_cpu_time_total) / 1e6, a.count)
           for a in ranked[:10]]
    return ProfileSummary(
        case=case,
        wall_s=wall_s,
        kernel_s=kernel_s,
        kernels=len(kernels),
        launches=sum(names[n] for n in LAUNCHES),
        host_overhead_s=max(0.0, wall_s - kernel_s) if gpu else wall_s,
        syncs=sum(names[n] for n in SYNCS),
        scalar_reads=names[SCALAR_READS],
        memcpy=sum(c for n, c in names.items() if n.startswith("Memcpy")),
        copy_calls=names["aten::copy_"],
        top=top,
    )


def profile_call(cam: RSIGradCAM[Any], images: torch.Tensor, case: str) -> ProfileSummary:
    """Warm ``cam`` up on ``images`` twice, then profile one call."""
    device = images.device
    for _ in range(2):
        cam(images)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
        torch.cuda.synchronize(device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        cam(images)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall = time.perf_counter() - start
    return summarise(prof, case, wall, device)


def markdown(device_name: str, summaries: list[ProfileSummary]) -> str:
    """The summary table and each case's top operators, in Markdown."""
    lines = [
        f"# Profile of one call on {device_name}",
        "",
        "EfficientNet-Lite0, `chelsea` repeated, `head`, m = 50, default `speed=\"auto\"`; one "
        "call after two warm-ups. Command: `python benchmarks/profile.py`.",
        "",
        "| case | wall (ms) | kernel time (ms) | kernels | launches | host overhead (ms) | "
        "synchronisations | scalar reads | memcpy | copy_ calls |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.case} | {s.wall_s * 1e3:.1f} | {s.kernel_s * 1e3:.1f} | {s.kernels} | "
            f"{s.launches} | {s.host_overhead_s * 1e3:.1f} | {s.syncs} | {s.scalar_reads} | "
            f"{s.memcpy} | {s.copy_calls} |"
        )
    for s in summaries:
        lines += ["", f"Top operators by self time, {s.case}:", "",
                  "| operator | self time (ms) | calls |", "|---|---:|---:|"]
        lines += [f"| {md_cell(name)} | {sec * 1e3:.2f} | {count} |" for name, sec, count in s.top]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Profile the cases; write ``benchmarks/profile-<device>.md`` and ``.json``."""
    from skimage import data

    from rsigradcam.io import load_image
    from rsigradcam.models import efficientnet_lite0

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", default="1,64", help="images per call, comma-separated")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = efficientnet_lite0().eval().to(device)
    image = load_image(data.chelsea())[0].to(device)  # type: ignore[no-untyped-call]
    cam = RSIGradCAM(model, "head", steps=50)
    summaries = []
    for n in (int(b) for b in args.batches.split(",")):
        images = image.expand(n, -1, -1, -1).contiguous()
        summaries.append(profile_call(cam, images, f"{n} image{'s' if n > 1 else ''}"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    text = markdown(name, summaries)
    stem = ROOT / "benchmarks" / f"profile-{device.type}"
    save_json({"device": name, "torch": torch.__version__,
               "cases": [asdict(s) for s in summaries]}, stem.with_suffix(".json"))
    save_text(text, stem.with_suffix(".md"))
    print(text)


if __name__ == "__main__":
    main()
