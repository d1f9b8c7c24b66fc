"""Output folders that a failed run does not leave behind.

A command creates its ``--out`` folder (and any missing folder above it) before it knows
whether it will write anything there. :func:`removed_if_left_empty` removes, when the
command ends for any reason (success, error, interrupt), each of those folders that it
created and that is still empty; a folder that existed before is never touched.

Example:
    >>> with removed_if_left_empty(tmp_path / "a" / "out") as out:  # doctest: +SKIP
    ...     out.mkdir(parents=True)
    >>> (tmp_path / "a").exists()                                   # doctest: +SKIP
    False
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["removed_if_left_empty"]


@contextmanager
def removed_if_left_empty(path: str | Path) -> Iterator[Path]:
    """Yield ``path``; on exit remove the folders of it that did not exist and are empty.

    The folders are ``path`` and the folders above it that were missing on entry; they
    are removed from the deepest up, and only while empty (a folder holding any file,
    even one written by someone else meanwhile, stays, and so do the folders above it).
    """
    folder = Path(path)
    absolute = folder.absolute()
    missing = [p for p in (absolute, *absolute.parents) if not p.exists()]  # deepest first
    try:
        yield folder
    finally:
        for made in missing:
            try:
                made.rmdir()
            except FileNotFoundError:
                continue  # never created
            except OSError:
                break  # not empty: it and the folders above it stay
