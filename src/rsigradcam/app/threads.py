"""How many threads torch uses in a command: ``--threads``, ``OMP_NUM_THREADS`` or the CPUs.

Without the first two, the CPUs that this process may really use: a container may see
every core of its host and still be allowed only some of them (its affinity mask, or a
CPU quota in its cgroup: ``cpu.max``, or ``cpu.cfs_quota_us`` with
``cpu.cfs_period_us``); torch's default counts the host's cores. More threads than
usable cores, or than cores left by other busy processes, make every step wait for the
slowest thread: on a 2-core machine shared with busy processes, one RSI call took
0.7-8.4 s with 2 threads and a steady 0.6-2.1 s with 1 (see the README's "Threads and
busy machines").

Nothing here imports torch until :func:`use_threads` runs: the command line reads
:data:`THREADS_HELP` before it parses the arguments.

Example:
    >>> torch_threads(3, 4)
    3
    >>> busy_note(threads=2, load=3.5, cpus=2)
    'note: the machine is busy (load 3.5 on 2 usable CPUs); --threads 1 often runs much faster here'
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

__all__ = [
    "THREADS_HELP",
    "busy_line",
    "busy_note",
    "cgroup_cpu_limit",
    "torch_threads",
    "usable_cpus",
    "use_threads",
]

THREADS_HELP = (
    "Torch threads per process. Default: OMP_NUM_THREADS when it is set, else the CPUs this "
    "process may use (its affinity and the container's CPU quota) / processes. On a busy "
    "machine --threads 1 is often much faster."
)

_CGROUP = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return path.read_text(encoding="utf-8").strip()
    return None


def cgroup_cpu_limit(root: Path = _CGROUP, proc_cgroup: Path | None = None) -> float | None:
    """The CPU quota of this process's cgroup, in CPUs (``1.5``); ``None`` without one.

    Reads cgroup v2's ``cpu.max`` (``"150000 100000"``, or ``"max 100000"``: no quota) in
    the process's own cgroup and at the root, else cgroup v1's ``cpu.cfs_quota_us`` and
    ``cpu.cfs_period_us`` (a quota of -1: none).

    Example:
        >>> cgroup_cpu_limit(Path("/nowhere"), Path("/nowhere")) is None
        True
    """
    own = _read(proc_cgroup or Path("/proc/self/cgroup")) or ""
    places = [root / line.split(":", 2)[2].lstrip("/") for line in own.splitlines()
              if line.startswith("0::")]
    for folder in [*places, root]:
        text = _read(folder / "cpu.max")
        if text is None:
            continue
        quota, _, period = text.partition(" ")
        with contextlib.suppress(ValueError):
            if quota != "max" and float(period) > 0:
                return float(quota) / float(period)
        return None
    quota_text = _read(root / "cpu" / "cpu.cfs_quota_us")
    period_text = _read(root / "cpu" / "cpu.cfs_period_us")
    with contextlib.suppress(ValueError):
        quota_v1, period_v1 = float(quota_text or ""), float(period_text or "")
        if quota_v1 > 0 and period_v1 > 0:
            return quota_v1 / period_v1
    return None


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity mask, capped by the cgroup's quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        count = min(count, max(1, math.ceil(limit)))
    return max(1, count)


def torch_threads(threads: int | None, local_processes: int = 1) -> int:
    """Torch threads per process: ``threads`` (``--threads``), else ``OMP_NUM_THREADS``.

    Without either, the usable CPUs (:func:`usable_cpus`) divided by the processes on this
    machine. An ``OMP_NUM_THREADS`` that is not a positive integer is ignored, as OpenMP
    does.

    Example:
        >>> torch_threads(3, 4)
        3
    """
    if threads is not None:
        return threads
    try:
        from_env = int(os.environ.get("OMP_NUM_THREADS", "").strip())
    except ValueError:
        from_env = 0
    if from_env >= 1:
        return from_env
    return max(1, usable_cpus() // max(1, local_processes))


def busy_note(threads: int, load: float | None = None, cpus: int | None = None) -> str | None:
    """A one-line note when other work keeps the CPUs busy and ``threads`` is more than 1.

    Busy: the load average of the last minute (``os.getloadavg``) is above the usable
    CPUs, so that several threads would wait for each other.

    Example:
        >>> busy_note(threads=1, load=9.0, cpus=2) is None
        True
    """
    if threads <= 1:
        return None
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            return None
    cpus = usable_cpus() if cpus is None else cpus
    if load <= cpus:
        return None
    return (
        f"note: the machine is busy (load {load:.1f} on {cpus} usable CPU"
        f"{'' if cpus == 1 else 's'}); --threads 1 often runs much faster here"
    )


def busy_line(threads: int | None, local_processes: int = 1) -> str | None:
    """The busy note for a command's ``--threads`` (see :func:`busy_note`), or ``None``.

    ``None`` too when the user chose the threads (``--threads`` or ``OMP_NUM_THREADS``).
    """
    if threads is not None or "OMP_NUM_THREADS" in os.environ:
        return None
    return busy_note(torch_threads(None, local_processes))


def use_threads(threads: int | None, local_processes: int = 1) -> int:
    """Set torch's threads for this process (see :func:`torch_threads`); return how many."""
    import torch

    count = torch_threads(threads, local_processes)
    torch.set_num_threads(count)
    return count
