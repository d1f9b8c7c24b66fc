"""The listing of ``rsigradcam layers``: each explainable layer, its module type and shape.

Example:
    >>> from rsigradcam.app.loading.layers import probe_layers
    >>> from rsigradcam.app.loading.models import load_model
    >>> loaded = load_model()                                            # doctest: +SKIP
    >>> layer_lines(loaded.model, probe_layers(loaded.model), "blocks.1*")  # doctest: +SKIP
    ['blocks.10  InvertedResidual  112x14x14', ...]
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from torch import nn

from rsigradcam.app.loading.layers import LayerInfo

__all__ = ["layer_lines", "matches"]

_GLOB = frozenset("*?[")


def matches(name: str, pattern: str | None) -> bool:
    """Whether a layer name passes ``--filter``: a glob (``blocks.*``) or a substring.

    A pattern with ``*``, ``?`` or ``[`` is a glob that must match the whole name;
    any other pattern must occur in the name. Both are case-sensitive, as layer names are.

    Example:
        >>> matches("blocks.10", "blocks.1*"), matches("blocks.10", "ocks"), matches("head", "b*")
        (True, True, False)
    """
    if not pattern:
        return True
    if _GLOB & set(pattern):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern in name


def layer_lines(
    model: nn.Module, layers: Sequence[LayerInfo], pattern: str | None = None
) -> list[str]:
    """One aligned line per explainable layer that matches ``pattern``: name, type, shape.

    The last explainable layer (the default, ``--layer auto``) is marked ``(default)``
    whether or not others are filtered out.
    """
    found = [info for info in layers if info.explainable]
    modules = dict(model.named_modules())
    kinds = {info.name: type(modules[info.name]).__name__ if info.name in modules else "-"
             for info in found}
    shown = [info for info in found if matches(info.name, pattern)]
    if not shown:
        return []
    name_width = max(len(info.name) for info in shown)
    kind_width = max(len(kinds[info.name]) for info in shown)
    return [
        f"{info.name:<{name_width}}  {kinds[info.name]:<{kind_width}}  {info.describe_shape()}"
        + ("  (default)" if info is found[-1] else "")
        for info in shown
    ]
