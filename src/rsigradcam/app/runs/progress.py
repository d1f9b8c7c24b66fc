"""Rank 0's view of a run: a progress bar on a terminal, else plain lines.

Without a terminal (output into a log file) it prints a line per finished shard, and a
line every :data:`HEARTBEAT` seconds while a shard runs, so that a long first shard never
looks like a hung run.

Example:
    >>> with RunProgress(out, sizes, bar=True, echo=print) as view:  # doctest: +SKIP
    ...     view.update(0, finished="shard-00000")
"""

from __future__ import annotations

import math
import os
import threading
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

__all__ = ["HEARTBEAT", "RunProgress"]

#: Seconds between the progress lines printed while a shard runs (without a terminal).
HEARTBEAT = 60.0


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
    prints a line per shard that rank 0 finishes and, while none finishes, a line every
    ``heartbeat`` seconds (done / total, rate, time left, time so far).

    Args:
        out: The output folder.
        sizes: Images per shard, by shard name.
        bar: Draw the bar (else print lines through ``echo``).
        echo: Where the lines go; ``None``: nowhere.
        unit: What the shards hold, in the plural (``"images"``).
        task: What the bar says is being done.
        heartbeat: Seconds between the lines while a shard runs (without a bar).
    """

    def __init__(
        self,
        out: Path,
        sizes: dict[str, int],
        bar: bool,
        echo: Callable[[str], None] | None,
        unit: str = "images",
        task: str = "explaining",
        heartbeat: float = HEARTBEAT,
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
        self.task_name = task
        self.heartbeat = heartbeat
        self._stop = threading.Event()
        self._beats: threading.Thread | None = None
        self._lock = threading.Lock()

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
            self._say(f"{finished}:", now)

    def _say(self, what: str, now: float) -> None:
        """One plain line: ``WHAT done/total units, rate, ETA, elapsed``."""
        rate = self.processed / max(now - self.start, 1e-9)
        left = (self.total - self.completed) / rate if rate > 0 else float("nan")
        eta = f"{left:.0f} s" if math.isfinite(left) else "-"
        if self.echo is not None:
            with self._lock:
                self.echo(
                    f"{what} {self.completed}/{self.total} {self.unit}, "
                    f"{rate:.2f} {self.unit}/s, ETA {eta}, {now - self.start:.0f} s so far"
                )

    def _beat(self) -> None:
        """Without a bar: a line every ``heartbeat`` seconds until the run ends."""
        while not self._stop.wait(self.heartbeat):
            self._say(f"{self.task_name}:", time.perf_counter())

    def __enter__(self) -> RunProgress:
        self.bar.start()
        if self.bar.disable and self.echo is not None and self.total > self.completed:
            self._beats = threading.Thread(target=self._beat, name="progress", daemon=True)
            self._beats.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._beats is not None:
            self._beats.join()
        self.bar.stop()
