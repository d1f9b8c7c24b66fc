"""``rsigradcam explain-dataset``: a folder or list of images into resumable shards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsigradcam.app.folders import removed_if_left_empty
from rsigradcam.app.options import (
    LAST_SPATIAL,
    CompileOption,
    DebugOption,
    FoldBatchnormOption,
    GradReluOption,
    GuidedOption,
    HeatmapDtypeChoice,
    MeanOption,
    ModelOption,
    NoNormalizeOption,
    OutputChoice,
    OutputOption,
    SizeOption,
    StdOption,
    check_steps_option,
    error,
    fail_cleanly,
    layer_option,
    methods_option,
    plural,
)

__all__ = ["explain_dataset"]


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
    layer: Annotated[list[str] | None, layer_option(LAST_SPATIAL)] = None,
    method: Annotated[
        list[str] | None, methods_option("--method", "-m", default="rsi")
    ] = None,
    steps: Annotated[
        int,
        typer.Option(
            "--steps",
            "-s",
            min=1,
            help="Path steps m (m + 1 points) of rsi, integrated-gradcam and ig.",
        ),
    ] = 50,
    output: OutputOption = OutputChoice.softmax,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", min=1, help="Images explained together.")
    ] = 8,
    workers: Annotated[
        int,
        typer.Option("--workers", "-w", min=0, help="DataLoader processes decoding images."),
    ] = 2,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Images per shard.")] = 256,
    dtype: Annotated[
        HeatmapDtypeChoice,
        typer.Option("--dtype", help="How heatmaps are stored: uint8 (round(255 h)) or float16."),
    ] = HeatmapDtypeChoice.uint8,
    device: Annotated[
        str,
        typer.Option("--device", help="'cpu' or 'cuda' (under torchrun: cuda:LOCAL_RANK)."),
    ] = "cpu",
    model: ModelOption = "efficientnet_lite0",
    size: SizeOption = None,
    mean: MeanOption = None,
    std: StdOption = None,
    no_normalize: NoNormalizeOption = False,
    grad_relu: GradReluOption = False,
    guided: GuidedOption = False,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=1,
            help="Torch threads per process. Default: OMP_NUM_THREADS when it is set, else "
            "the CPU cores / processes on this machine.",
            show_default=False,
        ),
    ] = None,
    compile_model: CompileOption = False,
    fold_batchnorm: FoldBatchnormOption = None,
    debug: DebugOption = False,
) -> None:
    """Explain every image of a folder or list into resumable shards, on one or more processes.

    Writes to --out: run.json (every parameter and the package version), images.jsonl,
    shards/shard-NNNNN.npz (compressed: the heatmaps at the input size, ids, targets,
    scores and completeness errors) with shards/shard-NNNNN.jsonl, and at the end manifest.jsonl (a
    line per image) and errors.jsonl (images that could not be read, with the reason).
    Read them back with rsigradcam.load_heatmaps(OUT).

    Killed and run again with the same arguments, it skips the finished shards; a run with
    other parameters into the same --out is refused (a parameter that none of the chosen
    methods uses, such as --steps for gradcam alone, may change). Under torchrun
    (--nproc-per-node N, --nnodes) every process takes its own shards: gloo on CPU, nccl
    on GPU.
    """
    from rich.console import Console

    check_steps_option(steps)
    from rsigradcam.app import dataset
    from rsigradcam.app.runs.distributed import RankZeroError

    with fail_cleanly(debug):
        from rsigradcam.app.settings import Variants, input_format

        options = dataset.DatasetOptions(
            source=source,
            out=out,
            model=model,
            layers=tuple(layer or ()),
            methods=tuple(method or ("rsi",)),
            steps=steps,
            output=output.value,
            batch_size=batch_size,
            shard_size=shard_size,
            heatmap_dtype=dtype.value,
            device=device,
            workers=workers,
            threads=threads,
            variants=Variants(grad_relu, guided),
            input_format=input_format(size, mean, std, no_normalize),
            compile=compile_model,
            fold_batchnorm=fold_batchnorm,
        )
    console = Console(stderr=True)
    with removed_if_left_empty(out), fail_cleanly(debug):  # a failed run leaves no empty --out
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
