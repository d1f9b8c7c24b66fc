"""Dataclasses to JSON values and back, driven by their fields and type hints.

:func:`encode` turns a dataclass into plain JSON values: its fields in order (tensors and
arrays as nested lists, tuples as lists, paths as strings). :func:`decode` reads them back
into the dataclass, checking each value against the field's type hint, so that
``decode(cls, encode(obj))`` gives ``obj`` again. NaN and infinities are left as they are;
:func:`rsigradcam.files.finite` makes strict JSON of them, and :func:`decode` reads a
``null`` where a ``float`` belongs back as NaN.

A format that is not simply the fields in order says so in the field's metadata
(:func:`json_options`): another key, the nested value's keys inline in the parent, a field
left out when ``None``, strict JSON for one field, a default for a key that older files
lack, or a conversion of older files' values. A class whose JSON form has computed values
or a key order of its own lists its keys in the class attribute ``__json_keys__``: each
entry is a field or attribute name, or a pair ``(key, attribute name or function of the
object)``; only the listed keys are written.

Example:
    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class Score:
    ...     name: str = field(metadata=json_options(key="class"))
    ...     p: tuple[float, ...] = ()
    >>> encode(Score("tabby", (0.5, float("nan"))))
    {'class': 'tabby', 'p': [0.5, nan]}
    >>> decode(Score, {"class": "tabby", "p": [0.5, None]})
    Score(name='tabby', p=(0.5, nan))
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import numpy as np
import torch

from rsigradcam.files import finite

__all__ = ["FormatError", "JsonKeys", "decode", "encode", "json_options"]

T = TypeVar("T")

#: The type of a class's ``__json_keys__``: field or attribute names, or pairs of a key
#: and an attribute name or a function of the object.
JsonKeys = tuple[str | tuple[str, str | Callable[[Any], Any]], ...]

_MISSING: Any = dataclasses.MISSING
_NOTHING: Any = object()  # no ``missing`` value given
_KEY = "json"  # the metadata entry of json_options


class FormatError(ValueError):
    """A JSON value that does not fit the type it is read into; the message is one line."""


@dataclasses.dataclass(frozen=True)
class _Options:
    key: str | None = None
    inline: bool = False
    omit_none: bool = False
    finite: bool = False
    missing: Any = _NOTHING
    upgrade: Callable[[Any], Any] | None = None


def json_options(
    *,
    key: str | None = None,
    inline: bool = False,
    omit_none: bool = False,
    finite: bool = False,
    missing: Any = _NOTHING,
    upgrade: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """Field metadata that sets a field's JSON form: ``field(metadata=json_options(...))``.

    Args:
        key: The JSON key, if not the field's name.
        inline: Put the value's keys (a dataclass's or a dict's) in the parent object, at
            the field's place; reading, a dict field takes every key no other field claims.
        omit_none: Leave the key out when the value is ``None``.
        finite: Write NaN and infinities as ``null`` (see :func:`rsigradcam.files.finite`).
        missing: The value read when the key is absent (older files).
        upgrade: Applied to the stored value before it is read (older files' forms).
    """
    return {_KEY: _Options(key, inline, omit_none, finite, missing, upgrade)}


def _options(field: dataclasses.Field[Any]) -> _Options:
    found = field.metadata.get(_KEY)
    return found if isinstance(found, _Options) else _Options()


def _key(field: dataclasses.Field[Any]) -> str:
    return _options(field).key or field.name


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def encode(value: Any) -> Any:
    """``value`` as plain JSON values: dicts, lists, strings, numbers, booleans, ``None``.

    Dataclasses become dicts (see the module's docstring for their layout), tensors and
    arrays nested lists (``tolist``), tuples lists, paths strings, NumPy scalars Python
    numbers; dicts and lists are converted item by item.

    Example:
        >>> encode({"x": torch.tensor([1.0, 2.0]), "size": (2, 3), "path": Path("a/b")})
        {'x': [1.0, 2.0], 'size': [2, 3], 'path': 'a/b'}
    """
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _encode_dataclass(value)
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, Mapping):
        return {key: encode(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def _encode_dataclass(obj: Any) -> dict[str, Any]:
    layout = getattr(type(obj), "__json_keys__", None)
    if layout is not None:
        return _encode_layout(obj, layout)
    out: dict[str, Any] = {}
    for field in dataclasses.fields(obj):
        _put(out, field, getattr(obj, field.name))
    return out


def _put(out: dict[str, Any], field: dataclasses.Field[Any], value: Any) -> None:
    options = _options(field)
    if value is None and options.omit_none:
        return
    encoded = encode(value)
    if options.finite:
        encoded = finite(encoded)
    if options.inline:
        out.update(encoded)
    else:
        out[_key(field)] = encoded


def _encode_layout(obj: Any, layout: Any) -> dict[str, Any]:
    by_name = {field.name: field for field in dataclasses.fields(obj)}
    out: dict[str, Any] = {}
    for entry in layout:
        if isinstance(entry, str) and entry in by_name:
            _put(out, by_name[entry], getattr(obj, entry))
            continue
        key, get = (entry, entry) if isinstance(entry, str) else entry
        out[key] = encode(getattr(obj, get) if isinstance(get, str) else get(obj))
    return out


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def decode(cls: type[T], data: Any, *, source: str | Path | None = None) -> T:
    """Read the JSON values ``data`` (as :func:`encode` writes them) into a ``cls``.

    Every value is checked against its field's type hint; keys that no field names are
    ignored, and a missing key takes the field's default (or its ``missing`` value).

    Raises:
        FormatError: A value of the wrong type or a missing key, in one line naming
            ``source`` (the file, if given) and where the value is.

    Example:
        >>> decode(tuple[int, int], [224, 320])
        (224, 320)
        >>> decode(tuple[int, int], [224, "320"], source="run.json")
        Traceback (most recent call last):
        ...
        rsigradcam.serialization.FormatError: run.json: [1]: expected an integer, got '320'
    """
    try:
        return typing.cast(T, _read(cls, data, ""))
    except FormatError as error:
        if source is None:
            raise
        raise FormatError(f"{source}: {error}") from None


def _where(path: str) -> str:
    return path or "the top level"


def _fail(path: str, expected: str, value: Any) -> FormatError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return FormatError(f"{_where(path)}: expected {expected}, got {shown}")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _read(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _read(options[0], value, path)
        for option in options:
            try:
                return _read(option, value, path)
            except FormatError:
                continue
        raise _fail(path, " or ".join(_name(a) for a in args), value)
    if origin is Literal:
        if value in args:
            return value
        raise _fail(path, " or ".join(repr(a) for a in args), value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _read_dataclass(hint, value, path)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise _fail(path, "a list", value)
        if origin is list:
            return [_read(args[0], item, f"{path}[{i}]") for i, item in enumerate(value)]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_read(args[0], item, f"{path}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            raise _fail(path, f"a list of {len(args)} values", value)
        pairs = enumerate(zip(args, value, strict=True))
        return tuple(_read(a, item, f"{path}[{i}]") for i, (a, item) in pairs)
    if origin is dict:
        if not isinstance(value, dict):
            raise _fail(path, "an object", value)
        return {key: _read(args[1], item, _join(path, key)) for key, item in value.items()}
    return _read_scalar(hint, value, path)


def _read_scalar(hint: Any, value: Any, path: str) -> Any:
    if hint is float:
        if value is None:
            return math.nan
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _fail(path, "a number", value)
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _fail(path, "an integer", value)
    if hint is bool or hint is str:
        if isinstance(value, hint):
            return value
        raise _fail(path, "true or false" if hint is bool else "a string", value)
    if hint is Path:
        if isinstance(value, str):
            return Path(value)
        raise _fail(path, "a path (a string)", value)
    raise TypeError(f"cannot read a {_name(hint)} from JSON")


def _read_dataclass(cls: type, value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise _fail(path, f"an object ({cls.__name__})", value)
    hints = _hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    claimed = {_key(f) for f in fields if not _options(f).inline}
    found: dict[str, Any] = {}
    for field in fields:
        options = _options(field)
        key = _key(field)
        if options.inline:
            dataclass_type = dataclasses.is_dataclass(hints[field.name])
            rest = value if dataclass_type else {k: v for k, v in value.items() if k not in claimed}
            found[field.name] = _read(hints[field.name], rest, path)
            continue
        if key not in value:
            if options.missing is not _NOTHING:
                found[field.name] = options.missing
            elif field.default is _MISSING and field.default_factory is _MISSING:
                raise FormatError(f"{_where(path)}: missing key {key!r}")
            continue
        stored = value[key] if options.upgrade is None else options.upgrade(value[key])
        found[field.name] = _read(hints[field.name], stored, _join(path, key))
    return cls(**found)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)
