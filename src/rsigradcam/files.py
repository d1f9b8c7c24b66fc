"""Files written whole or not at all, and messages on one line.

Every ``save_*`` function and :func:`write_atomically` write to a hidden temporary file in
the target's folder and rename it onto the target only once it is complete, so an
interrupted or failed write never leaves a partial file under the final name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "finite",
    "md_cell",
    "one_line",
    "save_json",
    "save_npy",
    "save_png",
    "save_text",
    "write_atomically",
]


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None``, for strict JSON.

    Dicts, lists and tuples are converted item by item (tuples become lists).

    Example:
        >>> finite({"error": float("nan"), "p": [0.5, float("inf")]})
        {'error': None, 'p': [0.5, None]}
    """
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def one_line(text: str) -> str:
    """Collapse every run of whitespace, newlines included, into one space.

    Example:
        >>> one_line('bad  input ')
        'bad input'
    """
    return " ".join(text.split())


def md_cell(value: object) -> str:
    r"""``value`` as the text of one GitHub Markdown table cell.

    Newlines and runs of whitespace become one space (a newline would end the row), and
    every ``|`` becomes ``\|``: GitHub splits a row on each unescaped ``|``, even inside a
    code span, so an unescaped one would add a cell to the row.

    Example:
        >>> md_cell("float32 vs float64: max |Δ|")
        'float32 vs float64: max \\|Δ\\|'
        >>> md_cell("two\nlines")
        'two lines'
    """
    return one_line(str(value)).replace("|", "\\|")


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Write an (H, W, 3) uint8 array as a PNG, atomically.

    Example:
        >>> save_png(np.zeros((4, 4, 3), np.uint8), tmp_path / "black.png")  # doctest: +SKIP
    """
    from PIL import Image

    return write_atomically(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def save_npy(array: np.ndarray, path: str | Path) -> Path:
    """Write an array in NumPy's ``.npy`` format, atomically.

    Example:
        >>> save_npy(np.zeros((224, 224), np.float32), tmp_path / "map.npy")  # doctest: +SKIP
    """

    def write(tmp: Path) -> None:
        with tmp.open("wb") as file:
            np.save(file, array)

    return write_atomically(path, write)


def save_json(data: Any, path: str | Path) -> Path:
    """Write JSON (indented, strict: NaN or infinity raise ``ValueError``), atomically.

    Example:
        >>> save_json({"class": "tabby", "p": 0.5}, tmp_path / "summary.json")  # doctest: +SKIP
    """
    return save_text(json.dumps(data, indent=2, allow_nan=False) + "\n", path)


def save_text(text: str, path: str | Path) -> Path:
    """Write UTF-8 text atomically: a temporary file beside ``path``, then a rename.

    Example:
        >>> save_text("# Summary", tmp_path / "summary.md")  # doctest: +SKIP
    """
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
