"""``rsigradcam explain-dataset``: a folder or list of images into resumable shards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsigradcam.app.folders import removed_if_left_empty
from rsigradcam.app.option_groups import ModelInput, RsiVariants, SpeedFlags, with_option_groups
from rsigradcam.app.options import (
    DebugOption,
    HeatmapDtypeChoice,
    LayerOption,
    MethodOption,
    OutputChoice,
    OutputOption,
    StepsOption,
    ThreadsOption,
    choice_option,
    error,
    fail_cleanly,
    integer_option,
    plural,
    say_if_busy,
    terminated_as_interrupt,
)

__all__ = ["explain_dataset"]


@with_option_groups
def explain_dataset(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="SRC",
            help="A folder of images (searched recursively), or a CSV list file: a path per "
            "row and optionally a target class (id or name); .tsv files are tab-separated.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Output folder; run again into it to resume.", show_default=False
        ),
    ],
    *,
    layer: LayerOption = None,
    method: MethodOption = None,
    steps: StepsOption = 50,
    output: OutputOption = OutputChoice.softmax,
    batch_size: Annotated[
        int, integer_option("--batch-size", "-b", minimum=1, help="Images explained together.")
    ] = 8,
    workers: Annotated[
        int,
        integer_option("--workers", "-w", minimum=0, help="DataLoader processes decoding images."),
    ] = 2,
    shard_size: Annotated[
        int, integer_option("--shard-size", minimum=1, help="Images per shard.")
    ] = 256,
    dtype: Annotated[
        HeatmapDtypeChoice,
        choice_option(
            HeatmapDtypeChoice,
            "--dtype",
            help="How heatmaps are stored: uint8 (round(255 h)) or float16.",
        ),
    ] = HeatmapDtypeChoice.uint8,
    model_input: ModelInput,
    variants: RsiVariants,
    threads: ThreadsOption = None,
    speed: SpeedFlags,
    debug: DebugOption = False,
) -> None:
    """Explain every image of a folder or list into resumable shards, on one or more processes.

    Writes to --out: run.json (every parameter and the package version), images.jsonl,
    shards/shard-NNNNN.npz (compressed: the heatmaps at the input size, ids, targets,
    scores and completeness errors) with shards/shard-NNNNN.jsonl, and at the end manifest.jsonl (a
    line per image) and errors.jsonl (images that could not be read, with the reason).
    Read them back with rsigradcam.load_heatmaps(OUT).

    Exit code 0 when every image was explained, 1 when some could not be read or
    explained (named in errors.jsonl and on stderr; the others are written), 2 for a usage
    error. Killed and run again with the same arguments, it skips the finished shards; a run with
    other parameters into the same --out is refused (a parameter that none of the chosen
    methods uses, such as --steps for gradcam alone, may change). Under torchrun
    (--nproc-per-node N, --nnodes) every process takes its own shards: gloo on CPU, nccl
    on GPU.
    """
    from rich.console import Console

    from rsigradcam.app import dataset
    from rsigradcam.app.runs.distributed import Ranks, RankZeroError

    ranks = Ranks.from_env()
    if ranks.rank == 0:  # one note, not one per process
        say_if_busy(threads, ranks.local_world_size)
    with fail_cleanly(debug):
        options = dataset.DatasetOptions(
            source=source,
            out=out,
            model=model_input.model,
            layers=tuple(layer or ()),
            methods=tuple(method or ("rsi",)),
            steps=steps,
            output=output.value,
            batch_size=batch_size,
            shard_size=shard_size,
            heatmap_dtype=dtype.value,
            device=model_input.device,
            workers=workers,
            threads=threads,
            variants=variants.variants(),
            input_format=model_input.input_format(),
            compile=speed.compile_model,
            fold_batchnorm=speed.fold_batchnorm,
        )
    console = Console(stderr=True)
    # A failed, interrupted or terminated start leaves no empty --out.
    with removed_if_left_empty(out), fail_cleanly(debug), terminated_as_interrupt():
        try:
            summary = dataset.explain_dataset(
                options, progress=console.is_terminal, echo=typer.echo
            )
        except RankZeroError as stop:  # rank 0 reports why
            raise typer.Exit(stop.exit_code) from None
    if summary.rank != 0:
        return
    skipped = f", {summary.skipped} already done" if summary.skipped else ""
    typer.echo(
        f"Explained {summary.explained} of {plural(summary.images, 'image')} in "
        f"{plural(summary.shards, 'shard')}{skipped} ({plural(summary.world_size, 'process')}, "
        f"{summary.seconds:.1f} s, {summary.images_per_second:.2f} images/s) -> "
        f"{summary.out.resolve()}"
    )
    if summary.failed:
        error(
            f"{plural(summary.failed, 'image')} could not be read or explained; see "
            f"{summary.out.resolve() / 'errors.jsonl'}"
        )
        raise typer.Exit(1)
