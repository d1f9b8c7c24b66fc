"""Explain an image for the page: the maps, the class score along the path, the downloads.

:func:`explain_image` explains one class at the chosen layers with the chosen methods
(:class:`~rsigradcam.app.explain.ImageExplainer`), evaluates the class score at the points
of every path method (:func:`rsigradcam.methods.path_scores`) and writes the downloads
(:func:`rsigradcam.app.outputs.write_outputs`, and the path as JSON); :func:`convergence`
explains the same class again as m grows.

Example:
    >>> result = explain_image(explorer, "cat.jpg", options)   # doctest: +SKIP
    >>> result.curve.points["rsi"].size                          # doctest: +SKIP
    51
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rsigradcam.app.errors import InputError
from rsigradcam.app.explain import ImageExplainer, ImageExplanation, Steps
from rsigradcam.app.outputs import write_outputs
from rsigradcam.app.web.compute import Explorer, Options, Progress, load_input, no_progress
from rsigradcam.baselines import AutoBaseline
from rsigradcam.files import save_json
from rsigradcam.methods import METHODS, path_scores
from rsigradcam.metrics.correlation import pearson
from rsigradcam.serialization import encode, json_options

__all__ = [
    "CONVERGENCE_REFERENCE",
    "CONVERGENCE_STEPS",
    "CURVE_POINTS",
    "Convergence",
    "PathCurve",
    "WebResult",
    "convergence",
    "explain_image",
    "path_curve",
]

#: The m of the convergence plot, each compared with the map at :data:`CONVERGENCE_REFERENCE`.
CONVERGENCE_STEPS: tuple[int, ...] = (2, 4, 8, 16, 32, 64)
CONVERGENCE_REFERENCE = 128
#: The fewest points of the score curve: a coarse partition is filled in with a uniform grid.
CURVE_POINTS = 33


@dataclass(frozen=True)
class PathCurve:
    """The explained score y(x_t) along the path, and where each path method evaluated it.

    Attributes:
        t: Increasing path parameters, every method's points and a uniform grid.
        y: The score at each ``t``.
        points: Each path method's partition (its evaluated t values), by method name.
    """

    t: np.ndarray
    y: np.ndarray = field(metadata=json_options(finite=True))
    points: dict[str, np.ndarray]

    def at(self, method: str) -> np.ndarray:
        """The score at a method's points."""
        return np.asarray(np.interp(self.points[method], self.t, self.y))



@dataclass(frozen=True)
class WebResult:
    """One explanation shown in the page: what was found, the path curve, the downloads."""

    found: ImageExplanation
    options: Options
    image: str
    curve: PathCurve | None
    folder: Path
    files: tuple[Path, ...]


def _partition(found: ImageExplanation, method: str) -> np.ndarray:
    exp = next(iter(found.explanations[method].values()))
    t = exp.partition.reshape(-1, exp.partition.shape[-1])[0]  # one image
    return np.unique(t.double().cpu().numpy())  # an adaptive row may repeat t = 1


def path_curve(
    explorer: Explorer, image: torch.Tensor, found: ImageExplanation, baseline: str | AutoBaseline
) -> PathCurve | None:
    """The score along the path at every path method's points (``None`` without one)."""
    methods = [m for m in found.explanations if METHODS[m].takes_steps]
    if not methods:
        return None
    points = {m: _partition(found, m) for m in methods}
    t = np.unique(np.concatenate(list(points.values())))
    if t.size < CURVE_POINTS:
        t = np.unique(np.concatenate([t, np.linspace(0.0, 1.0, CURVE_POINTS)]))
    y = path_scores(
        explorer.loaded.model,
        image,
        torch.from_numpy(t),
        found.explained.class_id,
        output=found.output,
        baseline=baseline,
        normalize=explorer.input_format.normalize,
    )
    return PathCurve(t, y[0].double().cpu().numpy(), points)


def _explainer(explorer: Explorer, options: Options, steps: Steps) -> ImageExplainer:
    return ImageExplainer(
        explorer.loaded,
        options.layers,
        options.methods,
        steps,
        options.output,
        explorer.baseline(options.baseline),
        baseline_name=options.baseline,
        variants=options.variants,
        input_format=explorer.input_format,
        speed=explorer.speed,
    )


