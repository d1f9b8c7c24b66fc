"""An evaluation's work, in shards: what each shard computes, as JSON lines and arrays.

A run is split into shards (:func:`plan_shards`): shards of ``shard_size`` images (every
arm explains them; deletion, insertion, Average Drop and the stability measures score
them), shards of ``grid_shard_size`` GridPG grids, and one shard for the cascading
randomisation test. :func:`run_shard` computes one shard with the stages of
:mod:`~rsigradcam.app.evaluation.stages` and returns one JSON line per unit (an image, a
grid, the randomisation test) and the arrays of the gallery's heatmaps. A shard's lines
depend only on the options, the model, the images and the shard's number, so a resumed or
distributed run gives the numbers of a run in one go. :mod:`.merge` joins the lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from rsigradcam.app.evaluation.arms import Arm
from rsigradcam.app.evaluation.inputs import EvalImage
from rsigradcam.app.evaluation.options import EvaluationOptions
from rsigradcam.app.evaluation.stages import (
    GridPlan,
    MethodRunner,
    RunState,
    explain_all,
    faithfulness,
    localisation,
    sanity,
    share_passes,
    stability,
)
from rsigradcam.app.settings import completeness_warnings
from rsigradcam.files import finite
from rsigradcam.metrics.stability import saturation_split
from rsigradcam.serialization import encode

__all__ = ["Context", "ShardSpec", "Work", "plan_shards", "run_shard"]

Kind = Literal["images", "grids", "sanity"]
#: The id of the randomisation test's line.
SANITY_ID = "sanity"


@dataclass
class Context:
    """What every shard of a run reads: the options, model, arms, images and grids.

    Attributes:
        images: Every image of the run, in order.
        tensor: (N, 3, H, W) the normalised images, on the CPU.
        probabilities: (N, classes) softmax probabilities of the images, on the CPU.
        targets: (N,) the class explained for each image (its label, else its top-1).
        labels: Per image, its labelled class or ``None``.
        grids: The GridPG grids, or ``None``.
        label: The name of a class.
        progress: Let the metrics draw progress bars.
    """

    options: EvaluationOptions
    model: nn.Module
    device: torch.device
    layers: list[str]
    arms: list[Arm]
    images: list[EvalImage]
    tensor: Tensor
    probabilities: Tensor
    targets: Tensor
    labels: list[int | None]
    grids: GridPlan | None
    label: Callable[[int], str]
    progress: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """The images' names, in order."""
        return [image.name for image in self.images]

    @property
    def explained(self) -> list[float]:
        """Per image, the probability of the explained class."""
        return self.probabilities.gather(1, self.targets.view(-1, 1)).squeeze(1).tolist()

    @property
    def saturated(self) -> list[bool]:
        """Per image, whether its top-1 probability is saturated."""
        return saturation_split(self.probabilities.max(dim=1).values).saturated.tolist()

    @property
    def correct(self) -> list[bool]:
        """Per image, whether its top-1 class is its label (empty when none is labelled)."""
        if all(label is None for label in self.labels):
            return []
        top1 = self.probabilities.argmax(dim=1).tolist()
        return [label is None or top1[k] == label for k, label in enumerate(self.labels)]

    def runners(self, notes: list[str]) -> dict[str, MethodRunner]:
        """Fresh method runners of the arms, by arm key."""
        o = self.options
        runners = {
            arm.key: MethodRunner(
                arm.method, self.layers, o.steps, arm.output, notes,
                {"path_options": {"normalize": o.input_format.normalize}, **arm.cam_options()},
            )
            for arm in self.arms
        }
        share_passes(runners.values())
        return runners


@dataclass(frozen=True)
class ShardSpec:
    """One shard: its kind, its slice of the images (or grids) and its lines' ids."""

    kind: Kind
    start: int
    stop: int
    ids: list[str]


def plan_shards(context: Context) -> list[ShardSpec]:
    """The shards of a run: image shards, then grid shards, then the randomisation test."""
    o = context.options
    names = context.names
    specs = [
        ShardSpec("images", a, min(a + o.shard_size, len(names)), names[a:a + o.shard_size])
        for a in range(0, len(names), o.shard_size)
    ]
    n_grids = len(context.grids.picked) if context.grids is not None else 0
    specs += [
        ShardSpec("grids", a, min(a + o.grid_shard_size, n_grids),
                  [f"grid-{g:05d}" for g in range(a, min(a + o.grid_shard_size, n_grids))])
        for a in range(0, n_grids, o.grid_shard_size)
    ]
    if o.sanity:
        specs.append(ShardSpec("sanity", 0, min(o.sanity_images, len(names)), [SANITY_ID]))
    return specs


@dataclass
class Work:
    """A shard's results: one JSON line per unit (finite numbers), and its arrays."""

    lines: list[dict[str, Any]]
    arrays: dict[str, np.ndarray]


def _state(context: Context, a: int, b: int, shard: int, notes: list[str]) -> RunState:
    correct = context.correct
    return RunState(
        context.options, context.model, context.tensor[a:b].to(context.device),
        context.targets[a:b].to(context.device), context.names[a:b], context.saturated[a:b],
        context.runners(notes), context.progress, notes, offset=a, shard=shard,
        probability=context.explained[a:b], correct=correct[a:b] if correct else [],
    )


def _per_unit(run: RunState, names: Sequence[str]) -> list[dict[str, Any]]:
    """Each unit's value of every metric: ``{metric: {arm: {layer: value}}}`` per name."""
    found: list[dict[str, Any]] = [{} for _ in names]
    where = {name: k for k, name in enumerate(names)}
    for metric, units in run.units.items():
        for j, unit_id in enumerate(units.ids):
            k = where[unit_id]
            for arm, by_layer in run.metrics[metric].items():
                for layer, values in by_layer.items():
                    found[k].setdefault(metric, {}).setdefault(arm, {})[layer] = values[j]
    return found


