"""``rsigradcam explain`` and ``rsigradcam layers``: explain image files, list a model's layers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from rsigradcam.app.folders import removed_if_left_empty
from rsigradcam.app.option_groups import ModelInput, RsiVariants, SpeedFlags, with_option_groups
from rsigradcam.app.options import (
    DebugOption,
    LayerFilterOption,
    LayerOption,
    MethodOption,
    OutputChoice,
    OutputOption,
    OverlaySizeChoice,
    OverlaySizeOption,
    StepsOption,
    ThreadsOption,
    describe,
    error,
    fail_cleanly,
    image_files,
    plural,
    say_if_busy,
    usage_error,
)
from rsigradcam.app.threads import use_threads

__all__ = ["explain", "layers"]


@with_option_groups
def explain(
    images: Annotated[
        list[Path],
        typer.Argument(
            metavar="IMAGE",
            help="Image files (PNG, JPEG, ...), folders (the image files directly in them), or "
            "arrays (C, *S): .npy, NIfTI .nii/.nii.gz.",
            show_default=False,
        ),
    ],
    *,
    layer: LayerOption = None,
    method: MethodOption = None,
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
    target_mask: Annotated[
        Path | None,
        typer.Option(
            "--target-mask",
            help="With --target, for a segmentation model (N, classes, h, w): explain the "
            "class's score summed over this mask (a PNG, non-zero inside, or .npy) at the "
            "input's size or the output's.",
            show_default=False,
        ),
    ] = None,
    steps: StepsOption = 50,
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
    variants: RsiVariants,
    model_input: ModelInput,
    speed: SpeedFlags,
    threads: ThreadsOption = None,
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
    images = image_files(images)
    with fail_cleanly(debug):
        from rsigradcam.app.arrays import check_array_files

        arrays = check_array_files(images)  # .npy, .nii: as they are, at their own shape
    if target_mask is not None and (target is None or not target_mask.is_file()):
        usage_error(f"--target-mask needs --target CLASS and an existing file, got '{target_mask}'")
    if arrays and (model_input.size or model_input.mean or model_input.std):
        usage_error("--size, --mean and --std apply to image files; an array is explained as "
                    "it is, at its own shape")
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
    say_if_busy(threads)
    with fail_cleanly(debug):
        use_threads(threads)
        methods = parse_methods(method or ["rsi"])
        chosen = variants.variants()
        chosen.check(methods)
        from rsigradcam.app.arrays import read_array, read_mask

        given = replace(model_input, no_normalize=True) if arrays else model_input
        fmt = given.input_format()
        shape = read_array(images[0]).shape if arrays else None
        mask = read_mask(target_mask) if target_mask is not None else None
        if mask is not None and shape is None:  # probe a segmentation model at the input size
            shape = (3, *fmt.size)
        label = f"array '{images[0]}'" if arrays else "the image"
        loaded = load_model(model_input.model, model_input.device, fmt.size, shape, label)
        layers = check_layers(layer or [], probe_layers(loaded.model, fmt.size, shape))
        class_id = (
            resolve_class(target, loaded.class_names, loaded.num_classes)
            if target is not None
            else None
        )
        baseline_spec = resolve_baseline(baseline, loaded)
        explainer = explaining.ImageExplainer(
            loaded, layers, methods, steps, output.value, baseline_spec, baseline_name=baseline,
            variants=chosen, input_format=fmt, overlay_size=overlay_size.value,
            speed=speed.speed(), target_mask=mask,
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


@with_option_groups
def layers(
    *,
    model_input: ModelInput,
    pattern: LayerFilterOption = None,
    threads: ThreadsOption = None,
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

    model = model_input.model
    say_if_busy(threads)
    with fail_cleanly(debug):
        use_threads(threads)
        fmt = model_input.input_format()
        loaded = load_model(model, model_input.device, fmt.size)
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
