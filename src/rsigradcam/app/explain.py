"""Explain image files end to end: the steps behind ``rsigradcam explain`` and the demo.

:class:`ImageExplainer` classifies one image and explains it at several layers with
any of the registry's methods, :func:`write_outputs` writes what it found (overlays,
heatmaps, a figure grid and a JSON summary), and :func:`explain_images` runs both over a
list of image files under a progress bar.

Example:
    >>> from rsigradcam.app.explain import ImageExplainer, write_outputs
    >>> from rsigradcam.app.loading import load_model
    >>> loaded = load_model("efficientnet_lite0")                      # doctest: +SKIP
    >>> explainer = ImageExplainer(loaded, ["blocks.10", "head"])      # doctest: +SKIP
    >>> files = write_outputs(explainer("cat.jpg"), "out")             # doctest: +SKIP
    >>> files.summary                                                  # doctest: +SKIP
    PosixPath('out/cat.json')
"""

from __future__ import annotations

import re
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsigradcam.app.loading import (
    INPUT_SIZE,
    InputError,
    LoadedModel,
)
from rsigradcam.baselines import AutoBaseline, BaselineSpec
from rsigradcam.core.targets import Output
from rsigradcam.explanation import Explanation
from rsigradcam.files import finite, one_line, save_json, save_npy, save_png
from rsigradcam.io import ImageSource, load_image
from rsigradcam.methods import METHODS, BaseCAM, create_cam
from rsigradcam.progress import make_progress
from rsigradcam.viz import GridCell, overlay, save_grid

__all__ = [
    "ClassScore",
    "Echo",
    "ImageExplainer",
    "ImageExplanation",
    "OutputFiles",
    "check_images",
    "explain_images",
    "output_names",
    "prepare_output_dir",
    "summary_line",
    "write_outputs",
]


