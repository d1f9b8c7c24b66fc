"""The ``rsigradcam`` command line, typer only: parse the arguments, call, print.

The work is done by the application's modules (:mod:`rsigradcam.app.explain`,
:mod:`~rsigradcam.app.loading`, the dataset runner, the evaluation, the demo, the
benchmark). Commands: ``explain`` (overlays, heatmaps, JSON and figure grids for image
files), ``layers`` (the layers of a model that can be explained), ``explain-dataset`` (a
folder of images, in resumable shards, on one or several processes), ``evaluate`` (every
method scored by every metric, with an HTML report), ``demo`` and ``bench``. ``--method``
takes the registry's names (:data:`rsigradcam.methods.METHODS`) in every command, and
``all`` means all of them.

Exit codes: 0 success; 2 a usage error (a bad option, a missing image file, an unknown
model, layer or class, an output folder that cannot be written), reported before any
work starts; 1 a runtime error, such as an image that cannot be decoded (the other
images are still explained). Each error is one line on stderr; ``--debug`` adds the
traceback.

Example:
    $ rsigradcam explain cat.jpg --layer blocks.10 --layer head --method all --out out
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from rsigradcam.app import dataset, loading
from rsigradcam.app import explain as explaining
from rsigradcam.app.cli_support import (
    LAST_SPATIAL,
    DebugOption,
    DeviceOption,
    HeatmapDtypeChoice,
    ModelOption,
    OneLineErrors,
    OutputChoice,
    OutputOption,
    describe,
    error,
    fail_cleanly,
    layer_option,
    methods_option,
    usage_error,
)
from rsigradcam.app.demo import run_demo
from rsigradcam.app.loading import InputError
from rsigradcam.app.samples import DEMO_LAYERS, find_paper_samples
from rsigradcam.baselines import AutoBaseline
from rsigradcam.files import one_line

__all__ = ["app", "main"]

app = typer.Typer(
    name="rsigradcam",
    cls=OneLineErrors,
    help="Explain image classifiers with RSI-Grad-CAM (Riemann-Stieltjes Integrated Grad-CAM).",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    """Explain image classifiers with RSI-Grad-CAM."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


@app.command()
def explain(
    images: Annotated[
        list[Path],
        typer.Argument(metavar="IMAGE", help="Image files (PNG, JPEG, ...).", show_default=False),
    ],
    layer: Annotated[
        list[str] | None, layer_option(LAST_SPATIAL + " See 'rsigradcam layers'.")
    ] = None,
    method: Annotated[list[str] | None, methods_option("--method", "-m", default="rsi")] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            "-t",
            help="Class to explain: an id (285) or a name ('Egyptian cat', any case). "
            "Default: each image's top-1 class.",
            show_default=False,
        ),
    ] = None,
    steps: Annotated[
        int, typer.Option("--steps", "-s", min=1, help="RSI-Grad-CAM steps m (m + 1 points).")
    ] = 50,
    output: OutputOption = OutputChoice.softmax,
    baseline: Annotated[
        str,
        typer.Option(
            "--baseline",
            "-b",
            help="RSI-Grad-CAM baseline: black (paper), zeros, blur, noise, uniform, auto "
            "(optimised so the model's output is uniform; fitted once per run), or PATH.pt "
            "(a saved AutoBaseline or a (C, H, W) tensor).",
        ),
    ] = "black",
    save_baseline: Annotated[
        Path | None,
        typer.Option(
            "--save-baseline",
            help="With --baseline auto: save the fitted baseline to this .pt file, to reuse "
            "with --baseline PATH.pt.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the output files (created).")
    ] = Path("rsigradcam-output"),
    device: DeviceOption = "cpu",
    model: ModelOption = "efficientnet_lite0",
    debug: DebugOption = False,
) -> None:
    """Explain why a classifier chose a class: overlays, heatmaps, JSON and figure grids.

    Writes to --out, for each image NAME.ext and each layer and method:
    NAME_LAYER_METHOD.png (the heatmap in the jet colormap over the image) and
    NAME_LAYER_METHOD.npy (the raw 224x224 heatmap in [0, 1]); ig explains the input,
    as LAYER 'input'. Per image NAME.json (top-5 classes, the explained class, per layer
    and method the steps and completeness error, the time taken) and, with several
    layers or methods, NAME_grid.png (rows = layers, columns = the image, then one per
    method). Images are resized to 224x224 and normalised with the ImageNet mean and std.

    An image that cannot be read is reported and skipped; the others are still explained
    and the exit code is 1.
    """
    try:
        explaining.check_images(images)
    except InputError as exc:
        usage_error(str(exc))
    if save_baseline is not None and baseline != "auto":
        usage_error("--save-baseline needs --baseline auto")
    with fail_cleanly(debug):
        methods = loading.parse_methods(method or ["rsi"])
        loaded = loading.load_model(model, device)
        layers = loading.check_layers(layer or [], loading.probe_layers(loaded.model))
        class_id = (
            loading.resolve_class(target, loaded.class_names, loaded.num_classes)
            if target is not None
            else None
        )
        baseline_spec = loading.resolve_baseline(baseline, loaded)
        explainer = explaining.ImageExplainer(
            loaded, layers, methods, steps, output.value, baseline_spec, baseline_name=baseline
        )
        out_dir = explaining.prepare_output_dir(out)
    with fail_cleanly(debug):
        failures = explaining.explain_images(
            explainer,
            images,
            out_dir,
            class_id,
            echo=lambda line, problem: typer.echo(line, err=problem),
            describe=lambda exc: describe(exc, debug),
        )
    done = len(images) - failures
    if isinstance(baseline_spec, AutoBaseline):
        for fit in baseline_spec.fits.values():
            typer.echo(
                f"Auto baseline {tuple(fit.baseline.shape)}: the largest class probability went "
                f"from {fit.max_prob_before:.4f} (black) to {fit.max_prob_after:.4f}"
            )
        if save_baseline is not None and baseline_spec.fits:
            with fail_cleanly(debug):
                baseline_spec.save(save_baseline)
            typer.echo(f"Saved the auto baseline to {save_baseline}")
    if done:
        plural = "s" * (done != 1)
        typer.echo(f"Wrote the outputs of {done} image{plural} to {out_dir.resolve()}")
    if failures:
        error(f"{failures} of {len(images)} images could not be explained")
        raise typer.Exit(1)


