"""``rsigradcam evaluate``: its options, parsed and handed to :mod:`rsigradcam.app.evaluation`.

Registered on the command group by :mod:`rsigradcam.app.cli`; like every command it imports
torch and the library only when it runs.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from rsigradcam.app.folders import removed_if_left_empty
from rsigradcam.app.option_groups import ModelInput, RsiVariants, with_option_groups
from rsigradcam.app.options import (
    DebugOption,
    OutputChoice,
    OutputOption,
    StepsOption,
    ThreadsOption,
    choice_option,
    error,
    fail_cleanly,
    integer_option,
    layer_option,
    methods_option,
    parse_step_list,
    plural,
    say_if_busy,
    step_list_option,
    steps_option,
    terminated_as_interrupt,
    usage_error,
)

__all__ = ["PresetChoice", "evaluate_command"]

#: ``EvaluationOptions`` fields set by command-line parameters of another name.
_PARAMETER_OF = {"arms": "arm"}


def _with_preset(ctx: typer.Context, options: Any, name: str) -> Any:
    """``options`` with the preset's values, except where the command line set one."""
    from dataclasses import replace

    from rsigradcam.app.evaluation.options import PRESETS

    def given(field: str) -> bool:
        source = ctx.get_parameter_source(_PARAMETER_OF.get(field, field))
        return source is not None and source.name != "DEFAULT"

    chosen = {k: v for k, v in PRESETS[name].items() if not given(k)}
    return replace(options, **chosen, preset=name)


def _with_quick(ctx: typer.Context, options: Any) -> Any:
    """``options`` within ``--quick``'s caps (see its help), except where asked for.

    Applied after a preset, so that a preset (which sets ``max_grids``) never lifts them;
    ``--stability`` given on the command line keeps the stability measures.
    """
    from dataclasses import replace

    source = ctx.get_parameter_source("stability")
    asked = source is not None and source.name != "DEFAULT" and options.stability
    return replace(
        options,
        max_grids=min(options.max_grids, 2),
        sanity=False,
        stability_steps=(),
        stability=bool(asked),
    )


class PresetChoice(str, Enum):
    """``--preset`` values (see :data:`rsigradcam.app.evaluation.options.PRESETS`)."""

    claims = "claims"


