"""Run an evaluation (:func:`evaluate`) and write its files (:func:`write_evaluation`).

The work is split into shards (:mod:`.work`). Into an output folder, each shard is written
as ``shards/shard-NNNNN.jsonl`` (one line per image, grid or test) and ``.npz`` (the
gallery's heatmaps), with the files and the lock of ``explain-dataset``
(:mod:`rsigradcam.app.runs.shards`): a shard is finished when its ``.npz`` exists, so a
run that was killed resumes with the same command, redoing only the unfinished shards,
and a run with other parameters is refused. Under ``torchrun`` rank ``r`` of ``w``
computes the unfinished shards ``r, r + w...``; rank 0 then joins the lines into
``manifest.jsonl`` and writes the results. Without a folder the shards stay in memory.

Example:
    >>> found = evaluate(EvaluationOptions(max_images=4, sanity=False))  # doctest: +SKIP
    >>> write_evaluation(found, "rsigradcam-evaluation")                 # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsigradcam import __version__
from rsigradcam.app.errors import InputError
from rsigradcam.app.evaluation.arms import comparisons
from rsigradcam.app.evaluation.inputs import load_images, resolve_layers
from rsigradcam.app.evaluation.merge import Merged, gallery_heatmaps, merge_lines
from rsigradcam.app.evaluation.options import (
    CPU_BATCH,
    GRID_THRESHOLDS,
    METRICS,
    EvaluationOptions,
)
from rsigradcam.app.evaluation.report import markdown_summary, render_report
from rsigradcam.app.evaluation.results import (
    Accuracy,
    Evaluation,
    EvaluationResults,
    ImageResult,
    RunConfig,
)
from rsigradcam.app.evaluation.stages import plan_grids
from rsigradcam.app.evaluation.stats import (
    judge_claims,
    probability_bins,
    resolution_note,
    summarize,
)
from rsigradcam.app.evaluation.storage import UNITS, save_results
from rsigradcam.app.evaluation.work import Context, ShardSpec, Work, plan_shards, run_shard
from rsigradcam.app.loading.hashing import model_sha256
from rsigradcam.app.loading.models import load_model
from rsigradcam.app.runs.distributed import (
    Ranks,
    RankZeroError,
    barrier,
    from_rank_zero,
    process_group,
    rank_device,
)
from rsigradcam.app.runs.lock import run_lock
from rsigradcam.app.runs.parameters import FIXED_BUDGET_MB, differences
from rsigradcam.app.runs.progress import RunProgress
from rsigradcam.app.runs.shards import (
    merge_shards,
    rank_shards,
    remove_stale,
    shard_done,
    shard_names,
    write_lines,
)
from rsigradcam.app.threads import torch_threads
from rsigradcam.core.inference import float32_arithmetic
from rsigradcam.files import finite, save_json, save_text, write_atomically
from rsigradcam.heatmaps import MANIFEST, RUN, SHARD_DIR, read_lines
from rsigradcam.metrics import SATURATION
from rsigradcam.metrics.stability import class_probabilities
from rsigradcam.serialization import encode

__all__ = ["RUN_FORMAT", "evaluate", "write_evaluation"]

#: The ``format`` of an evaluation's ``run.json``.
RUN_FORMAT = "rsigradcam-evaluation/1"


def _context(options: EvaluationOptions, device: torch.device, out: Path | None) -> Context:
    """Load the model and the images, classify them, and choose the grids."""
    loaded = load_model(options.model, device, options.input_size)
    layers = resolve_layers(loaded, options.layers, options.input_size)
    found, notes = load_images(options, loaded, exclude=out)
    arms = options.run_arms()
    notes.extend(
        line for arm in arms for line in arm.variants.warnings((arm.method,))
        if line not in notes
    )
    tensor = torch.cat([image.tensor for image in found])
    probabilities = class_probabilities(
        loaded.model, tensor.to(loaded.device), batch_size=CPU_BATCH
    ).cpu()
    labels = [image.target for image in found]
    top1 = probabilities.argmax(dim=1).tolist()
    targets = torch.tensor([top1[k] if t is None else t for k, t in enumerate(labels)])
    context = Context(
        options, loaded.model, loaded.device, layers, arms, found, tensor, probabilities,
        targets, labels, None, loaded.label, notes=notes,
    )
    context.grids = plan_grids(options, probabilities, labels)
    if context.grids is None and options.max_grids > 0:
        notes.append("GridPG skipped: fewer than four distinct classes among the images")
    elif context.grids is not None and context.grids.threshold < GRID_THRESHOLDS[0]:
        notes.append(
            f"GridPG: grid threshold lowered from {GRID_THRESHOLDS[0]} to "
            f"{context.grids.threshold} to build "
            f"{len(context.grids.picked)} grid(s) from {len(found)} images"
        )
    return context


def _parameters(context: Context) -> dict[str, Any]:
    """Everything that decides a run's numbers (compared when a run resumes)."""
    digest = hashlib.sha256()
    for image in context.images:
        digest.update(json.dumps([image.name, image.target]).encode())
        digest.update(image.tensor.numpy().tobytes())
    return {
        **encode(context.options),
        "layers": list(context.layers),
        "model_sha256": model_sha256(context.model),
        "images_sha256": digest.hexdigest(),
        "device": context.device.type,
        "version": __version__,
    }


