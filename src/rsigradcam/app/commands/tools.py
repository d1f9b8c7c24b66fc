"""``rsigradcam demo``, ``bench`` and ``app``: the bundled demo, the benchmark, the explorer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsigradcam.app.folders import removed_if_left_empty
from rsigradcam.app.option_groups import ModelInput, with_option_groups
from rsigradcam.app.options import (
    DebugOption,
    DeviceOption,
    StepsOption,
    ThreadsOption,
    fail_cleanly,
    integer_option,
    say_if_busy,
    steps_option,
)
from rsigradcam.app.threads import use_threads

__all__ = ["app_command", "bench", "demo"]


def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for figures, overlays, heatmaps and JSON.")
    ] = Path("rsigradcam-output/demo"),
    steps: StepsOption = 50,
    threads: ThreadsOption = None,
    debug: DebugOption = False,
) -> None:
    """Explain bundled photos (and the paper samples, when found) with the embedded model.

    For scikit-image's chelsea, coffee and camera photos, and the six paper samples when a
    shared/data/paper-samples folder is found, writes a figure grid (layers blocks.5,
    blocks.10 and head; Grad-CAM and RSI-Grad-CAM), overlays, heatmaps and JSON to --out.
    """
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
    say_if_busy(threads)
    with removed_if_left_empty(out), fail_cleanly(debug):  # a failed run leaves no empty --out
        use_threads(threads)
        results = run_demo(
            prepare_output_dir(out), samples=samples, steps=steps, progress=typer.echo
        )
    typer.echo(f"\nWrote {len(results)} figure grids, overlays (.png), heatmaps (.npy) and")
    typer.echo(f"summaries (.json) to {out.resolve()}")
    for r in results:
        typer.echo(f"  {r.grid}")


def bench(
    out: Annotated[Path, typer.Option("--out", help="Folder for results.md/json.")] = Path(
        "benchmarks"
    ),
    device: DeviceOption = "cpu",
    layer: Annotated[str, typer.Option("--layer", help="Layer of the speed table.")] = "head",
    steps: Annotated[int, steps_option("--steps", help="m of the speed table.")] = 50,
    repeats: Annotated[int, integer_option("--repeats", minimum=1, help="Timed repeats.")] = 5,
    convergence: Annotated[
        bool,
        typer.Option(
            "--convergence/--no-convergence",
            help="Also measure convergence against m=512 on the sample images (slow).",
        ),
    ] = True,
    dataset: Annotated[
        Path | None,
        typer.Option(
            "--dataset",
            help="A folder of photos: time explain-dataset on its first --dataset-images "
            "against the no-grad forward of the same points (images/s).",
            show_default=False,
        ),
    ] = None,
    dataset_images: Annotated[
        int, typer.Option("--dataset-images", min=1, help="Photos of --dataset to explain.")
    ] = 256,
    debug: DebugOption = False,
) -> None:
    """Measure speed, peak memory, convergence and precision; write results.md and .json.

    Compares RSIGradCAM with an official-style loop (one point at a time, full backward),
    Captum's LayerConductance on the same points, a plain no-grad forward of the same points
    (the floor) and Grad-CAM, on the embedded model.
    """
    from rsigradcam.app.bench import run_benchmark

    with fail_cleanly(debug):
        run_benchmark(
            device, layer, steps, repeats, out, convergence, progress=typer.echo,
            dataset=dataset, dataset_images=dataset_images,
        )


@with_option_groups
def app_command(
    *,
    model_input: ModelInput,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to listen on; 127.0.0.1 serves this machine only, 0.0.0.0 every "
            "network it is on.",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, integer_option("--port", minimum=1, maximum=65535, help="Port.")
    ] = 7860,
    max_queue: Annotated[
        int,
        integer_option(
            "--max-queue",
            minimum=1,
            help="Requests that may wait while the model is busy; one more is refused at "
            "once ('Queue is full! Please try again.').",
        ),
    ] = 8,
    concurrency: Annotated[
        int,
        integer_option(
            "--concurrency",
            minimum=1,
            help="Requests that run at once, each on its own copy of the model (memory "
            "grows with it; on a CPU they share its cores).",
        ),
    ] = 1,
    threads: ThreadsOption = None,
    debug: DebugOption = False,
) -> None:
    """Explore explanations in the browser: classes, layers, methods, steps, the path.

    Serves a page (Gradio) at http://HOST:PORT/: upload or drop an image or pick a
    sample, click one of its top-5 classes, choose layers, methods, steps (or auto),
    output, baseline and the rsi variants; see the overlays side by side, the completeness
    error and evaluations of each map, the class score along the path with the points
    each path method evaluated, and on request the maps' convergence as m grows; download
    PNG, NPY and JSON. Scripts call the endpoint /explain with gradio_client. The model is
    loaded once; --concurrency requests run at a time, up to --max-queue others wait, and
    more are refused at once. Needs the app extra: pip install 'rsigradcam[app]'. Stop
    with Ctrl+C.
    """
    from rsigradcam.app.web.server import check_gradio, serve

    say_if_busy(threads)
    with fail_cleanly(debug):
        check_gradio()
        use_threads(threads)
        fmt = model_input.input_format()
        serve(
            model_input.model, host, port, model_input.device, fmt, echo=typer.echo,
            max_queue=max_queue, concurrency=concurrency,
        )
