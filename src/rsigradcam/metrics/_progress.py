"""One progress bar per metric run: drawn on a terminal, silent everywhere else."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Advance", "progress_bar"]

Advance = Callable[[int], None]
"""``advance(n)``: count ``n`` more units of work done."""


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Advance]:
    """A transient bar on stderr counting ``total`` units; yields ``advance(n)``.

    The bar is drawn only when ``enabled`` and stderr is a terminal, so logs, pipes and
    tests see nothing.

    Example:
        >>> with progress_bar("deletion", total=10, enabled=False) as advance:
        ...     advance(10)
    """
    # rich is imported here, not at module level: ``import rsigradcam`` stays light.
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not (enabled and console.is_terminal),
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    )
    with progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
