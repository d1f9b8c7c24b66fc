"""Write what :class:`~rsigradcam.app.explain.ImageExplainer` found, and run it over files.

:func:`write_outputs` writes one image's overlays, heatmaps, figure grid and JSON summary
(each file atomically); :func:`explain_images` explains and writes a list of image files
under a progress bar, one line per image.

Example:
    >>> from rsigradcam.app.outputs import prepare_output_dir, write_outputs
    >>> files = write_outputs(found, prepare_output_dir("out"))  # doctest: +SKIP
    >>> files.summary                                             # doctest: +SKIP
    PosixPath('out/cat.json')
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rsigradcam.app.arrays import array_format, file_stem
from rsigradcam.app.errors import InputError
from rsigradcam.app.explain import ImageExplainer, ImageExplanation
from rsigradcam.app.figures import grid_caption, zero_note
from rsigradcam.app.volume_figures import save_array_figure
from rsigradcam.files import finite, one_line, save_json, save_npy, save_png
from rsigradcam.methods import METHODS
from rsigradcam.progress import make_progress
from rsigradcam.serialization import encode
from rsigradcam.viz import GridCell, overlay, save_grid

__all__ = [
    "Echo",
    "OutputFiles",
    "explain_images",
    "output_names",
    "prepare_output_dir",
    "summary_line",
    "write_outputs",
]


@dataclass(frozen=True)
class OutputFiles:
    """The files :func:`write_outputs` wrote for one image."""

    summary: Path
    overlays: list[Path]
    heatmaps: list[Path]
    grid: Path | None


def prepare_output_dir(path: str | Path) -> Path:
    """Create the output folder if needed and check that files can be written in it.

    Raises:
        InputError: The folder cannot be created (e.g. a file is in the way) or written.

    Example:
        >>> prepare_output_dir(tmp_path / "out")  # doctest: +SKIP
    """
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, FileExistsError) or (out.exists() and not out.is_dir()):
            reason = "a file with that name is in the way"
        raise InputError(f"cannot write to the output folder '{out}': {reason}") from exc
    return out


def _file_part(text: str) -> str:
    return re.sub(r"[^\w.+-]", "_", text)


def write_outputs(
    result: ImageExplanation, out_dir: str | Path, grid: bool | None = None
) -> OutputFiles:
    """Write the overlays, heatmaps, JSON summary and figure grid of one image.

    Files, for each explained layer and method (a registry name, e.g. ``rsi``):

    - ``{name}_{layer}_{method}.png``: the heatmap in the jet colormap, blended on the image;
    - ``{name}_{layer}_{method}.npy``: the raw heatmap, float32 ``(H, W)`` in [0, 1] at
      the model's input size (224 x 224 unless ``--size`` says otherwise);

    and once per image:

    - ``{name}.json``: the top-5 classes, the explained class, ``grad_relu`` and ``guided``,
      the input size, mean and std (``null``: not normalised), and per layer and method
      the steps (``null`` for a method without a path), the completeness error (``null``
      where it does not apply, as for Grad-CAM) and ``completeness_note`` (why it is
      ``null`` for ``rsi`` or ``ig``: a variant, or a layer the score can bypass; else
      ``null``), the scores and the file names; the warnings; the time taken;
    - ``{name}_grid.png``: rows = :attr:`ImageExplanation.rows` (the layers, then
      ``input`` for ``ig``), columns = the image, then each method titled by its label.

    Every file is written atomically; if one fails, the files already written for this
    image are removed, so a failed image leaves nothing behind.

    Args:
        result: From :class:`ImageExplainer`.
        out_dir: An existing folder.
        grid: Write the grid; ``None`` writes it when there are several maps.

    Example:
        >>> files = write_outputs(explainer("cat.jpg"), "out")  # doctest: +SKIP
    """
    out = Path(out_dir)
    methods = list(result.explanations)
    maps = sum(len(found) for found in result.explanations.values())
    want_grid = (grid if grid is not None else maps > 1) and result.array is None
    written: list[Path] = []
    try:
        entries, overlays, heatmaps, rows = [], [], [], []
        for layer in result.rows:
            row = [GridCell(result.rgb, result.title)]
            for method in methods:
                exp = result.explanations[method].get(layer)
                if exp is None:
                    continue
                path_method = METHODS[method].takes_steps
                heatmap = exp.heatmap[0].numpy()
                base = f"{result.name}_{_file_part(layer)}_{method}"
                if result.array is not None:  # slices, an overlay or a signal plot
                    figure = save_array_figure(result, method, layer, exp, out / f"{base}.png")
                    overlays.append(figure)
                else:
                    colours = overlay(result.rgb, heatmap)
                    # At the image's own size, the heatmap upsampled bilinearly.
                    original = result.original
                    picture = colours if original is None else overlay(original, heatmap)
                    overlays.append(save_png(picture, out / f"{base}.png"))
                written.append(overlays[-1])
                heatmaps.append(save_npy(heatmap, out / f"{base}.npy"))
                written.append(heatmaps[-1])
                error = finite(float(exp.completeness_error[0]))  # NaN where it does not apply
                entries.append(
                    {
                        "method": method,
                        "layer": layer,
                        "layer_shape": list(exp.attributions.shape[1:]),
                        "steps": result.steps if path_method else None,
                        "evaluations": exp.n_evaluations,
                        "score": finite(float(exp.scores[0])),
                        "baseline_score": finite(float(exp.baseline_scores[0])),
                        "completeness_error": error,
                        "completeness_note": exp.completeness_note or None,
                        "overlay": overlays[-1].name,
                        "heatmap": heatmaps[-1].name,
                    }
                )
                title = METHODS[method].label + result.variants.caption(method)
                if path_method:
                    title += f" m={result.steps}" + (
                        f", err {error:.3f}" if error is not None else ""
                    )
                if result.array is None:
                    row.append(GridCell(colours, title, zero_note(heatmap)))
            rows.append(row)
        grid_path = None
        if want_grid:
            grid_path = save_grid(
                rows,
                out / f"{result.name}_grid.png",
                row_labels=result.rows,
                suptitle=result.name,
                caption=grid_caption(result),
            )
            written.append(grid_path)
        summary = save_json(
            {
                "image": result.source,
                "top5": [encode(score) for score in result.top5],
                "explained_class": encode(result.explained),
                "output": result.output,
                "baseline": result.baseline,
                "steps": result.steps,
                **encode(result.variants),
                **encode(result.input_format),
                **({} if result.array is None else array_format(result.array)),
                "layers": list(result.layers),
                "methods": methods,
                "explanations": entries,
                "grid": grid_path.name if grid_path is not None else None,
                "warnings": list(result.warnings),
                "seconds": round(result.seconds, 3),
            },
            out / f"{result.name}.json",
        )
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return OutputFiles(summary, overlays, heatmaps, grid_path)


# --------------------------------------------------------------------------------------
# A list of image files
# --------------------------------------------------------------------------------------

#: ``echo(line, problem)``: print one line; ``problem`` lines go to stderr.
Echo = Callable[[str, bool], None]


def output_names(images: Sequence[Path]) -> list[str]:
    """File base names: the image file names without suffix, made unique with -2, -3...

    Example:
        >>> output_names([Path("a/cat.jpg"), Path("b/cat.png"), Path("dog.jpg")])
        ['cat', 'cat-2', 'dog']
    """
    names: list[str] = []
    for path in images:
        stem = file_stem(path)  # scan.nii.gz: scan
        name, n = stem, 1
        while name in names:
            n += 1
            name = f"{stem}-{n}"
        names.append(name)
    return names


def summary_line(path: Path, found: ImageExplanation, summary: Path) -> str:
    """``cat.jpg: Egyptian cat 285 (p=0.799), RSI completeness error head 0.006, 3.1 s -> ...``.

    Where the error does not apply (a variant, a layer the score can bypass) the layer
    reads ``n/a``; the warning lines printed with it say why.
    """
    errors = [
        f"{layer} {error:.3f}" if math.isfinite(error) else f"{layer} n/a"
        for layer, exp in found.explanations.get("rsi", {}).items()
        if math.isfinite(error := float(exp.completeness_error[0])) or exp.completeness_note
    ]
    return (
        f"{path}: {found.explained.name or 'class'} {found.explained.class_id} "
        f"(p={found.explained.probability:.3f})"
        + (f", RSI completeness error {', '.join(errors)}" if errors else "")
        + f", {found.seconds:.1f} s -> {summary}"
    )


def explain_images(
    explainer: ImageExplainer,
    images: Sequence[Path],
    out_dir: Path,
    class_id: int | None,
    echo: Echo,
    describe: Callable[[Exception], str],
) -> int:
    """Explain and write each image under a progress bar; return the number of failures.

    An image that fails (unreadable, or any error while explaining or writing it) is
    reported as ``error: {describe(exc)}`` and skipped; an interrupt stops the loop. On a
    terminal the bar (images x model evaluations) is drawn on stderr and the lines are
    printed above it; otherwise there is no bar and the lines go to ``echo``.

    Args:
        explainer: Built for the model, layers and methods.
        images: Existing image files (see :func:`rsigradcam.app.options.image_files`).
        out_dir: A writable folder (see :func:`prepare_output_dir`).
        class_id: The class to explain; ``None``: each image's top-1 class.
        echo: Prints a line when there is no terminal.
        describe: One line for an exception.

    Example:
        >>> explain_images(explainer, [Path("cat.jpg")], Path("out"), None,
        ...                lambda line, problem: print(line), str)  # doctest: +SKIP
        0
    """
    progress = make_progress(unit="model evaluations")
    console = progress.console

    def show(line: str, problem: bool = False) -> None:
        if console.is_terminal:
            console.print(one_line(line), markup=False, highlight=False, soft_wrap=True)
        else:
            echo(one_line(line), problem)

    failures = 0
    per_image = explainer.evaluations_per_image
    with progress:
        task = progress.add_task("", total=len(images) * per_image)
        for index, (path, name) in enumerate(zip(images, output_names(images), strict=True)):
            progress.update(task, description=path.name, completed=index * per_image)
            try:
                found = explainer(
                    path, name, class_id, progress=lambda n: progress.advance(task, n)
                )
                files = write_outputs(found, out_dir)
            except Exception as exc:
                show(f"error: {describe(exc)}", problem=True)
                failures += 1
                continue
            for warning in found.warnings:
                show(f"warning: {path}: {warning}", problem=True)
            show(summary_line(path, found, files.summary))
    return failures
