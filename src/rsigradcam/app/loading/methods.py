"""``--method``: names of the library's registry (:data:`rsigradcam.methods.METHODS`) or all."""

from __future__ import annotations

from collections.abc import Sequence

from rsigradcam.app.errors import InputError
from rsigradcam.methods.registry import METHODS

__all__ = ["parse_methods"]


def parse_methods(values: Sequence[str]) -> tuple[str, ...]:
    """Turn ``--method`` values (repeated, or comma lists; ``all``) into method names.

    The names are the keys of :data:`rsigradcam.methods.registry.METHODS`; ``all`` means
    every one, in the registry's order. Repeated names count once.

    Raises:
        InputError: An unknown name, or no name at all.

    Example:
        >>> parse_methods(["rsi,gradcam", "rsi"])
        ('rsi', 'gradcam')
    """
    names: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip().lower()
            if name == "all":
                names.extend(METHODS)
            elif name in METHODS:
                names.append(name)
            elif name:
                raise InputError(
                    f"unknown method {part.strip()!r}; use {', '.join(METHODS)} or all"
                )
    if not names:
        raise InputError(f"no method given; use {', '.join(METHODS)} or all")
    return tuple(dict.fromkeys(names))
