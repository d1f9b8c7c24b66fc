"""Choosing how many path points go through the model at once, from a memory budget."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from rsigradcam.core.capture import ModuleOutput

__all__ = [
    "auto_chunk_size",
    "available_memory_bytes",
    "chunk_size",
    "default_budget_bytes",
    "point_bytes",
    "proc_kib_field",
]

#: Fraction of the free memory that an explanation may use when no budget is given.
DEFAULT_FRACTION = 0.25

#: On a CPU, larger batches stop paying off once activations leave the caches and each
#: chunk faults in fresh pages (glibc serves blocks above its adaptive mmap threshold,
#: 32 MB at most, with new pages): a chunk is capped so that its largest activation stays
#: near this size. Measured by ``python benchmarks/chunk_size.py`` in a plain Python
#: process (the allocator as glibc sets it up; nothing in the package changes it) on
#: EfficientNet-Lite0 at 224x224, 2 cores, the default ``speed="auto"`` copy, one call at
#: ``head``, m = 50, median of 7 interleaved runs: batches of 2, 3, 4, 6, 8, 12 and 17
#: (4.6 MB of largest activation per point) took 0.345, 0.275, 0.272, 0.248, 0.247, 0.240
#: and 0.352 s: a plateau from 6 to 12 points, then a jump. The cap takes 6 (28 MB), the
#: plateau's start, which also keeps memory low (benchmarks/chunk_size.md).
CPU_CHUNK_ACTIVATION_BYTES = 30 * 1024**2


def proc_kib_field(path: str, key: str) -> int | None:
    """Read a ``Key:  123 kB`` line of a Linux /proc file, in bytes; ``None`` if absent."""
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def available_memory_bytes(device: torch.device) -> int:
    """Free memory on ``device``: GPU free memory, or the host's available RAM."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    available = proc_kib_field("/proc/meminfo", "MemAvailable")
    if available is not None:
        return available
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 * 1024**3


def default_budget_bytes(device: torch.device) -> int:
    """The default budget: :data:`DEFAULT_FRACTION` of the free memory on ``device``."""
    return int(DEFAULT_FRACTION * available_memory_bytes(device))


def point_bytes(records: Sequence[ModuleOutput], layers: Sequence[str], input_bytes: int) -> int:
    """Estimate the peak memory one path point needs during a forward/backward chunk.

    Before the first captured layer nothing keeps a graph, so only the largest transient
    activation matters there; after it, every module output may be saved for the
    backward pass, with its gradient while the backward runs. Captured activations are held
    several times (leaf, the copy the model uses, the gradient, the integrator's terms and
    carried point). The factors were set so that measured peaks stay under the budget on
    EfficientNet-Lite0 (tests/core/test_memory.py).

    Args:
        records: Module outputs from :meth:`rsigradcam.core.capture.LayerCapture.probe` for one
            point, in completion order.
        layers: Names of the captured layers.
        input_bytes: Size of one input image.
    """
    first = next((i for i, r in enumerate(records) if r.name in layers), len(records))
    before = max((r.nbytes for r in records[:first] if r.is_leaf), default=0)
    after = sum(r.nbytes for r in records[first:] if r.is_leaf)
    captured = sum(r.nbytes for r in records if r.name in layers)
    return 4 * before + 3 * after + 6 * captured + 4 * input_bytes


def chunk_size(
    per_point: int, budget: int, total_points: int, largest_activation: int | None = None
) -> int:
    """How many points fit in ``budget`` bytes (at least 1, at most ``total_points``).

    Args:
        per_point: Estimated bytes one point needs (:func:`point_bytes`).
        budget: Bytes a chunk may use.
        total_points: Points still to evaluate.
        largest_activation: On a CPU, the largest activation of one point; the chunk is
            then also capped by :data:`CPU_CHUNK_ACTIVATION_BYTES` for cache efficiency.

    Example:
        >>> chunk_size(per_point=10, budget=100, total_points=51)
        10
    """
    chunk = budget // max(per_point, 1)
    if largest_activation:
        chunk = min(chunk, CPU_CHUNK_ACTIVATION_BYTES // largest_activation)
    return max(1, min(total_points, chunk))


def auto_chunk_size(
    records: Sequence[ModuleOutput],
    layers: Sequence[str],
    x: torch.Tensor,
    memory_budget_mb: float | None,
    total_points: int,
) -> int:
    """The chunk ``batch_size=None`` uses for points like ``x[0]``.

    :func:`chunk_size` from :func:`point_bytes` and the budget (``memory_budget_mb``, else
    :func:`default_budget_bytes`), capped for the caches on a CPU.
    """
    per_point = point_bytes(records, layers, x[0].numel() * x.element_size())
    budget = (
        int(memory_budget_mb * 1024**2)
        if memory_budget_mb is not None
        else default_budget_bytes(x.device)
    )
    largest = max((r.nbytes for r in records if r.is_leaf), default=0)
    return chunk_size(per_point, budget, total_points, largest if x.device.type == "cpu" else None)
