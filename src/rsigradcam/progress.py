"""Progress bars: drawn on stderr on a terminal, silent everywhere else.

One layout for every bar of the project (the metrics, ``explain``, ``explain-dataset``):
``description | bar | done/total [unit] [extra columns] | elapsed | remaining``. rich is
imported when a bar is made, not with this module, so ``import rsigradcam`` stays light.
rich comes with the ``cli`` extra; without it the metrics' bars are silent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["Advance", "make_progress", "progress_bar"]

Advance = Callable[[int], None]
"""``advance(n)``: count ``n`` more units of work done."""


def make_progress(
    description: str = "{task.description}",
    unit: str | None = None,
    extra: Sequence[Any] = (),
    enabled: bool = True,
) -> Progress:
    """A transient rich bar on stderr, disabled unless ``enabled`` and stderr is a terminal.

    Args:
        description: The first column: a fixed text, or ``"{task.description}"``.
        unit: Text after the ``done/total`` count, e.g. ``"images"``.
        extra: More rich columns, placed before the elapsed time.
        enabled: ``False`` never draws.

    Example:
        >>> bar = make_progress(unit="images", enabled=False)
        >>> bar.disable
        True
    """
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
    columns: list[Any] = [TextColumn(description), BarColumn(), MofNCompleteColumn()]
    if unit is not None:
        columns.append(TextColumn(unit))
    columns += [*extra, TimeElapsedColumn(), TimeRemainingColumn()]
    return Progress(
        *columns,
        console=console,
        disable=not (enabled and console.is_terminal),
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    )


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Advance]:
    """A transient bar counting ``total`` units; yields ``advance(n)``.

    Nothing is drawn, and rich is not imported, when ``enabled`` is false or rich is not
    installed (the library needs only torch, NumPy and Pillow).

    Example:
        >>> with progress_bar("deletion", total=10, enabled=False) as advance:
        ...     advance(10)
    """
    if not enabled or find_spec("rich") is None:
        yield lambda n: None
        return
    progress = make_progress(enabled=enabled)
    with progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
