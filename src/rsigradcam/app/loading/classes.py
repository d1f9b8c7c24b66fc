"""``--target``: a class id or a class name (any case) turned into a class index."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rsigradcam.app.errors import InputError
from rsigradcam.app.loading.suggest import did_you_mean, suggest

__all__ = ["resolve_class"]


def resolve_class(spec: str | int, class_names: Sequence[str] | None, num_classes: int) -> int:
    """Turn a ``--target`` argument (a class id or a class name) into a class index.

    Names are matched ignoring case; an unknown name suggests close ones.

    Raises:
        InputError: An id out of range, an unknown or ambiguous name, or a name when the
            class names are unknown.

    Example:
        >>> resolve_class("Egyptian CAT", ["tabby", "Egyptian cat"], 2)
        1
        >>> resolve_class("0", None, 10)
        0
    """
    text = str(spec).strip()
    if re.fullmatch(r"[+-]?\d+", text):
        index = int(text)
        if not 0 <= index < num_classes:
            raise InputError(
                f"class id {index} is out of range: the model has {num_classes} classes "
                f"(ids 0 to {num_classes - 1})"
            )
        return index
    if class_names is None:
        raise InputError(
            f"class {text!r}: this model's class names are unknown; give a class id from 0 "
            f"to {num_classes - 1}"
        )
    matches = [i for i, name in enumerate(class_names) if name.casefold() == text.casefold()]
    if len(matches) > 1:
        raise InputError(
            f"class name {text!r} is ambiguous: it names classes "
            f"{', '.join(str(i) for i in matches)}; give the class id"
        )
    if not matches:
        raise InputError(f"unknown class name {text!r}{did_you_mean(suggest(text, class_names))}")
    return matches[0]