# --------------------------------------------------------------------------------------
# Explaining one image
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassScore:
    """A class with its softmax probability for one image."""

    class_id: int
    name: str | None
    probability: float

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"class_id", "class", "probability"}``."""
        return {"class_id": self.class_id, "class": self.name, "probability": self.probability}


@dataclass(frozen=True)
class ImageExplanation:
    """What :class:`ImageExplainer` found for one image (everything on the CPU).

    Attributes:
        name: Base name of the output files, e.g. ``"cat"``.
        source: Where the image came from (the path, or a description).
        rgb: The resized ``(H, W, 3)`` uint8 image the model saw.
        top5: The five most probable classes (fewer when the model has fewer).
        explained: The explained class.
        layers: The explained layers, in order.
        explanations: ``explanations[method][layer]``, one image each, in the order the
            methods were given; a method that explains the input (``ig``) has the one
            layer ``"input"``.
        steps: Path steps m of the methods that integrate (``rsi``, ``integrated-gradcam``,
            ``ig``).
        output: ``"softmax"`` or ``"logits"``: the explained score.
        seconds: Wall time for decoding, classifying and explaining.
        warnings: Warnings raised while explaining (e.g. a map that is zero everywhere).
        baseline: The path methods' baseline, as named by the user (``"black"``, ``"auto"``,
            a file path, ...).
    """

    name: str
    source: str
    rgb: np.ndarray
    top5: list[ClassScore]
    explained: ClassScore
    layers: tuple[str, ...]
    explanations: dict[str, dict[str, Explanation]]
    steps: int
    output: Output
    seconds: float
    warnings: tuple[str, ...] = ()
    baseline: str = "black"

    @property
    def title(self) -> str:
        """``"Egyptian cat (p=0.80)"``: the explained class and its probability."""
        name = self.explained.name or f"class {self.explained.class_id}"
        return f"{name} (p={self.explained.probability:.2f})"

    @property
    def rows(self) -> list[str]:
        """The figure rows: :attr:`layers`, then any other explained layer (``"input"``)."""
        names = dict.fromkeys(self.layers)
        for found in self.explanations.values():
            names.update(dict.fromkeys(found))
        return list(names)


def _baseline_name(baseline: BaselineSpec) -> str:
    if isinstance(baseline, str):
        return baseline
    if isinstance(baseline, AutoBaseline):
        return "auto"
    if isinstance(baseline, torch.Tensor):
        return "tensor"
    return type(baseline).__name__


class ImageExplainer:
    """Classify images and explain one class with any of the registry's methods.

    Each method is built once, with :func:`~rsigradcam.methods.create_cam`; each call
    runs it once over all ``layers`` together (a method that explains the input, such as
    ``ig``, explains ``"input"``).

    Args:
        loaded: The model, from :func:`load_model`.
        layers: Layer names, checked with :func:`check_layers`.
        methods: Names from :data:`rsigradcam.methods.METHODS`, in the order of the
            figure columns; default Grad-CAM and RSI-Grad-CAM.
        steps: Path steps m of the methods that integrate (trapezoid rule).
        output: Explain the ``"softmax"`` probability (the paper) or the ``"logits"``;
            used by every method so that their maps explain the same score.
        baseline: The path methods' baseline (see :mod:`rsigradcam.baselines`).
        baseline_name: How the outputs name it (default: the name given as ``baseline``,
            ``"auto"`` for an :class:`~rsigradcam.baselines.AutoBaseline`, else its type).

    Example:
        >>> explainer = ImageExplainer(load_model(), ["head"], steps=50)  # doctest: +SKIP
        >>> explainer("cat.jpg").explained                                 # doctest: +SKIP
        ClassScore(class_id=285, name='Egyptian cat', probability=0.79...)
    """

    def __init__(
        self,
        loaded: LoadedModel,
        layers: Sequence[str],
        methods: Sequence[str] = ("gradcam", "rsi"),
        steps: int = 50,
        output: Output = "softmax",
        baseline: BaselineSpec = "black",
        baseline_name: str | None = None,
    ) -> None:
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise ValueError(f"methods must be some of {tuple(METHODS)}, got {list(methods)!r}")
        self.loaded = loaded
        self.layers = tuple(layers)
        self.steps = steps
        self.output: Output = output
        self.baseline_name = baseline_name or _baseline_name(baseline)
        # The path methods (those that take steps) integrate from the baseline.
        self.cams: dict[str, BaseCAM] = {
            m: create_cam(
                m,
                loaded.model,
                self.layers,
                steps=steps,
                output=output,
                **({"baseline": baseline} if METHODS[m].takes_steps else {}),
            )
            for m in dict.fromkeys(methods)
        }

    @property
    def evaluations_per_image(self) -> int:
        """Model evaluations per image: m + 1 path points per path method, 1 per other."""
        return sum(self.steps + 1 if METHODS[m].takes_steps else 1 for m in self.cams)

    def __call__(
        self,
        source: ImageSource,
        name: str | None = None,
        target: int | None = None,
        progress: Callable[[int], None] | None = None,
        description: str | None = None,
    ) -> ImageExplanation:
        """Classify and explain one image.

        Args:
            source: An image path, or anything :func:`~rsigradcam.io.load_image` reads.
            name: Base name of its output files (default: the file name without suffix).
            target: The class to explain; ``None`` explains the top-1 class.
            progress: Called with the number of model evaluations after each method.
            description: Where the image came from, for the summary (default: the path).

        Raises:
            FileNotFoundError: The image file does not exist.
            rsigradcam.io.ImageLoadError: The file is not a readable image.
        """
        start = time.perf_counter()
        image, rgb = load_image(source, size=INPUT_SIZE)
        image = image.to(self.loaded.device)
        with torch.no_grad():
            probabilities = torch.softmax(self.loaded.model(image).float(), dim=1)[0].cpu()
        top = probabilities.topk(min(5, probabilities.numel()))
        top5 = [self._score(int(i), probabilities) for i in top.indices]
        class_id = int(top.indices[0]) if target is None else target
        explanations: dict[str, dict[str, Explanation]] = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for method, cam in self.cams.items():
                result = cam(image, targets=class_id)
                # A list of layers gives one per layer; the input method gives one.
                found = result if isinstance(result, dict) else {result.layer: result}
                explanations[method] = {layer: exp.cpu() for layer, exp in found.items()}
                if progress is not None:
                    progress(next(iter(found.values())).n_evaluations)
        return ImageExplanation(
            name=name if name is not None else _default_name(source),
            source=description or (str(source) if isinstance(source, (str, Path)) else "image"),
            rgb=rgb,
            top5=top5,
            explained=self._score(class_id, probabilities),
            layers=self.layers,
            explanations=explanations,
            steps=self.steps,
            output=self.output,
            seconds=time.perf_counter() - start,
            warnings=tuple(one_line(str(w.message)) for w in caught),
            baseline=self.baseline_name,
        )

    def _score(self, class_id: int, probabilities: torch.Tensor) -> ClassScore:
        names = self.loaded.class_names
        return ClassScore(
            class_id, names[class_id] if names else None, float(probabilities[class_id])
        )


def _default_name(source: ImageSource) -> str:
    return Path(source).stem if isinstance(source, (str, Path)) else "image"


# --------------------------------------------------------------------------------------
# Output files
# --------------------------------------------------------------------------------------


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
    - ``{name}_{layer}_{method}.npy``: the raw heatmap, float32 ``(224, 224)`` in [0, 1];

    and once per image:

    - ``{name}.json``: the top-5 classes, the explained class, and per layer and method
      the steps (``null`` for a method without a path), the completeness error (``null``
      where it does not apply, as for Grad-CAM), the scores and the file names; the time
      taken;
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
    want_grid = grid if grid is not None else maps > 1
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
                colours = overlay(result.rgb, heatmap)
                base = f"{result.name}_{_file_part(layer)}_{method}"
                overlays.append(save_png(colours, out / f"{base}.png"))
                written.append(overlays[-1])
                heatmaps.append(save_npy(heatmap, out / f"{base}.npy"))
                written.append(heatmaps[-1])
                error = finite(float(exp.completeness_error[0]))
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
                        "overlay": overlays[-1].name,
                        "heatmap": heatmaps[-1].name,
                    }
                )
                title = METHODS[method].label
                if path_method:
                    title += f" m={result.steps}" + (
                        f", err {error:.3f}" if error is not None else ""
                    )
                row.append(GridCell(colours, title))
            rows.append(row)
        grid_path = None
        if want_grid:
            grid_path = save_grid(
                rows,
                out / f"{result.name}_grid.png",
                row_labels=result.rows,
                suptitle=result.name,
            )
            written.append(grid_path)
        summary = save_json(
            {
                "image": result.source,
                "top5": [score.as_dict() for score in result.top5],
                "explained_class": result.explained.as_dict(),
                "output": result.output,
                "baseline": result.baseline,
                "steps": result.steps,
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


def check_images(images: Sequence[Path]) -> None:
    """Check that every path is an existing file, before any work starts.

    Raises:
        InputError: Naming every missing path, or else every path that is not a file.
    """
    missing = [str(p) for p in images if not p.exists()]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise InputError(
            f"image file{plural} not found: {', '.join(repr(m) for m in missing)}"
        )
    folders = [str(p) for p in images if not p.is_file()]
    if folders:
        raise InputError(f"not an image file: {', '.join(repr(f) for f in folders)}")


def output_names(images: Sequence[Path]) -> list[str]:
    """File base names: the image file names without suffix, made unique with -2, -3...

    Example:
        >>> output_names([Path("a/cat.jpg"), Path("b/cat.png"), Path("dog.jpg")])
        ['cat', 'cat-2', 'dog']
    """
    names: list[str] = []
    for path in images:
        name, n = path.stem, 1
        while name in names:
            n += 1
            name = f"{path.stem}-{n}"
        names.append(name)
    return names


def summary_line(path: Path, found: ImageExplanation, summary: Path) -> str:
    """``cat.jpg: Egyptian cat 285 (p=0.799), RSI completeness error head 0.006, 3.1 s -> ...``."""
    errors = [
        f"{layer} {float(exp.completeness_error[0]):.3f}"
        for layer, exp in found.explanations.get("rsi", {}).items()
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
        images: Existing image files (see :func:`check_images`).
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
