"""The files of ``rsigradcam explain-dataset``: shards written atomically, read back lazily.

An output folder holds::

    run.json             every parameter that affects the results, and the package version
    images.jsonl         the images in order: {"id", "path", "target"} (target null = top-1)
    shards/shard-00003.jsonl   one line per image of shard 3 (see manifest.jsonl)
    shards/shard-00003.npz     the heatmaps and numbers of the images of shard 3 explained
    manifest.jsonl       one line per image, in order, once every shard is finished
    errors.jsonl         one line per image that could not be explained, with the reason

Shard ``k`` holds images ``k * shard_size`` to ``(k + 1) * shard_size - 1``. Its ``.jsonl``
is written first and its ``.npz`` last, each to a temporary name and then renamed, so a
shard is finished exactly when its ``.npz`` exists: a process killed at any moment never
leaves a shard that looks finished.

A shard's ``.npz`` (compressed) holds, for the ``n`` images it explained and the ``E``
explanations (method, layer) of the run: ``ids`` (n,), ``targets`` (n,) int64,
``probabilities`` (n,) float32 (softmax probability of the target at the input),
``methods`` and ``layers`` (E,), ``scores``, ``baseline_scores`` and ``completeness``
(n, E) float32 (NaN where a method has no baseline or no completeness property), and
``heatmaps_{e}`` (n, H, W), uint8 (round(255 h)) or float16.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rsigradcam.viz import _write_atomically

__all__ = [
    "ERRORS",
    "IMAGES",
    "MANIFEST",
    "RUN",
    "SHARD_DIR",
    "HeatmapRecord",
    "Heatmaps",
    "ShardBuffer",
    "load_heatmaps",
    "merge_shards",
    "rank_shards",
    "shard_done",
    "shard_names",
    "write_lines",
]

RUN = "run.json"
IMAGES = "images.jsonl"
MANIFEST = "manifest.jsonl"
ERRORS = "errors.jsonl"
SHARD_DIR = "shards"


def shard_names(n_shards: int) -> list[str]:
    """File stems of the shards: ``shard-00000`` ... (wider when there are more than 10^5).

    Example:
        >>> shard_names(3)
        ['shard-00000', 'shard-00001', 'shard-00002']
    """
    width = max(5, len(str(max(n_shards - 1, 0))))
    return [f"shard-{k:0{width}d}" for k in range(n_shards)]


def rank_shards(n_shards: int, rank: int, world_size: int) -> list[int]:
    """The shards a rank explains: ``k`` with ``k % world_size == rank``.

    Example:
        >>> rank_shards(5, 1, 2)
        [1, 3]
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
    return list(range(rank, n_shards, world_size))


def shard_done(out: Path, name: str) -> bool:
    """Whether a shard is finished: its ``.npz``, written last, exists."""
    return (out / SHARD_DIR / f"{name}.npz").is_file()


