"""``rsigradcam evaluate``: its options, parsed and handed to :mod:`rsigradcam.app.evaluation`.

Registered on the command group by :mod:`rsigradcam.app.cli`; like every command it imports
torch and the library only when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsigradcam.app.cli_support import (
    DebugOption,
    DeviceOption,
    GradReluOption,
    GuidedOption,
    MeanOption,
    ModelOption,
    NoNormalizeOption,
    OutputChoice,
    OutputOption,
    SizeOption,
    StdOption,
    check_steps_option,
    fail_cleanly,
    layer_option,
    methods_option,
    usage_error,
)
from rsigradcam.app.folders import removed_if_left_empty

__all__ = ["evaluate_command", "step_list"]


def step_list(text: str) -> tuple[int, ...]:
    """``--stability-steps`` as integers: ``"8,16,50"``; ``""`` or ``"none"`` for none."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        usage_error(f"--stability-steps must be a comma list of integers, got {text!r}")
    for value in values:
        check_steps_option(value, "--stability-steps")
    return values


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
    grad_relu: GradReluOption = False,
    guided: GuidedOption = False,
    size: SizeOption = None,
    mean: MeanOption = None,
    std: StdOption = None,
    no_normalize: NoNormalizeOption = False,
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
    --out. The same arguments and --seed give the same numbers. --grad-relu and --guided
    change rsi only; --size, --mean, --std and --no-normalize set the model's input (the
    black baseline and the black deletion substrate follow the normalisation).
    """
    check_steps_option(steps)
    check_steps_option(reference_steps, "--reference-steps")
    if images is not None and not images.exists():
        usage_error(f"--images {str(images)!r} not found")
    from rich.console import Console

    from rsigradcam.app import loading
    from rsigradcam.app.evaluation import EvaluationOptions, evaluate, write_evaluation
    from rsigradcam.app.outputs import prepare_output_dir
    from rsigradcam.app.settings import input_format
    from rsigradcam.files import one_line

    console = Console(stderr=True)
    with removed_if_left_empty(out), fail_cleanly(debug):  # a failed run leaves no empty --out
        fmt = input_format(size, mean, std, no_normalize)
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
            stability_steps=() if quick else step_list(stability_steps),
            reference_steps=reference_steps,
            steps_images=steps_images,
            noise_samples=noise_samples,
            bootstrap=bootstrap,
            grad_relu=grad_relu,
            guided=guided,
            input_size=fmt.size,
            mean=fmt.mean,
            std=fmt.std,
        )
        options.check()
        out_dir = prepare_output_dir(out)
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