def _prepare(context: Context, out: Path, specs: list[ShardSpec]) -> list[int]:
    """On rank 0: check or write ``run.json``; the shards not finished yet."""
    parameters = json.loads(json.dumps(_parameters(context)))
    path = out / RUN
    if path.is_file():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            if stored.get("format") != RUN_FORMAT:
                raise ValueError(f"format {stored.get('format')!r}")
            changed = differences(stored["parameters"], parameters)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"'{path}' is not a run.json of evaluate ({exc}); choose another "
                             "--out") from exc
        if changed:
            raise InputError(
                f"--out '{out}' holds an evaluation with other parameters "
                f"({'; '.join(changed)}); run with the same arguments to resume it, or choose "
                "another --out"
            )
    else:
        if (out / SHARD_DIR).is_dir() and any((out / SHARD_DIR).iterdir()):
            raise InputError(f"--out '{out}' holds shards but no {RUN}; choose another --out")
        save_json(
            {"format": RUN_FORMAT, "parameters": parameters, "shards": len(specs),
             "created": datetime.now(timezone.utc).isoformat(timespec="seconds")},
            path,
        )
    (out / SHARD_DIR).mkdir(exist_ok=True)
    remove_stale(out)
    names = shard_names(len(specs))
    return [k for k, name in enumerate(names) if not shard_done(out, name)]


def _forget_if_unstarted(out: Path) -> None:
    """Remove ``run.json`` and an empty ``shards/`` when no shard was finished.

    Registered by a new run as it starts: when it fails, is interrupted or is terminated
    before its first shard, the folder keeps nothing half-made (a run that finished a
    shard stays, to be resumed).
    """
    shards = out / SHARD_DIR
    if shards.is_dir() and any(shards.glob("*.npz")):
        return
    if (out / MANIFEST).exists():
        return
    (out / RUN).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        for leftover in shards.glob("*"):  # lines of a shard whose .npz never came
            leftover.unlink()
        shards.rmdir()


def _write_shard(out: Path, name: str, work: Work) -> None:
    """The shard's lines first, its ``.npz`` (the mark of a finished shard) last."""
    folder = out / SHARD_DIR
    write_lines(folder / f"{name}.jsonl", work.lines)

    def save(tmp: Path) -> None:
        with tmp.open("wb") as file:
            np.savez_compressed(file, allow_pickle=False, **work.arrays)

    write_atomically(folder / f"{name}.npz", save)


def _read_shard(out: Path, name: str) -> Work:
    folder = out / SHARD_DIR
    with np.load(folder / f"{name}.npz", allow_pickle=False) as found:
        arrays = {key: found[key] for key in found.files}
    return Work(list(read_lines(folder / f"{name}.jsonl")), arrays)