def _image_lines(run: RunState) -> list[dict[str, Any]]:
    lines = [
        {"id": name, "index": run.offset + i, "metrics": values}
        for i, (name, values) in enumerate(zip(run.names, _per_unit(run, run.names), strict=True))
    ]
    for i, line in enumerate(lines):
        line["explanations"] = {
            arm: {
                layer: {
                    "score": float(exp.scores[i]),
                    "baseline_score": float(exp.baseline_scores[i]),
                    "completeness_error": float(exp.completeness_error[i]),
                    "completeness_note": exp.completeness_note,
                    "n_evaluations": exp.n_evaluations,
                }
                for layer, exp in run.explained(arm).items()
            }
            for arm in run.runners
        }
    if lines:
        explained = {arm: run.explained(arm) for arm in run.runners}
        run.notes += [n for n in completeness_warnings(explained) if n not in run.notes]
    curves = run.details.curves
    if curves is not None:
        for i, line in enumerate(lines):
            line["curves"] = {
                "step": curves.step,
                **{
                    kind: {
                        "fractions": found.fractions,
                        "rows": {a: {la: rows[i] for la, rows in by.items()}
                                 for a, by in found.curves.items()},
                    }
                    for kind, found in (("deletion", curves.deletion),
                                        ("insertion", curves.insertion))
                },
            }
    detail = run.details.stability
    if detail is not None:
        for i, line in enumerate(lines):
            entry: dict[str, Any] = {}
            records: tuple[tuple[str, dict[str, dict[str, Any]]], ...] = (
                ("dtype", detail.dtype), ("noise", detail.noise)
            )
            for kind, by_arm in records:
                for arm, by_layer in by_arm.items():
                    for layer, record in by_layer.items():
                        values = encode(record)
                        lists = {k: v for k, v in values.items() if isinstance(v, list)}
                        if i < len(next(iter(lists.values()))):
                            entry.setdefault(kind, {}).setdefault(arm, {})[layer] = {
                                "fixed": {k: v for k, v in values.items() if k not in lists},
                                "per_image": {k: v[i] for k, v in lists.items()},
                            }
            for arm, spreads in detail.steps_spread.items():
                for layer, spread in spreads.items():
                    if i < len(spread.max_abs[0]):
                        entry.setdefault("spread", {}).setdefault(arm, {})[layer] = {
                            "max_abs": [row[i] for row in spread.max_abs],
                            "correlation": [row[i] for row in spread.correlation],
                        }
            line["stability"] = entry
    return lines


def _gallery(run: RunState, limit: int) -> dict[str, np.ndarray]:
    """The heatmaps of the shard's images among the first ``limit``, as uint8."""
    shown = run.first(limit)
    pairs = list(run.pairs())
    arrays: dict[str, np.ndarray] = {
        "ids": np.array([run.names[i] for i in shown], dtype=np.str_),
        "pairs": np.array(pairs, dtype=np.str_).reshape(len(pairs), 2),
    }
    for e, (arm, layer) in enumerate(pairs):
        maps = run.explained(arm)[layer].heatmap.detach()[shown].to("cpu", torch.float32)
        arrays[f"heatmaps_{e}"] = (maps.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return arrays


def run_shard(context: Context, number: int, spec: ShardSpec) -> Work:
    """Compute one shard (see :func:`plan_shards`)."""
    o = context.options
    notes: list[str] = []
    timings: dict[str, float] = {}

    def timed(title: str, stage: Callable[..., None], *args: Any) -> None:
        begin = time.perf_counter()
        for runner in run.runners.values():
            runner.stage = title
        stage(run, *args)
        timings[title] = time.perf_counter() - begin

    if spec.kind == "images":
        run = _state(context, spec.start, spec.stop, number, notes)
        timed("explanations", explain_all)
        timed("deletion, insertion, average drop", faithfulness)
        if o.stability and any(arm.method in ("gradcam", "rsi") for arm in context.arms):
            timed("stability", stability)
        lines, arrays = _image_lines(run), _gallery(run, o.gallery_images)
    elif spec.kind == "grids":
        assert context.grids is not None
        grids = context.grids.grids(context.tensor, spec.start, spec.stop)
        run = _state(context, 0, 0, number, notes)
        names = context.names
        cells = [f"grid {g} cell {c}: {names[s]}" for g, row in
                 zip(range(spec.start, spec.stop), grids.sources.tolist(), strict=True)
                 for c, s in enumerate(row)]
        timed("grid pointing game", localisation,
              replace(grids, grids=grids.grids.to(context.device)), cells)
        values = run.metrics["gridpg"]
        lines = [
            {"id": grid_id, "cells": cells[4 * g:4 * g + 4], "metrics": {"gridpg": {
                arm: {layer: v[4 * g:4 * g + 4] for layer, v in by.items()}
                for arm, by in values.items()
            }}}
            for g, grid_id in enumerate(spec.ids)
        ]
        arrays = {}
    else:
        run = _state(context, spec.start, spec.stop, number, notes)
        timed("cascading randomisation", sanity)
        assert run.details.sanity is not None
        lines = [{"id": SANITY_ID, "units": encode(run.units["sanity_spearman"]),
                  "metrics": {"sanity_spearman": run.metrics["sanity_spearman"]},
                  "details": encode(run.details.sanity)}]
        arrays = {}
    if lines:
        lines[0]["notes"] = notes
        lines[0]["timings"] = timings
    return Work(finite(lines), arrays)
