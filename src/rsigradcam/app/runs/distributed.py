"""The processes of a run: one alone, or the ranks of a ``torchrun`` job.

Under ``torchrun`` (the ``RANK`` and ``WORLD_SIZE`` variables) each process joins a
``torch.distributed`` process group (gloo on CPU, nccl on GPU, or the group that the
caller already started); :func:`from_rank_zero` and :func:`barrier` do nothing for a
process alone.

Example:
    >>> ranks = Ranks.from_env()
    >>> device = rank_device("cpu", ranks)
    >>> with process_group(ranks, device):
    ...     todo = from_rank_zero([0, 1, 2], ranks)
    >>> todo
    [0, 1, 2]
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from rsigradcam.app.loading.models import check_device

__all__ = [
    "BARRIER_TIMEOUT",
    "RankZeroError",
    "Ranks",
    "barrier",
    "from_rank_zero",
    "process_group",
    "rank_device",
]

#: How long a process waits for the others at a barrier (the slowest rank's last shard).
BARRIER_TIMEOUT = timedelta(hours=24)

T = TypeVar("T")


class RankZeroError(Exception):
    """Raised on ranks other than 0 when rank 0 refused the run (it reports why).

    Attributes:
        exit_code: The exit code rank 0 exits with (2 for a usage error).
    """

    def __init__(self, exit_code: int) -> None:
        super().__init__(f"rank 0 stopped the run (exit code {exit_code})")
        self.exit_code = exit_code


@dataclass(frozen=True)
class Ranks:
    """The place of this process in a torchrun job (one process: rank 0 of 1).

    Attributes:
        rank: Global rank.
        world_size: Number of processes.
        local_rank: Rank on this machine (the GPU it uses).
        local_world_size: Number of processes on this machine.
        distributed: Whether torchrun's variables were found.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    distributed: bool = False

    @classmethod
    def from_env(cls) -> Ranks:
        """Read ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` (torchrun)."""
        env = os.environ
        if "RANK" not in env or "WORLD_SIZE" not in env:
            return cls()
        world = int(env["WORLD_SIZE"])
        return cls(
            int(env["RANK"]),
            world,
            int(env.get("LOCAL_RANK", "0")),
            int(env.get("LOCAL_WORLD_SIZE", str(world))),
            True,
        )


def rank_device(spec: str, ranks: Ranks) -> torch.device:
    """The device for a ``--device`` argument: plain ``cuda`` is ``cuda:LOCAL_RANK``.

    Raises:
        InputError: The device cannot run here (see
            :func:`rsigradcam.app.loading.check_device`).
    """
    device = check_device(spec)
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", ranks.local_rank)
    return device


@contextlib.contextmanager
def process_group(ranks: Ranks, device: torch.device) -> Iterator[None]:
    """Join the torchrun job's process group (or use the one already started)."""
    if not ranks.distributed or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=BARRIER_TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier(ranks: Ranks, device: torch.device) -> None:
    """Wait until every rank gets here (nothing to wait for when alone)."""
    if ranks.distributed:
        if dist.get_backend() == "nccl" and device.index is not None:
            dist.barrier(device_ids=[device.index])
        else:
            dist.barrier()


def from_rank_zero(value: T, ranks: Ranks) -> T:
    """Rank 0's ``value``, on every rank (``value`` must be picklable)."""
    if not ranks.distributed:
        return value
    box: list[T] = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