@contextlib.contextmanager
def _ranks(
    options: EvaluationOptions, out: Path | None, threads: int | None = None
) -> Iterator[tuple[Ranks, torch.device]]:
    """The rank (one process without a folder) and device, in the process group.

    Torch runs with ``threads`` threads (``--threads``), else ``OMP_NUM_THREADS``, else the
    usable CPUs shared among the machine's processes (see
    :func:`~rsigradcam.app.threads.torch_threads`).

    On a GPU the block runs in float32 arithmetic, without TF32
    (:func:`~rsigradcam.core.inference.float32_arithmetic`).
    """
    ranks = Ranks.from_env() if out is not None else Ranks()
    before = torch.get_num_threads()
    torch.set_num_threads(torch_threads(threads, ranks.local_world_size))
    try:
        device = rank_device(options.device, ranks)
        with process_group(ranks, device), float32_arithmetic(device):
            yield ranks, device
    finally:
        torch.set_num_threads(before)


def evaluate(
    options: EvaluationOptions,
    *,
    echo: Callable[[str], None] = print,
    progress: bool = False,
    out: Path | None = None,
    threads: int | None = None,
) -> Evaluation:
    """Run every arm and metric that ``options`` ask for.

    Args:
        options: What to run (see :class:`EvaluationOptions`).
        echo: Called with a line as each shard finishes (when there is no bar).
        progress: Draw a progress bar with the time left (into a folder, on rank 0).
        out: The output folder: the shards go to ``out/shards`` and a finished shard is
            not computed again (resuming); it is never searched for images. ``None``: in
            memory.
        threads: Torch threads for the run (``--threads``); ``None``: ``OMP_NUM_THREADS``,
            else the usable CPUs / the machine's processes.

    Returns:
        An :class:`Evaluation`: the typed results, the images and the gallery's heatmaps.

    Raises:
        InputError: An option, model, layer or image folder that cannot work, or a folder
            that holds an evaluation with other parameters.
        RankZeroError: On ranks other than 0 under torchrun, when rank 0 refused the run.
    """
    options.check()
    started = time.perf_counter()
    with _ranks(options, out, threads) as (ranks, device), contextlib.ExitStack() as held:
        context = _context(options, device, out)
        specs = plan_shards(context)
        names = shard_names(len(specs))
        todo: list[int] | tuple[int, str] = list(range(len(specs)))
        failure: Exception | None = None
        if out is not None and ranks.rank == 0:
            try:
                held.enter_context(run_lock(out))
                if not (out / RUN).exists():  # a new run: a start that fails leaves nothing
                    held.callback(_forget_if_unstarted, out)
                todo = _prepare(context, out, specs)
            except Exception as exc:
                failure, todo = exc, (2 if isinstance(exc, InputError) else 1, str(exc))
        todo = from_rank_zero(todo, ranks)
        if isinstance(todo, tuple):
            if failure is not None:
                raise failure
            raise RankZeroError(todo[0])
        setup = time.perf_counter() - started
        echo(
            f"{len(context.images)} images, layers {', '.join(context.layers)}, arms "
            f"{', '.join(a.key for a in context.arms)}, m = {options.steps}, "
            f"{len(specs)} shards ({setup:.1f} s)"
        )
        kept: dict[int, Work] = {}
        timings = {"setup": setup}
        sizes = {name: len(spec.ids) for name, spec in zip(names, specs, strict=True)}
        view = (
            RunProgress(out, sizes, progress, echo, unit="units", task="evaluating")
            if out is not None and ranks.rank == 0 else None
        )
        with view if view is not None else contextlib.nullcontext():
            for k in (todo[i] for i in rank_shards(len(todo), ranks.rank, ranks.world_size)):
                begin = time.perf_counter()
                work = run_shard(context, k, specs[k])
                if out is None:
                    kept[k] = work
                    echo(f"{names[k]} ({len(specs[k].ids)} {specs[k].kind}): "
                         f"{time.perf_counter() - begin:.1f} s")
                else:
                    _write_shard(out, names[k], work)
                    if view is not None:
                        view.update(0, finished=names[k])
        barrier(ranks, device)
        if out is not None:
            ids = [i for spec in specs for i in spec.ids]
            if ranks.rank == 0:
                merge_shards(out, names, ids)
            barrier(ranks, device)
            kept = {k: _read_shard(out, name) for k, name in enumerate(names)}
        works = [kept[k] for k in range(len(specs))]
        merged = merge_lines(context, (line for work in works for line in work.lines))
        timings.update(merged.timings)
        timings["total"] = time.perf_counter() - started
        results = _results(context, merged, timings)
        return Evaluation(
            results, [image.rgb for image in context.images],
            gallery_heatmaps(work.arrays for work in works),
        )


