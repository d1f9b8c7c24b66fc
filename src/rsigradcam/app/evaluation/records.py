"""The shapes of an evaluation's nested values, and NaN read back from ``null``.

Example:
    >>> nan_lists([1.0, None, [None]])
    [1.0, nan, [nan]]
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["MetricValues", "Rows", "nan_lists"]

#: ``metric -> method -> layer -> one value per unit`` (image or grid cell).
MetricValues = dict[str, dict[str, dict[str, list[float]]]]
#: ``method -> layer -> one curve (or correlation row) per image``.
Rows = dict[str, dict[str, list[list[float]]]]


def nan_lists(value: Any) -> Any:
    """``null`` inside (nested) lists back to NaN (the inverse of ``files.finite`` there)."""
    if isinstance(value, list):
        return [math.nan if v is None else nan_lists(v) for v in value]
    return value
