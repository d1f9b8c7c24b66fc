"""Join the shards' lines (see :mod:`.work`) into the typed results of the whole run.

Example:
    >>> merged = merge_lines(context, lines)  # doctest: +SKIP
    >>> merged.metrics["gridpg"]["rsi"]["head"][:4]  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from rsigradcam import metrics
from rsigradcam.app.evaluation.records import nan_lists
from rsigradcam.app.evaluation.results import (
    Curves,
    CurveSet,
    Details,
    DtypeRecord,
    ExplanationRecord,
    GridDetails,
    MetricValues,
    NoiseRecord,
    SanityDetails,
    SpreadRecord,
    StabilityDetails,
    Units,
)
from rsigradcam.app.evaluation.work import Context
from rsigradcam.metrics.stability import saturation_split
from rsigradcam.serialization import decode

__all__ = ["Merged", "gallery_heatmaps", "merge_lines"]

_R = TypeVar("_R")


@dataclass
class Merged:
    """The whole run's values, joined from its shards."""

    metrics: MetricValues
    units: dict[str, Units]
    explanations: dict[str, dict[str, ExplanationRecord]]
    details: Details
    notes: list[str]
    #: Seconds per stage, over every shard (those of earlier, resumed runs too).
    timings: dict[str, float]


def _nan(value: Any) -> Any:
    """``None`` (JSON's null for NaN) back to NaN, inside lists too."""
    return math.nan if value is None else nan_lists(value)