@app.command()
def layers(
    model: ModelOption = "efficientnet_lite0",
    device: DeviceOption = "cpu",
    debug: DebugOption = False,
) -> None:
    """List the layers that can be explained, with their output shapes for a 224x224 image.

    A layer can be explained when it runs once and outputs a spatial map K x h x w with
    h x w > 1. Layers are listed in the order they finish (a block after its parts); the
    last one is the default (--layer auto).
    """
    with fail_cleanly(debug):
        loaded = loading.load_model(model, device)
        found = [i for i in loading.probe_layers(loaded.model) if i.explainable]
    if not found:
        error(f"model {model!r} has no layer with a spatial output")
        raise typer.Exit(1)
    typer.echo(
        f"# {len(found)} layers of {model} that can be explained, in the order they finish, "
        f"with their output K x h x w for a {loading.INPUT_SIZE}x{loading.INPUT_SIZE} image:"
    )
    width = max(len(info.name) for info in found)
    for info in found:
        default = "  (default)" if info is found[-1] else ""
        typer.echo(f"{info.name:<{width}}  {info.describe_shape()}{default}")


@app.command("explain-dataset")
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
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=1,
            help="Torch threads per process. Default: CPU cores / processes on this machine.",
            show_default=False,
        ),
    ] = None,
    debug: DebugOption = False,
) -> None:
    """Explain every image of a folder or list into resumable shards, on one or more processes.

    Writes to --out: run.json (every parameter and the package version), images.jsonl,
    shards/shard-NNNNN.npz (compressed: the 224x224 heatmaps, ids, targets, scores and
    completeness errors) with shards/shard-NNNNN.jsonl, and at the end manifest.jsonl (a
    line per image) and errors.jsonl (images that could not be read, with the reason).
    Read them back with rsigradcam.load_heatmaps(OUT).

    Killed and run again with the same arguments, it skips the finished shards; a run with
    other parameters into the same --out is refused. Under torchrun (--nproc-per-node N,
    --nnodes) every process takes its own shards: gloo on CPU, nccl on GPU.
    """
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
    )
    console = Console(stderr=True)
    with fail_cleanly(debug):
        try:
            summary = dataset.explain_dataset(
                options, progress=console.is_terminal, echo=typer.echo
            )
        except dataset.RankZeroError as stop:  # rank 0 reports why
            raise typer.Exit(stop.exit_code) from None
    if summary.rank != 0:
        return
    processes = f"{summary.world_size} process" + "es" * (summary.world_size != 1)
    skipped = f", {summary.skipped} already done" if summary.skipped else ""
    typer.echo(
        f"Explained {summary.explained} of {summary.images} images in {summary.shards} shards"
        f"{skipped} ({processes}, {summary.seconds:.1f} s, "
        f"{summary.images_per_second:.2f} images/s) -> {summary.out.resolve()}"
    )
    if summary.failed:
        plural = "s" * (summary.failed != 1)
        error(
            f"{summary.failed} image{plural} could not be read or explained; see "
            f"{summary.out.resolve() / 'errors.jsonl'}"
        )


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for figures, overlays, heatmaps and JSON.")
    ] = Path("rsigradcam-output/demo"),
    steps: Annotated[int, typer.Option("--steps", min=1, help="RSI-Grad-CAM steps m.")] = 50,
    debug: DebugOption = False,
) -> None:
    """Explain bundled photos (and the paper samples, when found) with the embedded model.

    For scikit-image's chelsea, coffee and camera photos, and the six paper samples when a
    shared/data/paper-samples folder is found, writes a figure grid (layers blocks.5,
    blocks.10 and head; Grad-CAM and RSI-Grad-CAM), overlays, heatmaps and JSON to --out.
    """
    samples = find_paper_samples()
    typer.echo(
        "Explaining scikit-image photos"
        + (f" and the paper samples in {samples}" if samples else "")
        + f" with EfficientNet-Lite0 (ImageNet weights), layers {', '.join(DEMO_LAYERS)}, "
        f"Grad-CAM and RSI-Grad-CAM (m={steps}, trapezoid, softmax, black baseline)."
    )
    with fail_cleanly(debug):
        results = run_demo(
            explaining.prepare_output_dir(out), samples=samples, steps=steps, progress=typer.echo
        )
    typer.echo(f"\nWrote {len(results)} figure grids, overlays (.png), heatmaps (.npy) and")
    typer.echo(f"summaries (.json) to {out.resolve()}")
    for r in results:
        typer.echo(f"  {r.grid}")


