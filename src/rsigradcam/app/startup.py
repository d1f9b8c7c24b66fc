"""How fast the command line answers: the benchmark's CLI start-up rows.

``rsigradcam --help`` and a usage error must answer before torch is imported (the
commands import it when they run). :func:`cli_startup` times them as real processes,
:func:`startup_markdown` writes the rows of ``benchmarks/results.md``.

Example:
    >>> rows = cli_startup(runs=3)                  # doctest: +SKIP
    >>> [row.name for row in rows]                  # doctest: +SKIP
    ['CLI --help start-up', 'CLI usage error start-up']
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["StartupRow", "cli_startup", "startup_markdown"]

#: What is timed: a row name and the arguments after ``rsigradcam``.
CASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("CLI --help start-up", ("--help",)),
    ("CLI usage error start-up", ("explain", "--no-such-option")),
)


@dataclass(frozen=True)
class StartupRow:
    """The median wall time of a command line that answers without doing any work.

    Attributes:
        name: E.g. ``"CLI --help start-up"``.
        args: The arguments after ``rsigradcam``.
        seconds: Median wall time of ``runs`` processes, after one warm-up process.
        runs: How many processes were timed.
    """

    name: str
    args: tuple[str, ...]
    seconds: float
    runs: int


def _seconds(args: Sequence[str]) -> float:
    command = [sys.executable, "-m", "rsigradcam.app.cli", *args]
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, check=False, timeout=120)
    return time.perf_counter() - start


def cli_startup(runs: int = 5) -> list[StartupRow]:
    """Time ``rsigradcam --help`` and a usage error as new processes (a warm start).

    Each case runs once untimed (the files are then in the page cache: a warm start),
    then ``runs`` times; the row holds the median.
    """
    rows = []
    for name, args in CASES:
        _seconds(args)
        times = [_seconds(args) for _ in range(runs)]
        rows.append(StartupRow(name, args, statistics.median(times), runs))
    return rows


def startup_markdown(rows: Sequence[StartupRow]) -> str:
    """The rows as a Markdown table (target: within 1 s of a warm start)."""
    lines = [
        "",
        "Command-line start-up: median wall time of new processes after a warm-up run "
        "(target: within 1 s; torch is imported only when a command runs).",
        "",
        "| command line | median time (s) |",
        "|---|---:|",
    ]
    lines += [f"| {row.name} (`rsigradcam {' '.join(row.args)}`) | {row.seconds:.3f} |"
              for row in rows]
    return "\n".join(lines) + "\n"