def _tree(store: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        store = store.setdefault(key, {})
    return store


def _records(
    found: dict[str, dict[str, list[dict[str, Any]]]], kind: type[_R]
) -> dict[str, dict[str, _R]]:
    """Per-image entries ``{"fixed", "per_image"}`` joined into one record per arm and layer."""
    records: dict[str, dict[str, _R]] = {}
    for arm, by_layer in found.items():
        for layer, entries in by_layer.items():
            values: dict[str, Any] = dict(entries[0]["fixed"])
            for key in entries[0]["per_image"]:
                values[key] = [_nan(e["per_image"][key]) for e in entries]
            records.setdefault(arm, {})[layer] = decode(kind, values)
    return records


def _stability(context: Context, lines: Sequence[dict[str, Any]]) -> StabilityDetails:
    o = context.options
    found: dict[str, dict[str, dict[str, list[Any]]]] = {}
    spread_ids: list[str] = []
    for line in lines:
        for kind in ("dtype", "noise", "spread"):
            for arm, by_layer in line.get("stability", {}).get(kind, {}).items():
                for layer, entry in by_layer.items():
                    _tree(found, kind, arm).setdefault(layer, []).append(entry)
        if line.get("stability", {}).get("spread"):
            spread_ids.append(line["id"])
    steps = sorted({*o.stability_steps, o.steps}) if o.stability_steps else []
    spreads: dict[str, dict[str, SpreadRecord]] = {}
    for arm, by_layer in found.get("spread", {}).items():
        for layer, entries in by_layer.items():
            columns = {k: np.array(_nan([e[k] for e in entries])).T.tolist()
                       for k in ("max_abs", "correlation")}
            spreads.setdefault(arm, {})[layer] = SpreadRecord(
                steps, o.reference_steps, columns["max_abs"], columns["correlation"]
            )
    return StabilityDetails(
        steps, o.reference_steps, spread_ids,
        _records(found.get("dtype", {}), DtypeRecord),
        _records(found.get("noise", {}), NoiseRecord),
        spreads,
    )


def _curves(lines: Sequence[dict[str, Any]]) -> Curves:
    sets = {}
    for kind in ("deletion", "insertion"):
        rows: dict[str, dict[str, list[list[float]]]] = {}
        for line in lines:
            for arm, by_layer in line["curves"][kind]["rows"].items():
                for layer, row in by_layer.items():
                    _tree(rows, arm).setdefault(layer, []).append(_nan(row))
        sets[kind] = CurveSet(lines[0]["curves"][kind]["fractions"], rows)
    return Curves(lines[0]["curves"]["step"], sets["deletion"], sets["insertion"])


def _grid_details(context: Context, cells: list[list[str]]) -> GridDetails | None:
    plan = context.grids
    if plan is None:
        return None
    sources = torch.tensor(plan.picked, dtype=torch.long).view(-1, 4)
    h, w = context.tensor.shape[2:]
    return GridDetails(
        threshold=plan.threshold,
        cell_images=cells,
        cell_size=[int(h), int(w)],
        boxes=[list(box) for box in metrics.cell_boxes(int(h), int(w))],
        classes=plan.classes[sources].tolist(),
        sources=sources.tolist(),
        confidences=plan.confidences[sources].tolist(),
    )


def merge_lines(context: Context, lines: Iterable[dict[str, Any]]) -> Merged:
    """Join every shard's lines, in shard order, into the run's values."""
    values: MetricValues = {}
    unit_ids: dict[str, list[str]] = {}
    explanations: dict[str, dict[str, dict[str, list[Any]]]] = {}
    evaluations: dict[tuple[str, str], int] = {}
    completeness_notes: dict[tuple[str, str], str | None] = {}
    image_lines: list[dict[str, Any]] = []
    cells: list[str] = []
    grid_cells: list[list[str]] = []
    details = Details()
    units: dict[str, Units] = {}
    notes = list(context.notes)
    timings: dict[str, float] = {}
    for line in lines:
        notes += [n for n in line.get("notes", ()) if n not in notes]
        for stage, seconds in line.get("timings", {}).items():
            timings[stage] = timings.get(stage, 0.0) + seconds
        if "index" in line:
            image_lines.append(line)
            for arm, by_layer in line["explanations"].items():
                for layer, exp in by_layer.items():
                    record = _tree(explanations, arm, layer)
                    for key in ("score", "baseline_score", "completeness_error"):
                        record.setdefault(key, []).append(_nan(exp[key]))
                    evaluations[arm, layer] = exp["n_evaluations"]
                    completeness_notes[arm, layer] = exp.get("completeness_note") or None
        elif "cells" in line:
            cells += line["cells"]
            grid_cells.append([c.split(": ", 1)[1] for c in line["cells"]])
        else:
            units["sanity_spearman"] = decode(Units, line["units"])
            details.sanity = decode(SanityDetails, line["details"])
        for metric, by_arm in line["metrics"].items():
            if "index" in line:
                unit_ids.setdefault(metric, []).append(line["id"])
            for arm, by_layer in by_arm.items():
                for layer, value in by_layer.items():
                    found = _tree(values, metric, arm).setdefault(layer, [])
                    found.extend(_nan(value) if isinstance(value, list) else [_nan(value)])
    index = {name: k for k, name in enumerate(context.names)}
    saturated, probability, correct = context.saturated, context.explained, context.correct
    for metric, ids in unit_ids.items():
        chosen = [index[i] for i in ids]
        units[metric] = Units(
            "image", ids, [saturated[k] for k in chosen], [probability[k] for k in chosen],
            [correct[k] for k in chosen] if correct else [],
        )
    if cells:
        plan = context.grids
        assert plan is not None
        confidences = plan.confidences[torch.tensor(plan.picked).flatten()]
        units["gridpg"] = Units(
            "cell", cells, saturation_split(confidences).saturated.tolist(),
            confidences.tolist(),
        )
        details.gridpg = _grid_details(context, grid_cells)
    if image_lines and "curves" in image_lines[0]:
        details.curves = _curves(image_lines)
    if image_lines and "stability" in image_lines[0]:
        details.stability = _stability(context, image_lines)
    records = {
        arm: {layer: ExplanationRecord(r["score"], r["baseline_score"], r["completeness_error"],
                                       evaluations[arm, layer], completeness_notes[arm, layer])
              for layer, r in by_layer.items()}
        for arm, by_layer in explanations.items()
    }
    return Merged(values, units, records, details, notes, timings)


def gallery_heatmaps(
    arrays: Iterable[dict[str, np.ndarray]],
) -> dict[tuple[str, str], Tensor]:
    """The gallery's heatmaps from the shards' arrays: ``(arm, layer) -> (G, H, W)`` in [0, 1]."""
    parts: dict[tuple[str, str], list[Tensor]] = {}
    for found in arrays:
        if "pairs" not in found or found["ids"].size == 0:
            continue
        for e, (arm, layer) in enumerate(found["pairs"].tolist()):
            maps = torch.from_numpy(np.asarray(found[f"heatmaps_{e}"])).float() / 255
            parts.setdefault((arm, layer), []).append(maps)
    return {pair: torch.cat(maps) for pair, maps in parts.items()}