def _accuracy(images: list[ImageResult]) -> Accuracy | None:
    """The top-1 and top-5 accuracy on the labelled images (``None``: none is labelled)."""
    labelled = [image for image in images if image.label is not None]
    if not labelled:
        return None
    return Accuracy(len(labelled), sum(bool(i.correct) for i in labelled),
                    sum(bool(i.top5) for i in labelled))


def _results(context: Context, merged: Merged, timings: dict[str, float]) -> EvaluationResults:
    """Everything the run found, with the summary and the claims' verdicts."""
    o = context.options
    config = RunConfig(
        options=o,
        layers=context.layers,
        version=__version__,
        torch=torch.__version__,
        python=platform.python_version(),
        model_digest=model_sha256(context.model),
        memory_budget_mb=FIXED_BUDGET_MB,
        batch_size=CPU_BATCH,
        saturation=SATURATION,
    )
    top = context.probabilities.max(dim=1)
    top5 = context.probabilities.topk(min(5, context.probabilities.shape[1]), dim=1).indices
    explained, saturated = context.explained, context.saturated
    images = [
        ImageResult(
            name=image.name,
            source=image.source,
            class_id=int(context.targets[k]),
            class_name=context.label(int(context.targets[k])),
            probability=explained[k],
            top1_probability=float(top.values[k]),
            saturated=saturated[k],
            top1=int(top.indices[k]),
            label=image.target,
            correct=None if image.target is None else int(top.indices[k]) == image.target,
            top5=None if image.target is None else image.target in top5[k].tolist(),
        )
        for k, image in enumerate(context.images)
    ]
    pairs = [(a.key, b.key) for a, b in comparisons(context.arms)]
    claims = judge_claims(merged.metrics, merged.units, o.seed, o.bootstrap, pairs)
    note = resolution_note(claims[0].comparisons if claims else 0, o.bootstrap)
    return EvaluationResults(
        config=config,
        images=images,
        explanations=merged.explanations,
        metrics_info=dict(METRICS),
        units=merged.units,
        metrics=merged.metrics,
        details=merged.details,
        notes=[*merged.notes, *([note] if note else [])],
        summary=summarize(merged.metrics, merged.units, o.seed, o.bootstrap),
        claims=claims,
        timings=timings,
        arms={arm.key: arm.label for arm in context.arms},
        p_bins=probability_bins(merged.metrics, merged.units, o.seed, o.bootstrap, pairs),
        accuracy=_accuracy(images),
    )


def write_evaluation(evaluation: Evaluation, out: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``results-units.json.gz``, ``report.html`` and ``summary.md``.

    Each file is written atomically; the first two by :func:`.storage.save_results`.

    Returns:
        The files written: ``{"results": ..., "units": ..., "report": ..., "summary": ...}``.
    """
    folder = Path(out)
    results = save_results(finite(encode(evaluation.results)), folder)
    return {
        "results": results,
        "units": folder / UNITS,
        "report": save_text(render_report(evaluation), folder / "report.html"),
        "summary": save_text(markdown_summary(evaluation.results), folder / "summary.md"),
    }

