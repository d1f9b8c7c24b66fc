"""Close names for a mistyped one: the "did you mean" of every unknown-name message."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

__all__ = ["did_you_mean", "suggest"]


def suggest(word: str, choices: Sequence[str], n: int = 5) -> list[str]:
    """Close matches of ``word`` among ``choices``, ignoring case.

    Choices that contain ``word`` as a whole word come first, then spelling neighbours.
    """
    by_folded: dict[str, str] = {}
    for choice in choices:
        by_folded.setdefault(choice.casefold(), choice)
    folded = word.casefold().strip()
    pattern = re.compile(rf"\b{re.escape(folded)}\b") if folded else None
    containing = [c for f, c in by_folded.items() if pattern is not None and pattern.search(f)]
    close = [by_folded[f] for f in difflib.get_close_matches(folded, by_folded, n=n, cutoff=0.6)]
    return list(dict.fromkeys(containing + close))[:n]


def did_you_mean(matches: Sequence[str]) -> str:
    """`` (did you mean 'a', 'b'?)`` for close matches, ``""`` for none."""
    return f" (did you mean {', '.join(repr(m) for m in matches)}?)" if matches else ""
