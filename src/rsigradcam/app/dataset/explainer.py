"""Explain a rank's shards: decode the images, explain them in batches, write the shards.

:class:`BatchExplainer` classifies a batch and explains each image's class with every
method and layer of the run; :func:`explain_shards` feeds it this rank's shards from a
:class:`~torch.utils.data.DataLoader` and writes each shard when its last image is done.
Batches never cross a shard boundary and the path chunks come from a fixed memory budget,
so a shard's results do not depend on which process explains it, or when.

Example:
    >>> explainer = BatchExplainer(loaded, params)  # doctest: +SKIP
    >>> explainer(images, [None] * len(images)).heatmaps[0].shape  # doctest: +SKIP
    (8, 224, 224)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from rsigradcam.app.dataset.loader import ImageFiles, collate_images
from rsigradcam.app.dataset.parameters import DatasetOptions, RunParameters
from rsigradcam.app.images import ImageEntry
from rsigradcam.app.loading.models import LoadedModel
from rsigradcam.app.runs.progress import RunProgress
from rsigradcam.app.runs.shards import ShardBuffer
from rsigradcam.core.capture import logits_of
from rsigradcam.core.inference import SpeedSpec
from rsigradcam.methods import create_cam, method_layers
from rsigradcam.serialization import encode

__all__ = ["BatchExplainer", "BatchResult", "explain_shards"]


@dataclass(frozen=True)
class BatchResult:
    """What :class:`BatchExplainer` found for a batch of B images and E explanations.

    Attributes:
        targets: The explained classes, (B,).
        probabilities: Softmax probability of each target at the input, (B,).
        scores: The explained scores, (B, E).
        baseline_scores: The scores at the baseline, (B, E) (NaN where there is none).
        completeness: The completeness errors, (B, E) (NaN where there is none).
        completeness_notes: Why each explanation's completeness error is NaN although
            its method has one (:attr:`~rsigradcam.explanation.Explanation.completeness_note`),
            E lines, "" where it is computed.
        heatmaps: E arrays (B, H, W), stored as the run's heatmap dtype.
    """

    targets: np.ndarray
    probabilities: np.ndarray
    scores: np.ndarray
    baseline_scores: np.ndarray
    completeness: np.ndarray
    heatmaps: list[np.ndarray]
    completeness_notes: list[str]


class BatchExplainer:
    """Classify a batch, then explain each image's class with every method and layer.

    Args:
        loaded: The model.
        params: The run's parameters (methods, layers, steps, output, budget, dtype).
        speed: How the path methods run the model
            (:class:`~rsigradcam.core.inference.SpeedOptions`; default ``"auto"``): the maps
            move by float rounding only.
    """

    def __init__(
        self, loaded: LoadedModel, params: RunParameters, speed: SpeedSpec = "auto"
    ) -> None:
        self.model = loaded.model
        self.device = loaded.device
        layers = list(params.layers)
        self.cams = [
            (
                m,
                create_cam(
                    m,
                    loaded.model,
                    layers,
                    steps=params.steps,
                    output=params.output,
                    memory_budget_mb=params.memory_budget_mb,
                    path_options={"normalize": params.input_format.normalize},
                    variants=encode(params.variants),
                    speed=speed,
                ),
            )
            for m in params.methods
        ]
        self.layers = layers
        self.heatmap_dtype = params.heatmap_dtype

    def __call__(self, images: Tensor, given: Sequence[int | None]) -> BatchResult:
        """Explain ``images`` (B, 3, H, W) for the classes ``given`` (``None``: top-1)."""
        x = images.to(self.device, non_blocking=images.is_pinned())
        with torch.no_grad():
            probabilities = torch.softmax(logits_of(self.model(x)).float(), dim=1)
        targets = probabilities.argmax(dim=1)
        for i, target in enumerate(given):
            if target is not None:
                targets[i] = target
        columns: dict[str, list[Tensor]] = {"scores": [], "baseline": [], "completeness": []}
        heatmaps: list[np.ndarray] = []
        notes: list[str] = []
        for method, cam in self.cams:
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", r".* map at layer .* is zero everywhere", RuntimeWarning
                )
                by_layer = cam(x, targets=targets)
            for layer in method_layers(method, self.layers):
                exp = by_layer[layer]
                columns["scores"].append(exp.scores.float())
                columns["baseline"].append(exp.baseline_scores.float())
                columns["completeness"].append(exp.completeness_error.float())
                heatmaps.append(self._stored(exp.heatmap))
                notes.append(exp.completeness_note)
        return BatchResult(
            targets=targets.cpu().numpy(),
            probabilities=probabilities.gather(1, targets.view(-1, 1))[:, 0].cpu().numpy(),
            scores=torch.stack(columns["scores"], dim=1).cpu().numpy(),
            baseline_scores=torch.stack(columns["baseline"], dim=1).cpu().numpy(),
            completeness=torch.stack(columns["completeness"], dim=1).cpu().numpy(),
            heatmaps=heatmaps,
            completeness_notes=notes,
        )

    def _stored(self, heatmap: Tensor) -> np.ndarray:
        if self.heatmap_dtype == "uint8":
            return torch.round(heatmap * 255.0).clamp_(0, 255).to(torch.uint8).cpu().numpy()
        return heatmap.to(torch.float16).cpu().numpy()


def explain_shards(
    options: DatasetOptions,
    loaded: LoadedModel,
    params: RunParameters,
    entries: Sequence[ImageEntry],
    names: Sequence[str],
    sizes: dict[str, int],
    mine: Sequence[int],
    view: RunProgress | None,
) -> int:
    """Explain this rank's shards and write them; return the images done.

    Args:
        options: The run's options (output folder, decoding workers).
        loaded: The model.
        params: The run's parameters.
        entries: Every image of the run, in order.
        names: Every shard's file stem, in order.
        sizes: Images per shard, by name.
        mine: The shards this rank explains.
        view: Rank 0's progress display; ``None`` on other ranks.
    """
    size = params.shard_size
    batch_size = params.batch_size
    batches: list[list[int]] = []
    for k in mine:
        images = range(k * size, min((k + 1) * size, len(entries)))
        batches.extend(list(images[i : i + batch_size]) for i in range(0, len(images), batch_size))
    if not batches:
        return 0
    explainer = BatchExplainer(loaded, params, options.speed)
    loader = DataLoader(
        ImageFiles([e.path for e in entries], params.input_format),
        batch_sampler=batches,
        num_workers=options.workers,
        collate_fn=collate_images,
        pin_memory=loaded.device.type == "cuda",  # copies to the GPU without a host wait
    )
    out = Path(options.out)
    buffer: ShardBuffer | None = None
    done = 0
    for batch in loader:
        k = batch.indices[0] // size
        if buffer is None:
            buffer = ShardBuffer(out, names[k], params.explanations, loaded.class_names)
        for index, reason in batch.failures:
            buffer.add_error(index, entries[index].id, entries[index].path, reason)
        if batch.images is not None:
            _explain_into(buffer, explainer, batch.images, batch.ok, entries)
        done += len(batch.indices)
        if len(buffer) == sizes[names[k]]:
            buffer.write(params.heatmap_size, np.dtype(params.heatmap_dtype))
            if view is not None:
                view.update(0, finished=names[k])
            buffer = None
        elif view is not None:
            view.update(len(buffer))
    return done


def _explain_into(
    buffer: ShardBuffer,
    explainer: BatchExplainer,
    images: Tensor,
    indices: Sequence[int],
    entries: Sequence[ImageEntry],
) -> None:
    """Explain a batch into the shard; if it fails, explain its images one at a time."""
    try:
        found = explainer(images, [entries[i].target for i in indices])
    except ValueError as exc:
        if len(indices) == 1:
            entry = entries[indices[0]]
            buffer.add_error(indices[0], entry.id, entry.path, f"explanation failed: {exc}")
            return
        for row, index in enumerate(indices):
            _explain_into(buffer, explainer, images[row : row + 1], [index], entries)
        return
    buffer.add(
        indices,
        [entries[i].id for i in indices],
        found.targets,
        found.probabilities,
        found.scores,
        found.baseline_scores,
        found.completeness,
        found.heatmaps,
        found.completeness_notes,
    )
