"""Deprecation warnings attributed to the user's line, however deep the library calls."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

__all__ = ["warn_deprecated"]

_PACKAGE = str(Path(__file__).resolve().parent)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside this package, as ``warnings`` counts."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(
        _PACKAGE
    ):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def warn_deprecated(message: str) -> None:
    """Issue a :class:`DeprecationWarning` pointing at the user's code that called us.

    Example:
        >>> warn_deprecated("old=... is deprecated; use new=...")  # doctest: +SKIP
    """
    warnings.warn(message, DeprecationWarning, stacklevel=_caller_stacklevel())
