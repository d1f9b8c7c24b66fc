"""The parameters of a run: the fixed chunk budget, and what a resumed run must keep.

A run stores its parameters when it starts; run again into the same folder, it resumes
only when :func:`differences` finds none that matter to the chosen methods.

Example:
    >>> differences({"steps": 50, "methods": ["rsi"]}, {"steps": 20, "methods": ["rsi"]})
    ['steps 50 -> 20']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rsigradcam.methods import METHODS, BaseCAM

__all__ = ["FIXED_BUDGET_MB", "differences"]

#: Memory budget of a path chunk (MB) in dataset runs and evaluations. It is fixed, not
#: taken from the free memory, so that chunks, and with them the results, are the same on
#: every run.
FIXED_BUDGET_MB = 1024.0


#: Parameters that only some methods use, with the test for a method's class that uses it;
#: a resume compares them only when one of the run's methods uses them.
_USED_BY: dict[str, Callable[[type[BaseCAM[Any]]], bool]] = {
    "steps": lambda cls: cls.takes_steps,
    "baseline": lambda cls: cls.takes_steps,
    "grad_relu": lambda cls: "grad_relu" in cls.variants,
    "guided": lambda cls: "guided" in cls.variants,
}


def _ignored(methods: Sequence[str]) -> set[str]:
    """The parameters of :data:`_USED_BY` that none of ``methods`` uses."""
    classes = [METHODS[m] for m in methods if m in METHODS]
    return {key for key, uses in _USED_BY.items() if not any(uses(c) for c in classes)}


def differences(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The parameters of a stored run that differ now, as ``"key old -> new"`` lines.

    Parameters that none of ``now["methods"]`` uses (e.g. ``steps`` of a Grad-CAM-only
    run) are not compared; ``*sha256`` values are only said to differ.
    """
    changed = []
    ignored = _ignored(now.get("methods", ()))
    for key in sorted((set(before) | set(now)) - ignored):
        old, new = before.get(key), now.get(key)
        if old != new:
            changed.append(
                f"{key} differs" if key.endswith("sha256") else f"{key} {old!r} -> {new!r}"
            )
    return changed