def write_lines(path: Path, lines: Iterable[dict[str, Any]]) -> Path:
    """Write JSON lines (strict: no NaN) atomically."""

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as file:
            for line in lines:
                file.write(json.dumps(line, allow_nan=False) + "\n")

    return _write_atomically(path, write)


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Read a JSON lines file."""
    with path.open(encoding="utf-8") as file:
        for line in file:
            if line.strip():
                yield json.loads(line)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


class ShardBuffer:
    """Collect the results of one shard's images, then write the shard.

    Args:
        out: The output folder.
        name: The shard's file stem, e.g. ``"shard-00003"``.
        explanations: The (method, layer) pairs of the run, in order.
        class_names: Names of the classes, for the manifest lines, or ``None``.
    """

    def __init__(
        self,
        out: Path,
        name: str,
        explanations: Sequence[tuple[str, str]],
        class_names: Sequence[str] | None,
    ) -> None:
        self.out, self.name = out, name
        self.explanations = list(explanations)
        self.class_names = class_names
        self._lines: dict[int, dict[str, Any]] = {}
        self._ids: list[str] = []
        self._numbers: dict[str, list[np.ndarray]] = {
            k: [] for k in ("targets", "probabilities", "scores", "baseline_scores", "completeness")
        }
        self._heatmaps: list[list[np.ndarray]] = [[] for _ in self.explanations]

    def __len__(self) -> int:
        """Images recorded so far, explained or failed."""
        return len(self._lines)

    def add_error(self, index: int, image_id: str, path: str, reason: str) -> None:
        """Record an image that could not be explained."""
        self._lines[index] = {"id": image_id, "path": path, "error": reason}

    def add(
        self,
        indices: Sequence[int],
        ids: Sequence[str],
        targets: np.ndarray,
        probabilities: np.ndarray,
        scores: np.ndarray,
        baseline_scores: np.ndarray,
        completeness: np.ndarray,
        heatmaps: Sequence[np.ndarray],
    ) -> None:
        """Record explained images: per-image arrays (B,), (B, E), and E arrays (B, H, W)."""
        first = len(self._ids)
        self._ids.extend(ids)
        for key, values in (
            ("targets", targets.astype(np.int64)),
            ("probabilities", probabilities.astype(np.float32)),
            ("scores", scores.astype(np.float32)),
            ("baseline_scores", baseline_scores.astype(np.float32)),
            ("completeness", completeness.astype(np.float32)),
        ):
            self._numbers[key].append(values)
        for store, maps in zip(self._heatmaps, heatmaps, strict=True):
            store.append(maps)
        for b, (index, image_id) in enumerate(zip(indices, ids, strict=True)):
            target = int(targets[b])
            self._lines[index] = {
                "id": image_id,
                "shard": f"{SHARD_DIR}/{self.name}.npz",
                "row": first + b,
                "target": target,
                "class": self.class_names[target] if self.class_names else None,
                "probability": _finite(probabilities[b]),
                "explanations": [
                    {
                        "method": method,
                        "layer": layer,
                        "score": _finite(scores[b, e]),
                        "baseline_score": _finite(baseline_scores[b, e]),
                        "completeness_error": _finite(completeness[b, e]),
                    }
                    for e, (method, layer) in enumerate(self.explanations)
                ],
            }

    def write(self, heatmap_shape: tuple[int, int], heatmap_dtype: np.dtype[Any]) -> None:
        """Write the shard: its lines (in image order) first, then its ``.npz``."""
        folder = self.out / SHARD_DIR
        write_lines(folder / f"{self.name}.jsonl", (self._lines[i] for i in sorted(self._lines)))
        n_explanations = len(self.explanations)
        arrays: dict[str, np.ndarray] = {
            "ids": np.array(self._ids, dtype=np.str_),
            "methods": np.array([m for m, _ in self.explanations], dtype=np.str_),
            "layers": np.array([layer for _, layer in self.explanations], dtype=np.str_),
        }
        empty: dict[str, np.ndarray] = {
            "targets": np.zeros((0,), np.int64),
            "probabilities": np.zeros((0,), np.float32),
        }
        for key, parts in self._numbers.items():
            arrays[key] = (
                np.concatenate(parts)
                if parts
                else empty.get(key, np.zeros((0, n_explanations), np.float32))
            )
        for e, parts in enumerate(self._heatmaps):
            arrays[f"heatmaps_{e}"] = (
                np.concatenate(parts) if parts else np.zeros((0, *heatmap_shape), heatmap_dtype)
            )

        def save(tmp: Path) -> None:
            with tmp.open("wb") as file:
                np.savez_compressed(file, allow_pickle=False, **arrays)

        _write_atomically(folder / f"{self.name}.npz", save)


def merge_shards(out: Path, names: Sequence[str], ids: Sequence[str]) -> tuple[int, int]:
    """Join the shards' lines into ``manifest.jsonl`` and ``errors.jsonl`` (atomically).

    Args:
        out: The output folder.
        names: Every shard's file stem, in order.
        ids: Every image id, in order: each must appear exactly once across the shards.

    Returns:
        The numbers of images explained and failed.

    Raises:
        RuntimeError: A shard is not finished, or the shards do not hold each image once.
    """
    missing = [name for name in names if not shard_done(out, name)]
    if missing:
        raise RuntimeError(
            f"{len(missing)} shards are not finished ({', '.join(missing[:3])}...); run the "
            "same command again to finish them"
        )
    counts = [0, 0]
    expected = iter(ids)

    def lines() -> Iterator[dict[str, Any]]:
        for name in names:
            for line in read_lines(out / SHARD_DIR / f"{name}.jsonl"):
                want = next(expected, None)
                if line.get("id") != want:
                    raise RuntimeError(
                        f"shard {name} holds image {line.get('id')!r} where {want!r} was "
                        f"expected; remove {out / SHARD_DIR / name}.npz and run again"
                    )
                counts[1 if "error" in line else 0] += 1
                yield line

    def write_both(manifest_tmp: Path, errors_tmp: Path) -> None:
        with manifest_tmp.open("w", encoding="utf-8") as manifest, errors_tmp.open(
            "w", encoding="utf-8"
        ) as errors:
            for line in lines():
                text = json.dumps(line, allow_nan=False) + "\n"
                manifest.write(text)
                if "error" in line:
                    errors.write(text)
        if next(expected, None) is not None:
            raise RuntimeError(f"the shards hold {sum(counts)} images, not {len(ids)}")

    # errors.jsonl is renamed into place first, manifest.jsonl (the mark of a merge) last.
    _write_atomically(
        out / MANIFEST,
        lambda manifest_tmp: _write_atomically(
            out / ERRORS, lambda errors_tmp: write_both(manifest_tmp, errors_tmp)
        ),
    )
    return counts[0], counts[1]


# --------------------------------------------------------------------------------------
# Reading the results back
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeatmapRecord:
    """One image's explanation, read back from an ``explain-dataset`` folder.

    Attributes:
        id: The image id: its path relative to the source folder (POSIX), or the path as
            written in the list file.
        heatmap: (H, W) float32 in [0, 1], H = W = 224 (the model's input size).
        target: The explained class.
        probability: Softmax probability of ``target`` at the input.
        score: The explained score y(x) (probability or logit, the run's ``output``).
        baseline_score: y(x') at the black baseline; NaN for Grad-CAM.
        completeness: The completeness error; NaN where it does not apply (Grad-CAM).
        layer: The explained layer.
        method: The method, e.g. ``"rsi"``.
    """

    id: str
    heatmap: np.ndarray
    target: int
    probability: float
    score: float
    baseline_score: float
    completeness: float
    layer: str
    method: str


class Heatmaps:
    """The heatmaps of a finished ``explain-dataset`` run, for one method and one layer.

    Shards are loaded lazily, one at a time; iteration follows the image order.
    Use :func:`load_heatmaps` to create one.

    Attributes:
        out: The output folder.
        method: The selected method.
        layer: The selected layer.
        explanations: Every (method, layer) pair the run computed.
        ids: The explained images, in order.
        errors: One ``{"id", "path", "error"}`` dict per image that could not be read.
        run: The contents of ``run.json``.
    """

    def __init__(self, out: str | Path, method: str | None = None, layer: str | None = None):
        self.out = Path(out)
        if not (self.out / RUN).is_file():
            raise ValueError(f"'{self.out}' holds no explain-dataset run (no {RUN})")
        if not (self.out / MANIFEST).is_file():
            raise ValueError(
                f"the run in '{self.out}' is not finished (no {MANIFEST}); run the same "
                "explain-dataset command again to finish it"
            )
        self.run: dict[str, Any] = json.loads((self.out / RUN).read_text(encoding="utf-8"))
        params = self.run["parameters"]
        self.explanations = [(m, la) for m, la in params["explanations"]]
        self.method = _choose("method", method, [m for m, _ in self.explanations])
        self.layer = _choose(
            "layer", layer, [la for m, la in self.explanations if m == self.method]
        )
        self._column = self.explanations.index((self.method, self.layer))
        self._rows: dict[str, tuple[str, int]] = {}
        self.errors: list[dict[str, Any]] = []
        for line in read_lines(self.out / MANIFEST):
            if "error" in line:
                self.errors.append(line)
            else:
                self._rows[line["id"]] = (line["shard"], int(line["row"]))
        self.ids = list(self._rows)
        self._cached: tuple[str, dict[str, np.ndarray]] | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._rows

    def __iter__(self) -> Iterator[HeatmapRecord]:
        for image_id in self.ids:
            yield self[image_id]

    def __getitem__(self, image_id: str) -> HeatmapRecord:
        """The record of an image, by id."""
        if image_id not in self._rows:
            failed = [e for e in self.errors if e["id"] == image_id]
            reason = f": it could not be explained ({failed[0]['error']})" if failed else ""
            raise KeyError(f"no heatmap for image {image_id!r} in '{self.out}'{reason}")
        shard, row = self._rows[image_id]
        arrays = self._shard(shard)
        maps = arrays["heatmap"]
        heatmap = maps[row].astype(np.float32)
        if maps.dtype == np.uint8:
            heatmap /= 255.0
        e = self._column
        return HeatmapRecord(
            id=image_id,
            heatmap=heatmap,
            target=int(arrays["targets"][row]),
            probability=float(arrays["probabilities"][row]),
            score=float(arrays["scores"][row, e]),
            baseline_score=float(arrays["baseline_scores"][row, e]),
            completeness=float(arrays["completeness"][row, e]),
            layer=self.layer,
            method=self.method,
        )

    def _shard(self, shard: str) -> dict[str, np.ndarray]:
        if self._cached is None or self._cached[0] != shard:
            with np.load(self.out / shard, allow_pickle=False) as data:
                keys = ("targets", "probabilities", "scores", "baseline_scores", "completeness")
                arrays = {key: data[key] for key in keys}
                arrays["heatmap"] = data[f"heatmaps_{self._column}"]
            self._cached = (shard, arrays)
        return self._cached[1]


def _choose(what: str, value: str | None, available: Sequence[str]) -> str:
    choices = list(dict.fromkeys(available))
    if value is None:
        if len(choices) > 1:
            raise ValueError(
                f"the run has several {what}s ({', '.join(choices)}); pass {what}= one of them"
            )
        return choices[0]
    if value not in choices:
        raise ValueError(f"{what} {value!r} is not in the run; it has {', '.join(choices)}")
    return value


def load_heatmaps(
    out: str | Path, method: str | None = None, layer: str | None = None
) -> Heatmaps:
    """Read back the heatmaps of a finished ``rsigradcam explain-dataset`` run.

    Args:
        out: The run's output folder.
        method: The method to read (``"rsi"``, ``"gradcam"``...); needed only when the run
            computed several.
        layer: The layer to read; needed only when the run explained several.

    Returns:
        A :class:`Heatmaps`: ``len()``, iteration over :class:`HeatmapRecord` in image
        order, ``heatmaps[id]`` and ``id in heatmaps``. Shards are loaded lazily.

    Raises:
        ValueError: The folder holds no finished run, or ``method``/``layer`` is missing
            or unknown.

    Example:
        >>> from rsigradcam import load_heatmaps
        >>> maps = load_heatmaps("out")             # doctest: +SKIP
        >>> record = maps["cats/chelsea.png"]       # doctest: +SKIP
        >>> record.heatmap.shape, record.target     # doctest: +SKIP
        ((224, 224), 285)
    """
    return Heatmaps(out, method, layer)
