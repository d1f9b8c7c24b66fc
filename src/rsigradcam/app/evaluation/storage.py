"""An evaluation's numbers on disk: ``results.json`` and ``results-units.json.gz``.

:meth:`EvaluationResults.to_json <rsigradcam.app.evaluation.results.EvaluationResults.to_json>`
gives every number of a run as JSON values. Most of their bytes are the per-unit arrays
(:data:`PER_UNIT`: one value per image, grid cell or curve point), so :func:`save_results`
writes them apart:

- ``results.json``: every other key (``config``, ``summary``, ``claims``, ``p_bins``,
  ``notes``, ``timings``...), indented, so that a change of a verdict shows in a diff, plus
  ``"per_unit": {"file": "results-units.json.gz", "sha256": ..., "keys": [...]}``, where
  ``keys`` are all the top-level keys in order (those absent here are in the other file).
- ``results-units.json.gz``: the per-unit keys as one JSON object, gzip-compressed with no
  name or time in its header (the same numbers give the same bytes). ``sha256`` is that
  file's digest, so a pair written by two different runs is refused, not mixed.

Read it with ``zcat results-units.json.gz | jq .metrics``. Earlier versions wrote every key
into ``results.json`` (the plain form, still written with ``compact=False``);
:func:`read_results` and :func:`load_results` read both forms.

Example:
    >>> save_results(finite(encode(evaluation.results)), "rsigradcam-evaluation")  # doctest: +SKIP
    >>> load_results("rsigradcam-evaluation").claims[0].layers["head"].verdict  # doctest: +SKIP
    'does not hold'
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib
from pathlib import Path
from typing import Any

from rsigradcam.app.errors import InputError
from rsigradcam.app.evaluation.results import EvaluationResults
from rsigradcam.files import save_json, write_atomically
from rsigradcam.serialization import FormatError, decode

__all__ = ["PER_UNIT", "RESULTS", "UNITS", "load_results", "read_results", "save_results"]

#: The file of the run's summary, verdicts and options (and, in the plain form, everything).
RESULTS = "results.json"
#: The file of the per-unit arrays, beside :data:`RESULTS`.
UNITS = "results-units.json.gz"
#: The keys of :meth:`EvaluationResults.to_json` that hold one value per unit.
PER_UNIT = ("images", "explanations", "units", "metrics", "details")
#: The key of ``results.json`` that names the per-unit file (absent in the plain form).
_MARK = "per_unit"


def _gzip_json(data: dict[str, Any]) -> bytes:
    """``data`` as compact, strict JSON, gzip-compressed with a fixed header."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False).encode("utf-8")
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as file:
        file.write(text)
    return buffer.getvalue()


def save_results(data: dict[str, Any], out: str | Path, *, compact: bool = True) -> Path:
    """Write an evaluation's JSON values into the folder ``out``, each file atomically.

    The per-unit file is written first and ``results.json``, which names its digest, last:
    a write that stops half-way leaves the previous ``results.json`` and a per-unit file
    that it refuses, never a pair that reads as one run.

    Args:
        data: ``finite(encode(results))`` of an :class:`EvaluationResults` (or
            :func:`read_results`' values).
        out: The folder (created if needed).
        compact: ``True``: ``results.json`` and ``results-units.json.gz``. ``False``: the
            plain form, every key in ``results.json`` (an old per-unit file is removed).

    Returns:
        The path of ``results.json``.
    """
    if _MARK in data:
        raise ValueError(f"the results already have a {_MARK!r} key")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    if not compact:
        written = save_json(data, folder / RESULTS)
        (folder / UNITS).unlink(missing_ok=True)
        return written
    packed = _gzip_json({key: value for key, value in data.items() if key in PER_UNIT})
    write_atomically(folder / UNITS, lambda tmp: tmp.write_bytes(packed))
    rest = {key: value for key, value in data.items() if key not in PER_UNIT}
    mark = {"file": UNITS, "sha256": hashlib.sha256(packed).hexdigest(), "keys": list(data)}
    return save_json({**rest, _MARK: mark}, folder / RESULTS)


def _json_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"'{path}' does not exist: give the folder or results.json that "
                         "`rsigradcam evaluate` wrote") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"'{path}' is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"'{path}' is not the results of `rsigradcam evaluate` (not an "
                         "object)")
    return data


def _per_unit(path: Path, mark: Any, rest: dict[str, Any]) -> dict[str, Any]:
    """``rest`` (read from ``results.json``, ``path``) with the per-unit file's keys.

    The per-unit file is the one that ``mark`` names; the keys come in its order.
    """
    if not (isinstance(mark, dict) and isinstance(mark.get("file"), str)
            and isinstance(mark.get("sha256"), str) and isinstance(mark.get("keys"), list)
            and all(isinstance(key, str) for key in mark["keys"])):
        raise InputError(f"'{path}': its {_MARK!r} entry is not of `rsigradcam evaluate` "
                         "(it needs file, sha256 and keys)")
    if Path(mark["file"]).name != mark["file"]:
        raise InputError(f"'{path}': its per-unit file {mark['file']!r} is not a file name")
    units = path.parent / mark["file"]
    try:
        packed = units.read_bytes()
    except OSError as exc:
        raise InputError(f"'{units}' cannot be read ({exc.strerror or exc}); {path.name} "
                         "keeps its per-unit numbers there") from None
    if hashlib.sha256(packed).hexdigest() != mark["sha256"]:
        raise InputError(f"'{units}' is not the file that '{path}' was written with (its "
                         "SHA-256 differs); rerun the evaluation to write both again")
    try:
        data = json.loads(gzip.decompress(packed).decode("utf-8"))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"'{units}' is not gzip-compressed JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"'{units}' is not the per-unit numbers of an evaluation (not an "
                         "object)")
    missing = [key for key in mark["keys"] if key not in rest and key not in data]
    if missing:
        raise InputError(f"'{units}' lacks {', '.join(map(repr, missing))}")
    order = [*mark["keys"], *(key for key in rest if key not in mark["keys"])]
    return {key: rest[key] if key in rest else data[key] for key in order}


def read_results(path: str | Path) -> dict[str, Any]:
    """An evaluation's JSON values, from either form.

    Args:
        path: The output folder of ``rsigradcam evaluate``, or its ``results.json``.

    Returns:
        The values that ``encode`` gave the results, keys in the same order: in
        the compact form the per-unit keys are read from ``results-units.json.gz`` and put
        back in their places, in the plain form ``results.json`` holds them all.

    Raises:
        InputError: A file that is missing or not of an evaluation, or a per-unit file that
            does not match ``results.json``; the message names the file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS
    data = _json_file(path)
    if _MARK not in data:
        return data
    mark = data.pop(_MARK)
    return _per_unit(path, mark, data)


def load_results(path: str | Path) -> EvaluationResults:
    """An evaluation's typed results, from either form (see :func:`read_results`).

    Example:
        >>> results = load_results("docs/evidence/imagenet-500")  # doctest: +SKIP
        >>> results.accuracy.correct                               # doctest: +SKIP
        362

    Raises:
        InputError: As :func:`read_results`, and for values that are not an evaluation's.
    """
    data = read_results(path)
    name = Path(path) / RESULTS if Path(path).is_dir() else Path(path)
    try:
        return decode(EvaluationResults, data)
    except FormatError as error:
        raise InputError(
            f"'{name}' is not the results of `rsigradcam evaluate` ({error})"
        ) from None