def explain_image(
    explorer: Explorer,
    image: str | Path | None,
    options: Options,
    target: int | None = None,
    progress: Progress = no_progress,
) -> WebResult:
    """Explain one class of an image file; evaluate the path curve; write the downloads.

    Args:
        explorer: The model.
        image: The image file.
        options: From :func:`check_options`.
        target: The class to explain; ``None`` explains the top-1 class.
        progress: Called as the work advances.

    Raises:
        InputError: No image, or a class id out of range.
        rsigradcam.io.ImageLoadError: The file is not a readable image.
    """
    tensor = load_input(explorer, image)
    if target is not None and not 0 <= target < explorer.loaded.num_classes:
        raise InputError(
            f"class id {target} is out of range: the model has {explorer.loaded.num_classes} "
            "classes"
        )
    explainer = _explainer(explorer, options, options.steps)
    done: list[str] = []
    total = len(explainer.cams) + 2

    def advance(evaluations: int) -> None:
        method = list(explainer.cams)[len(done)]
        done.append(method)
        progress(len(done) / total, f"{METHODS[method].label}: {evaluations} evaluations")

    progress(0.0, f"Explaining with {', '.join(explainer.cams)}")
    found = explainer(str(image), target=target, progress=advance)
    progress(len(done) / total, "The class score along the path")
    curve = path_curve(explorer, tensor, found, explorer.baseline(options.baseline))
    progress((len(done) + 1) / total, "Writing the downloads")
    folder = explorer.work_dir / "results" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    try:
        files = write_outputs(found, folder, grid=True)
        written = [*files.overlays, *files.heatmaps]
        written += [p for p in (files.grid, files.summary) if p is not None]
        if curve is not None:
            written.append(save_json(encode(curve), folder / f"{found.name}_path.json"))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return WebResult(found, options, str(image), curve, folder, tuple(written))


@dataclass(frozen=True)
class Convergence:
    """How the maps settle as m grows, for each path method and layer of a result.

    Attributes:
        steps: The m compared, increasing.
        reference: The m of the reference maps.
        correlation: Heatmap correlation with the reference map, per m, by (method, layer).
        completeness: Completeness error per m (NaN where it does not apply).
        current: The result's own steps.
    """

    steps: tuple[int, ...]
    reference: int
    correlation: dict[tuple[str, str], list[float]]
    completeness: dict[tuple[str, str], list[float]]
    current: Steps


def convergence(
    explorer: Explorer,
    result: WebResult,
    steps: Sequence[int] = CONVERGENCE_STEPS,
    reference: int = CONVERGENCE_REFERENCE,
    progress: Progress = no_progress,
) -> Convergence:
    """Explain the result's class again at each m of ``steps`` and at ``reference``.

    Each path method of the result at each of its layers, with its options; the heatmaps
    are compared with the reference's by Pearson correlation.

    Raises:
        InputError: The result has no path method.
    """
    methods = result.options.path_methods
    if not methods:
        raise InputError(
            "the convergence follows the path methods (rsi, integrated-gradcam, ig); tick one "
            "and explain again"
        )
    options = Options(
        result.options.layers, methods, 1, result.options.output, result.options.baseline,
        result.options.variants,
    )
    target = result.found.explained.class_id
    runs: dict[int, ImageExplanation] = {}
    ladder = [*sorted(set(steps)), reference]
    for i, m in enumerate(ladder):
        progress(i / len(ladder), f"m = {m}")
        runs[m] = _explainer(explorer, options, m)(result.image, target=target)
    final = runs[reference]
    correlation: dict[tuple[str, str], list[float]] = {}
    completeness: dict[tuple[str, str], list[float]] = {}
    for method in methods:
        for layer, ref in final.explanations[method].items():
            key = (method, layer)
            maps = [runs[m].explanations[method][layer] for m in ladder[:-1]]
            correlation[key] = [float(pearson(e.heatmap, ref.heatmap)[0]) for e in maps]
            completeness[key] = [float(e.completeness_error[0]) for e in maps]
    return Convergence(
        tuple(ladder[:-1]), reference, correlation, completeness, result.options.steps
    )
