"""Run ``rsigradcam explain-dataset``: one process, or one rank of a ``torchrun`` job.

:func:`explain_dataset` joins the process group, lets rank 0 check the folder (under the
run's lock) and write ``run.json``, shares out the unfinished shards (rank ``r`` of ``w``
explains ``r, r + w, r + 2w...`` of them), and after a barrier lets rank 0 join the
shards' lines into ``manifest.jsonl`` and ``errors.jsonl``.

Example:
    >>> options = DatasetOptions(Path("photos"), Path("out"), layers=("head",))
    >>> explain_dataset(options).explained  # doctest: +SKIP
    1000
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from rsigradcam.app.dataset.explainer import explain_shards
from rsigradcam.app.dataset.parameters import (
    DatasetOptions,
    RunParameters,
    prepare_run,
    read_run,
)
from rsigradcam.app.errors import InputError
from rsigradcam.app.images import ImageEntry
from rsigradcam.app.loading.layers import check_layers, probe_layers
from rsigradcam.app.loading.models import load_model
from rsigradcam.app.outputs import prepare_output_dir
from rsigradcam.app.runs.distributed import (
    Ranks,
    RankZeroError,
    barrier,
    from_rank_zero,
    process_group,
    rank_device,
)
from rsigradcam.app.runs.lock import run_lock
from rsigradcam.app.runs.progress import RunProgress
from rsigradcam.app.runs.shards import merge_shards, rank_shards, shard_names
from rsigradcam.app.threads import torch_threads
from rsigradcam.core.inference import float32_arithmetic

__all__ = ["DatasetSummary", "explain_dataset"]


@dataclass(frozen=True)
class DatasetSummary:
    """What a dataset run did (the totals are known on rank 0 only).

    Attributes:
        out: The output folder.
        images: Images in the source.
        explained: Images explained (rank 0; ``None`` on other ranks).
        failed: Images that could not be explained (rank 0; ``None`` on other ranks).
        shards: Shards in the run.
        skipped: Shards that were already finished when this run started.
        processed: Images explained or failed during this run: by all ranks on rank 0, by
            this rank on the others.
        seconds: Wall time of the explaining (after the setup, up to the final barrier).
        rank: This process's rank.
        world_size: Number of processes.
    """

    out: Path
    images: int
    explained: int | None
    failed: int | None
    shards: int
    skipped: int
    processed: int
    seconds: float
    rank: int
    world_size: int

    @property
    def images_per_second(self) -> float:
        """Images per second during this run."""
        return self.processed / self.seconds if self.seconds > 0 else float("nan")


def explain_dataset(
    options: DatasetOptions,
    *,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
) -> DatasetSummary:
    """Explain every image of a folder or list, into resumable shards.

    Runs as one process, or as one rank of a ``torchrun`` job (see
    :mod:`rsigradcam.app.dataset`).

    Args:
        options: The arguments.
        progress: Draw a progress bar on stderr (rank 0 only).
        echo: Where rank 0 prints a line per finished shard when there is no bar.

    Returns:
        A :class:`DatasetSummary`.

    Raises:
        InputError: An argument that cannot work, or an output folder that holds a run
            with other parameters (on rank 0).
        RankZeroError: On other ranks, when rank 0 refused the run.

    Example:
        >>> options = DatasetOptions(Path("photos"), Path("out"), layers=("head",))
        >>> explain_dataset(options).explained  # doctest: +SKIP
        1000
    """
    options.check()
    ranks = Ranks.from_env()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(torch_threads(options.threads, ranks.local_world_size))
    try:
        device = rank_device(options.device, ranks)
        with process_group(ranks, device), float32_arithmetic(device):
            return _run(options, ranks, device, progress, echo)
    finally:
        torch.set_num_threads(threads_before)


def _run(
    options: DatasetOptions,
    ranks: Ranks,
    device: torch.device,
    progress: bool,
    echo: Callable[[str], None] | None,
) -> DatasetSummary:
    """The run; rank 0 holds the folder's lock (in ``held``) until it returns."""
    with contextlib.ExitStack() as held:
        input_size = options.input_format.size
        loaded = load_model(options.model, device, input_size)
        layers = check_layers(list(options.layers), probe_layers(loaded.model, input_size))
        out = Path(options.out)
        failure: BaseException | None = None
        setup: tuple[int, str] | list[int] = []
        entries: list[ImageEntry] = []
        params: RunParameters | None = None
        if ranks.rank == 0:
            try:
                out = prepare_output_dir(options.out)
                held.enter_context(run_lock(out))
                entries, params, todo = prepare_run(options, loaded, layers, out)
                setup = todo
            except Exception as exc:
                failure = exc
                setup = (2 if isinstance(exc, InputError) else 1, str(exc))
        setup = from_rank_zero(setup, ranks)
        if isinstance(setup, tuple):
            if failure is not None:
                raise failure
            raise RankZeroError(setup[0])
        todo = setup
        if params is None:
            entries, params = read_run(out)
        size = params.shard_size
        names = shard_names(params.shards)
        sizes = {name: min(size, len(entries) - k * size) for k, name in enumerate(names)}
        mine = [todo[i] for i in rank_shards(len(todo), ranks.rank, ranks.world_size)]
        view = RunProgress(out, sizes, progress, echo) if ranks.rank == 0 else None
        start = time.perf_counter()
        with view if view is not None else contextlib.nullcontext():
            processed = explain_shards(options, loaded, params, entries, names, sizes, mine, view)
        barrier(ranks, device)
        seconds = time.perf_counter() - start
        explained = failed = None
        if ranks.rank == 0:
            explained, failed = merge_shards(out, names, [e.id for e in entries])
        return DatasetSummary(
            out=out,
            images=len(entries),
            explained=explained,
            failed=failed,
            shards=len(names),
            skipped=len(names) - len(todo),
            processed=sum(sizes[names[k]] for k in todo) if ranks.rank == 0 else processed,
            seconds=seconds,
            rank=ranks.rank,
            world_size=ranks.world_size,
        )
