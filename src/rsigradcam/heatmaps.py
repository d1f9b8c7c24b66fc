"""Read back the heatmaps of an ``rsigradcam explain-dataset`` run (the folder's format).

The folder's layout and the shards' arrays are described in :mod:`rsigradcam.app.runs.shards`,
which writes them; this module only reads, with NumPy, so that results can be loaded
without the application.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ERRORS",
    "IMAGES",
    "MANIFEST",
    "RUN",
    "SHARD_DIR",
    "HeatmapRecord",
    "Heatmaps",
    "load_heatmaps",
    "read_lines",
]

RUN = "run.json"
IMAGES = "images.jsonl"
MANIFEST = "manifest.jsonl"
ERRORS = "errors.jsonl"
SHARD_DIR = "shards"


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Read a JSON lines file."""
    with path.open(encoding="utf-8") as file:
        for line in file:
            if line.strip():
                yield json.loads(line)


# --------------------------------------------------------------------------------------
# Reading the results back
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeatmapRecord:
    """One image's explanation, read back from an ``explain-dataset`` folder.

    Attributes:
        id: The image id: its path relative to the source folder (POSIX), or the path as
            written in the list file.
        heatmap: (H, W) float32 in [0, 1], at the run's input size (``heatmap_size``).
        target: The explained class.
        probability: Softmax probability of ``target`` at the input.
        score: The explained score y(x) (probability or logit, the run's ``output``).
        baseline_score: y(x') at the black baseline; NaN for Grad-CAM.
        completeness: The completeness error; NaN where it does not apply (Grad-CAM, or
            rsi with ``grad_relu`` / ``guided``).
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

    def __getitem__(self, key: str | int) -> HeatmapRecord:
        """The record of an image, by id (``heatmaps["cats/1.png"]``) or by position.

        A position counts in image order (:attr:`ids`), from the end when negative, as a
        list's does: ``heatmaps[0]`` is the first explained image.

        Raises:
            KeyError: No heatmap for that id (the message says why, when the image failed).
            IndexError: The position is out of range.
            TypeError: ``key`` is neither an id (str) nor a position (int).
        """
        if isinstance(key, int) and not isinstance(key, bool):
            count = len(self.ids)
            if not -count <= key < count:
                span = f"0 to {count - 1}" if count else "none"
                raise IndexError(
                    f"heatmap position {key} is out of range: the run has "
                    f"{count} heatmap{'' if count == 1 else 's'} (positions {span})"
                )
            key = self.ids[key]
        if not isinstance(key, str):
            raise TypeError(
                f"index heatmaps by image id (str, see .ids) or position (int), not by "
                f"{type(key).__name__}"
            )
        image_id = key
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
        order, ``heatmaps[id]`` or ``heatmaps[position]`` (``heatmaps[0]``: the first
        image) and ``id in heatmaps``. Shards are loaded lazily.

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
