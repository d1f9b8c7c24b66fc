"""Rank 0's view of a run: a progress bar on a terminal, else a line per shard.

Example:
    >>> with RunProgress(out, sizes, bar=True, echo=print) as view:  # doctest: +SKIP
    ...     view.update(0, finished="shard-00000")
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

from rich.progress import (
    ProgressColumn,
    Task,
)
from rich.text import Text

from rsigradcam.heatmaps import SHARD_DIR
from rsigradcam.progress import make_progress

__all__ = ["RunProgress"]


class _RateColumn(ProgressColumn):
    """``12.3 images/s``."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} {self.unit}/s" if speed else f"- {self.unit}/s")


class RunProgress:
    """Rank 0's view of the whole run: shards finished on disk, plus its own open shard.

    On a terminal it draws a bar (images, images/s, elapsed, ETA) on stderr; otherwise it
    prints a line per shard that rank 0 finishes.

    Args:
        out: The output folder.
        sizes: Images per shard, by shard name.
        bar: Draw the bar (else print lines through ``echo``).
        echo: Where the lines go; ``None``: nowhere.
        unit: What the shards hold, in the plural (``"images"``).
        task: What the bar says is being done.
    """

    def __init__(
        self,
        out: Path,
        sizes: dict[str, int],
        bar: bool,
        echo: Callable[[str], None] | None,
        unit: str = "images",
        task: str = "explaining",
    ) -> None:
        self.unit = unit
        self.folder = out / SHARD_DIR
        self.sizes = sizes
        self.echo = echo
        self.done = self._scan()
        self.partial = 0
        self.total = sum(sizes.values())
        self.at_start = self.completed
        self.start = self._last_scan = time.perf_counter()
        self.bar = make_progress(task, unit, [_RateColumn(unit)], enabled=bar)
        self.task = self.bar.add_task("", total=self.total, completed=self.at_start)

    def _scan(self) -> set[str]:
        with os.scandir(self.folder) as found:
            return {
                e.name[:-4] for e in found if e.name.endswith(".npz") and e.name[:-4] in self.sizes
            }

    @property
    def completed(self) -> int:
        """Images finished: in finished shards, and in rank 0's open shard."""
        return sum(self.sizes[name] for name in self.done) + self.partial

    @property
    def processed(self) -> int:
        """Images finished during this run."""
        return self.completed - self.at_start

    def update(self, partial: int, finished: str | None = None) -> None:
        """Rank 0 has ``partial`` images of its open shard done, or just wrote ``finished``."""
        now = time.perf_counter()
        self.partial = partial
        if finished is not None or now - self._last_scan > 2.0:
            self.done = self._scan()
            self._last_scan = now
        if finished is not None:
            self.done.add(finished)
        self.bar.update(self.task, completed=self.completed)
        if finished is not None and self.bar.disable and self.echo is not None:
            rate = self.processed / max(now - self.start, 1e-9)
            left = (self.total - self.completed) / rate if rate > 0 else float("nan")
            eta = f"{left:.0f} s" if math.isfinite(left) else "-"
            self.echo(
                f"{finished}: {self.completed}/{self.total} {self.unit}, "
                f"{rate:.2f} {self.unit}/s, ETA {eta}"
            )

    def __enter__(self) -> RunProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()
