"""Explain a dataset: a folder or a list of images, in shards, resumable, on torch.distributed.

:func:`explain_dataset` is what ``rsigradcam explain-dataset`` runs. The images are
decoded by a :class:`torch.utils.data.DataLoader` (with worker processes) and explained
in batches; the results go to shards written atomically (see
:mod:`rsigradcam.app.runs.shards`).

- **Order.** A folder is scanned recursively for image files (hidden files and folders,
  and the output folder, are skipped); the image id is the path relative to the folder
  (POSIX), and the images are sorted by id. A list file keeps its order
  (:mod:`rsigradcam.app.images`).
- **Shards.** Shard ``k`` holds the images ``k * shard_size`` to
  ``(k + 1) * shard_size - 1``. Batches never cross a shard boundary and path chunks come
  from a fixed memory budget, so a shard's results do not depend on which process
  explains it, or when (bit for bit, given the same number of torch threads).
- **Resuming.** A shard is finished when its ``.npz`` exists. A run into a folder that
  already holds one skips the finished shards and redoes the others, provided that every
  parameter that affects the results is the same (they are kept in ``run.json``);
  otherwise it is refused, naming the parameters that differ.
- **Processes.** Under ``torchrun`` (the ``RANK`` and ``WORLD_SIZE`` variables), each
  process joins a ``torch.distributed`` process group (gloo on CPU, nccl on GPU, or the
  group that the caller already started). Rank 0 checks the folder and writes
  ``run.json``, then lists the unfinished shards; rank ``r`` of ``w`` explains the
  unfinished shards ``r, r + w, r + 2w...`` of that list. After a barrier rank 0 joins
  the shards' lines into ``manifest.jsonl`` and ``errors.jsonl``.
- **Errors.** An image that cannot be read, or whose explanation fails, is recorded with
  the reason and the run goes on.
- **One run at a time.** Rank 0 holds an advisory lock on ``OUT/.lock`` from its checks
  to the final merge (:mod:`rsigradcam.app.runs.lock`).

The modules: ``parameters`` (options, ``run.json``, resuming), ``loader`` (decoding),
``explainer`` (batches into shards) and ``run`` (the whole run). The shards, the ranks,
the lock and the progress display are the run framework that ``evaluate`` shares
(:mod:`rsigradcam.app.runs`).

Example:
    >>> from rsigradcam.app.dataset import DatasetOptions, explain_dataset
    >>> options = DatasetOptions(Path("photos"), Path("out"), layers=("head",))
    >>> explain_dataset(options).explained  # doctest: +SKIP
    1000
"""

from __future__ import annotations

from rsigradcam.app.dataset.loader import ImageBatch, ImageFiles, collate_images
from rsigradcam.app.dataset.parameters import (
    DatasetOptions,
    HeatmapDtype,
    RunParameters,
    explanation_pairs,
)
from rsigradcam.app.dataset.run import DatasetSummary, explain_dataset
from rsigradcam.app.images import ImageEntry, list_images
from rsigradcam.app.loading.methods import parse_methods

__all__ = [
    "DatasetOptions",
    "DatasetSummary",
    "HeatmapDtype",
    "ImageBatch",
    "ImageEntry",
    "ImageFiles",
    "RunParameters",
    "collate_images",
    "explain_dataset",
    "explanation_pairs",
    "list_images",
    "parse_methods",
]
