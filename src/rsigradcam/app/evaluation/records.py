"""The JSON form shared by an evaluation's typed results: flat records and nested values.

Example:
    >>> nan_lists([1.0, None, [None]])
    [1.0, nan, [nan]]
"""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from typing import Any, TypeVar

__all__ = ["MetricValues", "Record", "Rows", "nan_lists", "nested", "plain"]

#: ``metric -> method -> layer -> one value per unit`` (image or grid cell).
MetricValues = dict[str, dict[str, dict[str, list[float]]]]
#: ``method -> layer -> one curve (or correlation row) per image``.
Rows = dict[str, dict[str, list[list[float]]]]

_R = TypeVar("_R", bound="Record")


def nan_lists(value: Any) -> Any:
    """``null`` inside (nested) lists back to NaN (the inverse of ``files.finite`` there)."""
    if isinstance(value, list):
        return [math.nan if v is None else nan_lists(v) for v in value]
    return value


class Record:
    """A flat dataclass whose JSON form is its fields, in order."""

    def to_json(self) -> dict[str, Any]:
        """Plain Python values, ready for JSON (NaN stays NaN until :func:`finite`)."""
        return asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def from_json(cls: type[_R], data: dict[str, Any]) -> _R:
        """Read :meth:`to_json`'s values back."""
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        return cls(**{name: nan_lists(data[name]) for name in names if name in data})

    @classmethod
    def of(cls: type[_R], result: Any) -> _R:
        """The record of a library result that has ``to_dict()`` with the same fields."""
        return cls.from_json(result.to_dict())


def nested(data: dict[str, dict[str, Any]], read: Any) -> dict[str, dict[str, Any]]:
    """``read`` applied to each value of a ``method -> layer -> value`` mapping."""
    return {m: {layer: read(v) for layer, v in by.items()} for m, by in data.items()}


def plain(data: dict[str, dict[str, Record]]) -> dict[str, dict[str, Any]]:
    """:meth:`Record.to_json` of each value of a ``method -> layer -> record`` mapping."""
    return nested(data, lambda record: record.to_json())
