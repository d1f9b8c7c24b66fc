"""The ``rsigradcam`` command line, typer only: parse the arguments, call, print.

The work is done by the application's modules (:mod:`rsigradcam.app.explain`,
:mod:`~rsigradcam.app.outputs`, :mod:`~rsigradcam.app.loading`, the dataset runner, the
evaluation, the demo, the benchmark). Commands: ``explain`` (overlays, heatmaps, JSON and
figure grids for image files), ``layers`` (the layers of a model that can be explained),
``explain-dataset`` (a folder of images, in resumable shards, on one or several
processes), ``evaluate`` (every method scored by every metric, with an HTML report,
registered from :mod:`~rsigradcam.app.cli_evaluate`), ``demo``, ``bench`` and ``app``
(the explorer in the browser, :mod:`rsigradcam.app.web`). ``--method``
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

import sys
from pathlib import Path
from typing import Annotated

import typer

# Only typer and the light cli_support here: the commands import torch and the library
# when they run, so that --help and a usage error answer at once (see tests).
from rsigradcam.app.commands.evaluate import evaluate_command
from rsigradcam.app.folders import removed_if_left_empty
from rsigradcam.app.options import (
    LAST_SPATIAL,
    CompileOption,
    DebugOption,
    DeviceOption,
    FoldBatchnormOption,
    GradReluOption,
    GuidedOption,
    HeatmapDtypeChoice,
    LayerFilterOption,
    MeanOption,
    ModelOption,
    NoNormalizeOption,
    OneLineErrors,
    OutputChoice,
    OutputOption,
    OverlaySizeChoice,
    OverlaySizeOption,
    SizeOption,
    StdOption,
    check_image_files,
    check_steps_option,
    describe,
    error,
    fail_cleanly,
    layer_option,
    methods_option,
    plural,
    usage_error,
)

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
    overlay_size: OverlaySizeOption = OverlaySizeChoice.model,
    grad_relu: GradReluOption = False,
    guided: GuidedOption = False,
    device: DeviceOption = "cpu",
    model: ModelOption = "efficientnet_lite0",
    size: SizeOption = None,
    mean: MeanOption = None,
    std: StdOption = None,
    no_normalize: NoNormalizeOption = False,
    compile_model: CompileOption = False,
    fold_batchnorm: FoldBatchnormOption = None,
    debug: DebugOption = False,
) -> None:
    """Explain why a classifier chose a class: overlays, heatmaps, JSON and figure grids.

    Writes to --out, for each image NAME.ext and each layer and method:
    NAME_LAYER_METHOD.png (the heatmap in the jet colormap over the image) and
    NAME_LAYER_METHOD.npy (the raw heatmap in [0, 1], at the input size); ig explains the
    input, as LAYER 'input'. Per image NAME.json (top-5 classes, the explained class, the
    options, per layer and method the steps and completeness error, the time taken) and,
    with several layers or methods, NAME_grid.png (rows = layers, columns = the image,
    then one per method). Images are resized to --size (224x224) and normalised with
    --mean and --std (the ImageNet ones), or not with --no-normalize; the black baseline
    is black in the same normalisation. --grad-relu and --guided (the authors' variants)
    change rsi only; its completeness error is then null.

    An image that cannot be read is reported and skipped; the others are still explained
    and the exit code is 1.
    """
    check_steps_option(steps)
    check_image_files(images)
    if save_baseline is not None and baseline != "auto":
        usage_error("--save-baseline needs --baseline auto")
    from rsigradcam.app import explain as explaining
    from rsigradcam.app import outputs
    from rsigradcam.app.loading.baselines import resolve_baseline
    from rsigradcam.app.loading.classes import resolve_class
    from rsigradcam.app.loading.layers import check_layers, probe_layers
    from rsigradcam.app.loading.methods import parse_methods
    from rsigradcam.app.loading.models import load_model
    from rsigradcam.baselines import AutoBaseline
    with fail_cleanly(debug):
        from rsigradcam.app.settings import Variants, input_format

        methods = parse_methods(method or ["rsi"])
        variants = Variants(grad_relu, guided)
        variants.check(methods)
        fmt = input_format(size, mean, std, no_normalize)
        loaded = load_model(model, device, fmt.size)
        layers = check_layers(layer or [], probe_layers(loaded.model, fmt.size))
        class_id = (
            resolve_class(target, loaded.class_names, loaded.num_classes)
            if target is not None
            else None
        )
        baseline_spec = resolve_baseline(baseline, loaded)
        explainer = explaining.ImageExplainer(
            loaded, layers, methods, steps, output.value, baseline_spec, baseline_name=baseline,
            variants=variants, input_format=fmt, overlay_size=overlay_size.value,
            speed={"compile": compile_model, "fold_batchnorm": fold_batchnorm},
        )
    with removed_if_left_empty(out), fail_cleanly(debug):  # a failed run leaves no empty --out
        out_dir = outputs.prepare_output_dir(out)
        failures = outputs.explain_images(
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
        typer.echo(f"Wrote the outputs of {plural(done, 'image')} to {out_dir.resolve()}")
    if failures:
        error(f"{failures} of {plural(len(images), 'image')} could not be explained")
        raise typer.Exit(1)


@app.command()
def layers(
    model: ModelOption = "efficientnet_lite0",
    device: DeviceOption = "cpu",
    size: SizeOption = None,
    mean: MeanOption = None,
    std: StdOption = None,
    no_normalize: NoNormalizeOption = False,
    pattern: LayerFilterOption = None,
    debug: DebugOption = False,
) -> None:
    """List the layers that can be explained, their module types and output shapes.

    --size gives another input size (the shapes follow it); --mean, --std and
    --no-normalize are accepted as in the other commands and do not change the shapes.

    A layer can be explained when it runs once and outputs a spatial map K x h x w with
    h x w > 1. Layers are listed in the order they finish (a block after its parts); the
    last one is the default (--layer auto).
    """
    from rsigradcam.app.layer_list import layer_lines
    from rsigradcam.app.loading.layers import probe_layers
    from rsigradcam.app.loading.models import load_model

    with fail_cleanly(debug):
        from rsigradcam.app.settings import input_format

        fmt = input_format(size, mean, std, no_normalize)
        loaded = load_model(model, device, fmt.size)
        found = [i for i in probe_layers(loaded.model, fmt.size) if i.explainable]
    if not found:
        error(f"model {model!r} has no layer with a spatial output")
        raise typer.Exit(1)
    lines = layer_lines(loaded.model, found, pattern)
    if not lines:
        error(f"no layer of {model} matches --filter {pattern!r}; run without --filter to see "
              f"all {plural(len(found), 'layer')}")
        raise typer.Exit(1)
    matching = f" matching {pattern!r}" if pattern else ""
    typer.echo(
        f"# {plural(len(lines), 'layer')} of {model} that can be explained{matching}, in the "
        f"order they finish, with their type and output K x h x w for a {fmt.size_text} image:"
    )
    for line in lines:
        typer.echo(line)


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
    check_steps_option(steps)
    from rsigradcam.app.demo import run_demo
    from rsigradcam.app.outputs import prepare_output_dir
    from rsigradcam.app.samples import DEMO_LAYERS, find_paper_samples

    samples = find_paper_samples()
    typer.echo(
        "Explaining scikit-image photos"
        + (f" and the paper samples in {samples}" if samples else "")
        + f" with EfficientNet-Lite0 (ImageNet weights), layers {', '.join(DEMO_LAYERS)}, "
        f"Grad-CAM and RSI-Grad-CAM (m={steps}, trapezoid, softmax, black baseline)."
    )
    with removed_if_left_empty(out), fail_cleanly(debug):  # a failed run leaves no empty --out
        results = run_demo(
            prepare_output_dir(out), samples=samples, steps=steps, progress=typer.echo
        )
    typer.echo(f"\nWrote {len(results)} figure grids, overlays (.png), heatmaps (.npy) and")
    typer.echo(f"summaries (.json) to {out.resolve()}")
    for r in results:
        typer.echo(f"  {r.grid}")


app.command("evaluate")(evaluate_command)


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
    check_steps_option(steps)
    from rsigradcam.app.bench import run_benchmark

    with fail_cleanly(debug):
        run_benchmark(device, layer, steps, repeats, out, convergence, progress=typer.echo)


@app.command("app")
def app_command(
    model: ModelOption = "efficientnet_lite0",
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to listen on; 127.0.0.1 serves this machine only, 0.0.0.0 every "
            "network it is on.",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port.")] = 7860,
    device: DeviceOption = "cpu",
    size: SizeOption = None,
    mean: MeanOption = None,
    std: StdOption = None,
    no_normalize: NoNormalizeOption = False,
    debug: DebugOption = False,
) -> None:
    """Explore explanations in the browser: classes, layers, methods, steps, the path.

    Serves a page (Gradio) at http://HOST:PORT/: upload or drop an image or pick a
    sample, click one of its top-5 classes, choose layers, methods, steps (or auto),
    output, baseline and the rsi variants; see the overlays side by side, the completeness
    error and evaluations of each map, the class score along the path with the points
    each path method evaluated, and on request the maps' convergence as m grows; download
    PNG, NPY and JSON. Scripts call the endpoint /explain with gradio_client. The model is
    loaded once; one request runs at a time, the others wait in a queue. Needs the app
    extra: pip install 'rsigradcam[app]'. Stop with Ctrl+C.
    """
    from rsigradcam.app.web.server import check_gradio, serve

    with fail_cleanly(debug):
        check_gradio()
        from rsigradcam.app.settings import input_format

        fmt = input_format(size, mean, std, no_normalize)
        serve(model, host, port, device, fmt, echo=typer.echo)


def main() -> None:
    """Entry point of the ``rsigradcam`` console script.

    Every command but ``bench`` first lets the process keep the memory it frees
    (:mod:`rsigradcam.app.allocator`): a path pass frees and allocates the same activations
    chunk after chunk.
    """
    if "bench" not in sys.argv[1:2]:
        from rsigradcam.app.allocator import keep_freed_memory

        keep_freed_memory()
    app()


if __name__ == "__main__":
    main()