def _step_list(text: str) -> tuple[int, ...]:
    """``--stability-steps`` as integers: ``"8,16,50"``; ``""`` or ``"none"`` for none."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        usage_error(f"--stability-steps must be a comma list of integers, got {text!r}")
    if any(v < 1 for v in values):
        usage_error(f"--stability-steps must be positive, got {text!r}")
    return values


@app.command("evaluate")
def evaluate_command(
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            help="A folder of images (searched recursively) or a CSV list file. Default: "
            "scikit-image photos, and the paper samples when a shared/data/paper-samples "
            "folder is found.",
            show_default=False,
        ),
    ] = None,
    model: ModelOption = "efficientnet_lite0",
    layer: Annotated[
        list[str] | None,
        layer_option(
            "blocks.5, blocks.10 and head for efficientnet_lite0, the last layer with a "
            "spatial map otherwise."
        ),
    ] = None,
    methods: Annotated[
        list[str] | None, methods_option("--methods", "--method", "-m", default="all")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for results.json and report.html.")
    ] = Path("rsigradcam-evaluation"),
    steps: Annotated[
        int, typer.Option("--steps", "-s", min=1, help="Path steps m of rsi, integrated-gradcam "
                          "and ig.")
    ] = 50,
    output: OutputOption = OutputChoice.softmax,
    max_images: Annotated[
        int | None,
        typer.Option("--max-images", min=1, help="Use only the first N images.",
                     show_default=False),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every random draw.")] = 0,
    device: DeviceOption = "cpu",
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="Skip the slowest parts: the randomisation test and the m sweep; at most 2 "
            "grids.",
        ),
    ] = False,
    sanity: Annotated[
        bool, typer.Option("--sanity/--no-sanity", help="Run the cascading randomisation test.")
    ] = True,
    stability: Annotated[
        bool,
        typer.Option("--stability/--no-stability", help="Measure Grad-CAM's and RSI's stability."),
    ] = True,
    curve_points: Annotated[
        int, typer.Option("--curve-points", min=2, help="Steps of deletion/insertion curves.")
    ] = 16,
    max_grids: Annotated[
        int, typer.Option("--max-grids", min=0, help="At most N GridPG grids (0: none).")
    ] = 3,
    sanity_images: Annotated[
        int, typer.Option("--sanity-images", min=1, help="Images of the randomisation test.")
    ] = 3,
    sanity_stages: Annotated[
        int, typer.Option(
            "--sanity-stages", min=1,
            help="Stages of the cascading randomisation test, evenly spaced from the output.",
        )
    ] = 6,
    stability_steps: Annotated[
        str,
        typer.Option("--stability-steps", help="The m compared with --reference-steps "
                     "(comma list; 'none' to skip)."),
    ] = "8,16,32,50,100",
    reference_steps: Annotated[
        int, typer.Option("--reference-steps", min=1, help="The reference m.")
    ] = 512,
    steps_images: Annotated[
        int, typer.Option("--steps-images", min=1, help="Images of the m comparison.")
    ] = 4,
    noise_samples: Annotated[
        int, typer.Option("--noise-samples", min=1, help="Noise draws of max-sensitivity.")
    ] = 5,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", min=1, help="Bootstrap resamples per interval.")
    ] = 1000,
    debug: DebugOption = False,
) -> None:
    """Score every method with every metric; write results.json and report.html.

    Explains the images with each method at each layer (Integrated Gradients at the
    input), then measures deletion and insertion AUC (and the random-order baseline),
    Average Drop and Increase in Confidence, GridPG on 2x2 grids of the images, cascading
    randomisation on a few images, and for Grad-CAM and RSI-Grad-CAM the float32 vs
    float64 difference, the difference from the --reference-steps map and
    max-sensitivity. Means come with 95% bootstrap intervals; the paper's claims (better
    focused, more stable) get a verdict per layer from paired intervals of RSI-Grad-CAM
    minus Grad-CAM. Writes results.json, report.html (self-contained) and summary.md to
    --out. The same arguments and --seed give the same numbers.
    """
    from rsigradcam.app.evaluation import EvaluationOptions, evaluate, write_evaluation

    if images is not None and not images.exists():
        usage_error(f"--images {str(images)!r} not found")
    console = Console(stderr=True)
    with fail_cleanly(debug):
        options = EvaluationOptions(
            model=model,
            images=images,
            layers=tuple(layer or ()),
            methods=loading.parse_methods(methods or ["all"]),
            steps=steps,
            output=output.value,
            device=device,
            seed=seed,
            max_images=max_images,
            curve_points=curve_points,
            max_grids=min(max_grids, 2) if quick else max_grids,
            sanity=sanity and not quick,
            sanity_images=sanity_images,
            sanity_stages=sanity_stages,
            stability=stability,
            stability_steps=() if quick else _step_list(stability_steps),
            reference_steps=reference_steps,
            steps_images=steps_images,
            noise_samples=noise_samples,
            bootstrap=bootstrap,
        )
        options.check()
        out_dir = explaining.prepare_output_dir(out)
        found = evaluate(options, echo=typer.echo, progress=console.is_terminal, out=out_dir)
        files = write_evaluation(found, out_dir)
    for note in found.results.notes:
        typer.echo(f"note: {one_line(note)}", err=True)
    for claim in found.results.claims:
        typer.echo(claim.verdict_line())
    typer.echo(
        f"Wrote {files['results'].name}, {files['report'].name} and {files['summary'].name} "
        f"to {out_dir.resolve()} ({found.results.timings['total']:.1f} s)"
    )


@app.command()
def bench(
    out: Annotated[Path, typer.Option("--out", help="Folder for results.md/json.")] = Path(
        "benchmarks"
    ),
    device: DeviceOption = "cpu",
    layer: Annotated[str, typer.Option("--layer", help="Layer of the speed table.")] = "head",
    steps: Annotated[int, typer.Option("--steps", min=1, help="m of the speed table.")] = 50,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Timed repeats.")] = 5,
    convergence: Annotated[
        bool,
        typer.Option(
            "--convergence/--no-convergence",
            help="Also measure convergence against m=512 on the sample images (slow).",
        ),
    ] = True,
    debug: DebugOption = False,
) -> None:
    """Measure speed, peak memory, convergence and precision; write results.md and .json.

    Compares RSIGradCAM with an official-style loop (one point at a time, full backward),
    Captum's LayerConductance on the same points, a plain no-grad forward of the same points
    (the floor) and Grad-CAM, on the embedded model.
    """
    from rsigradcam.app.bench import run_benchmark

    with fail_cleanly(debug):
        run_benchmark(device, layer, steps, repeats, out, convergence, progress=typer.echo)


def main() -> None:
    """Entry point of the ``rsigradcam`` console script."""
    app()


if __name__ == "__main__":
    main()