@with_option_groups
def evaluate_command(
    ctx: typer.Context,
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
    *,
    model_input: ModelInput,
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
    steps: StepsOption = 50,
    output: OutputOption = OutputChoice.softmax,
    max_images: Annotated[
        int | None,
        integer_option("--max-images", minimum=1, help="Use only the first N images.",
                     show_default=False),
    ] = None,
    seed: Annotated[int, integer_option("--seed", help="Seed of every random draw.")] = 0,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="A quick look: no randomisation test, no m sweep, no stability measures "
            "(float32 vs float64, noise: the slowest part; --stability keeps them) and at "
            "most 2 grids. Deletion, insertion, Average Drop and Increase in Confidence are "
            "all still measured.",
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
        int, integer_option("--curve-points", minimum=2, help="Steps of deletion/insertion curves.")
    ] = 16,
    max_grids: Annotated[
        int, integer_option("--max-grids", minimum=0, help="At most N GridPG grids (0: none).")
    ] = 3,
    sanity_images: Annotated[
        int, integer_option("--sanity-images", minimum=1, help="Images of the randomisation test.")
    ] = 3,
    sanity_stages: Annotated[
        int, integer_option(
            "--sanity-stages", minimum=1,
            help="Stages of the cascading randomisation test, evenly spaced from the output.",
        )
    ] = 6,
    stability_steps: Annotated[
        str,
        step_list_option("--stability-steps", help="The m compared with --reference-steps "
                     "(comma list; 'none' to skip)."),
    ] = "8,16,32,50,100",
    reference_steps: Annotated[
        int, steps_option("--reference-steps", help="The reference m.")
    ] = 512,
    steps_images: Annotated[
        int, integer_option("--steps-images", minimum=1, help="Images of the m comparison.")
    ] = 4,
    noise_samples: Annotated[
        int, integer_option("--noise-samples", minimum=1, help="Noise draws of max-sensitivity.")
    ] = 5,
    bootstrap: Annotated[
        int, integer_option("--bootstrap", minimum=1, help="Bootstrap resamples per interval.")
    ] = 1000,
    variants: RsiVariants,
    arm: Annotated[
        list[str] | None,
        typer.Option(
            "--arm",
            help="An arm METHOD[+grad_relu|+guided][@softmax|@logits], e.g. rsi@logits; "
            "repeat for several. The claims compare each rsi arm with the gradcam arm on the "
            "same output. Default: each --method on --output.",
            show_default=False,
        ),
    ] = None,
    preset: Annotated[
        PresetChoice | None,
        choice_option(
            PresetChoice,
            "--preset",
            help="claims: what the paper's two claims need (five arms, coarser curves, "
            ">= 100 grids, stability on the first 16 images, no randomisation test or m "
            "sweep), 500 images in at most 2.5 h on 2 CPU cores (about 2 h, measured by shard); "
            "the flags you give still win.",
            show_default=False,
        ),
    ] = None,
    stability_images: Annotated[
        int | None,
        integer_option("--stability-images", minimum=1, show_default=False,
                     help="Images of the float32/float64 and max-sensitivity measures (the "
                     "first ones). Default: all."),
    ] = None,
    min_grids: Annotated[
        int, integer_option("--min-grids", minimum=1, help="Lower the grid threshold until this "
                          "many grids exist (or the most possible).")
    ] = 2,
    grid_rounds: Annotated[
        int, integer_option("--grid-rounds", minimum=1, help="Rounds of grid building: an image is "
                          "in at most this many grids.")
    ] = 1,
    shard_size: Annotated[
        int, integer_option("--shard-size", minimum=1, help="Images per shard (the unit a resumed "
                          "run skips when finished).")
    ] = 16,
    threads: ThreadsOption = None,
    debug: DebugOption = False,
) -> None:
    """Score every method (or arm) with every metric; write results.json and report.html.

    Explains the images with each method at each layer (Integrated Gradients at the
    input), then measures deletion and insertion AUC (and the random-order baseline),
    Average Drop and Increase in Confidence, GridPG on 2x2 grids of the images, cascading
    randomisation on a few images, and for Grad-CAM and RSI-Grad-CAM the float32 vs
    float64 difference, the difference from the --reference-steps map and
    max-sensitivity. Means come with 95% bootstrap intervals; the paper's claims (better
    focused, more stable) get a verdict per layer from paired intervals of RSI-Grad-CAM
    minus Grad-CAM. Writes results.json (the summary and verdicts; the per-unit numbers in
    results-units.json.gz), report.html (self-contained) and summary.md to --out. The
    same arguments and --seed give the same numbers. --grad-relu and --guided change rsi
    only; --size, --mean, --std and --no-normalize set the model's input (the
    black baseline and the black deletion substrate follow the normalisation).

    Exit code 0 when every image was evaluated, 1 when some could not be read (each named
    in a note on stderr; the others are evaluated), 2 for a usage error.

    A CSV --images list with a target column explains the labelled classes: the report
    gives the top-1 and top-5 accuracy and judges the claims on the correctly classified
    images. The work is done in shards under --out/shards: run the same command again to
    resume a run that was stopped, or start it with torchrun to share the shards out.
    """
    if images is not None and not images.exists():
        usage_error(f"--images {str(images)!r} not found")
    from rich.console import Console

    from rsigradcam.app.evaluation import EvaluationOptions, evaluate, write_evaluation
    from rsigradcam.app.evaluation.inputs import skipped_images
    from rsigradcam.app.loading.methods import parse_methods
    from rsigradcam.app.outputs import prepare_output_dir
    from rsigradcam.app.runs.distributed import Ranks, RankZeroError
    from rsigradcam.files import one_line

    console = Console(stderr=True)
    ranks = Ranks.from_env()
    if ranks.rank == 0:  # one note, not one per process
        say_if_busy(threads, ranks.local_world_size)
    # A failed, interrupted or terminated start leaves no empty --out (and no run.json).
    with removed_if_left_empty(out), fail_cleanly(debug), terminated_as_interrupt():
        fmt = model_input.input_format()
        options = EvaluationOptions(
            model=model_input.model,
            images=images,
            layers=tuple(layer or ()),
            methods=parse_methods(methods or ["all"]),
            steps=steps,
            output=output.value,
            device=model_input.device,
            seed=seed,
            max_images=max_images,
            curve_points=curve_points,
            max_grids=max_grids,
            sanity=sanity,
            sanity_images=sanity_images,
            sanity_stages=sanity_stages,
            stability=stability,
            stability_steps=() if quick else parse_step_list(stability_steps),
            reference_steps=reference_steps,
            steps_images=steps_images,
            noise_samples=noise_samples,
            bootstrap=bootstrap,
            grad_relu=variants.grad_relu,
            guided=variants.guided,
            arms=tuple(arm or ()),
            stability_images=stability_images,
            min_grids=min_grids,
            grid_rounds=grid_rounds,
            shard_size=shard_size,
            input_size=fmt.size,
            mean=fmt.mean,
            std=fmt.std,
        )
        if preset is not None:
            options = _with_preset(ctx, options, preset.value)
        if quick:
            options = _with_quick(ctx, options)
        options.check()
        out_dir = prepare_output_dir(out)
        try:
            found = evaluate(
                options, echo=typer.echo, progress=console.is_terminal, out=out_dir,
                threads=threads,
            )
        except RankZeroError as stop:  # rank 0 reports why
            raise typer.Exit(stop.exit_code) from None
        if ranks.rank != 0:
            return
        files = write_evaluation(found, out_dir)
    for note in found.results.notes:
        typer.echo(f"note: {one_line(note)}", err=True)
    for claim in found.results.claims:
        typer.echo(claim.verdict_line())
    typer.echo(
        f"Wrote {files['results'].name}, {files['units'].name}, {files['report'].name} and "
        f"{files['summary'].name} "
        f"to {out_dir.resolve()} ({found.results.timings['total']:.1f} s)"
    )
    skipped = skipped_images(found.results.notes)
    if skipped:  # named in the notes above
        error(f"{plural(len(skipped), 'image')} could not be read; the others were evaluated")
        raise typer.Exit(1)
