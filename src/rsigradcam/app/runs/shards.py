"""The files of ``rsigradcam explain-dataset``, written atomically (read by rsigradcam.heatmaps).

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
from pathlib import Path
from typing import Any

import numpy as np

from rsigradcam.files import finite, write_atomically
from rsigradcam.heatmaps import ERRORS, MANIFEST, SHARD_DIR, read_lines

__all__ = [
    "ShardBuffer",
    "merge_shards",
    "rank_shards",
    "remove_stale",
    "shard_done",
    "shard_names",
    "write_lines",
]



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


def remove_stale(out: Path) -> None:
    """Remove the temporary files that a killed process left in ``out`` and its shards."""
    for stale in (*(out / SHARD_DIR).glob(".*.tmp"), *out.glob(".*.tmp")):
        stale.unlink(missing_ok=True)


def write_lines(path: Path, lines: Iterable[dict[str, Any]]) -> Path:
    """Write JSON lines (strict: no NaN) atomically."""

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as file:
            for line in lines:
                file.write(json.dumps(line, allow_nan=False) + "\n")

    return write_atomically(path, write)


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
        completeness_notes: Sequence[str] = (),
    ) -> None:
        """Record explained images: per-image arrays (B,), (B, E), and E arrays (B, H, W).

        ``completeness_notes``: E lines, why an explanation's completeness error is null
        although its method has one (a variant, a layer the score can bypass), "" where
        it is computed; each manifest entry carries its line as ``completeness_note``
        (``null`` for "").
        """
        notes = list(completeness_notes) or [""] * len(self.explanations)
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
                "probability": finite(probabilities[b]),
                "explanations": [
                    {
                        "method": method,
                        "layer": layer,
                        "score": finite(scores[b, e]),
                        "baseline_score": finite(baseline_scores[b, e]),
                        "completeness_error": finite(completeness[b, e]),
                        "completeness_note": notes[e] or None,
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

        write_atomically(folder / f"{self.name}.npz", save)


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
    write_atomically(
        out / MANIFEST,
        lambda manifest_tmp: write_atomically(
            out / ERRORS, lambda errors_tmp: write_both(manifest_tmp, errors_tmp)
        ),
    )
    return counts[0], counts[1]
