"""Explain image files end to end: the steps behind ``rsigradcam explain`` and the demo.

:class:`ImageExplainer` classifies one image and explains it at several layers with
several methods, and :func:`write_outputs` writes what it found: overlays, heatmaps,
a figure grid and a JSON summary.

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
from typing import Any, Literal, get_args

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
from rsigradcam.methods import METHODS as CAM_METHODS
from rsigradcam.methods import BaseCAM, GradCAM, RSIGradCAM
from rsigradcam.viz import GridCell, overlay, save_grid

__all__ = [
    "METHODS",
    "ClassScore",
    "ImageExplainer",
    "ImageExplanation",
    "Method",
    "OutputFiles",
    "prepare_output_dir",
    "write_outputs",
]

Method = Literal["gradcam", "rsi"]
#: The methods, in the order of the figure columns.
METHODS: tuple[Method, ...] = get_args(Method)



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
        explanations: ``explanations[method][layer]``, one image each.
        steps: RSI-Grad-CAM steps m.
        output: ``"softmax"`` or ``"logits"``: the explained score.
        seconds: Wall time for decoding, classifying and explaining.
        warnings: Warnings raised while explaining (e.g. a map that is zero everywhere).
        baseline: RSI-Grad-CAM's baseline, as named by the user (``"black"``, ``"auto"``,
            a file path, ...).
    """

    name: str
    source: str
    rgb: np.ndarray
    top5: list[ClassScore]
    explained: ClassScore
    layers: tuple[str, ...]
    explanations: dict[Method, dict[str, Explanation]]
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



def _baseline_name(baseline: BaselineSpec) -> str:
    if isinstance(baseline, str):
        return baseline
    if isinstance(baseline, AutoBaseline):
        return "auto"
    if isinstance(baseline, torch.Tensor):
        return "tensor"
    return type(baseline).__name__


class ImageExplainer:
    """Classify images and explain one class with Grad-CAM and/or RSI-Grad-CAM.

    The methods are built once; each call runs one :class:`~rsigradcam.GradCAM` and one
    :class:`~rsigradcam.RSIGradCAM` pass over all ``layers`` together.

    Args:
        loaded: The model, from :func:`load_model`.
        layers: Layer names, checked with :func:`check_layers`.
        methods: ``"gradcam"``, ``"rsi"`` or both.
        steps: RSI-Grad-CAM steps m (trapezoid rule, black baseline).
        output: Explain the ``"softmax"`` probability (the paper) or the ``"logits"``;
            used by both methods so that their maps explain the same score.
        baseline: RSI-Grad-CAM's baseline (see :mod:`rsigradcam.baselines`).
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
        methods: Sequence[Method] = METHODS,
        steps: int = 50,
        output: Output = "softmax",
        baseline: BaselineSpec = "black",
        baseline_name: str | None = None,
    ) -> None:
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise ValueError(f"methods must be some of {METHODS}, got {list(methods)!r}")
        self.loaded = loaded
        self.layers = tuple(layers)
        self.steps = steps
        self.output: Output = output
        self.baseline_name = baseline_name or _baseline_name(baseline)
        build: dict[Method, Callable[[], BaseCAM]] = {
            "gradcam": lambda: GradCAM(loaded.model, list(self.layers), output=output),
            "rsi": lambda: RSIGradCAM(
                loaded.model, list(self.layers), steps=steps, output=output, baseline=baseline
            ),
        }
        self.cams: dict[Method, BaseCAM] = {m: build[m]() for m in METHODS if m in methods}

    @property
    def evaluations_per_image(self) -> int:
        """Model evaluations per image: m + 1 path points for RSI-Grad-CAM, 1 for Grad-CAM."""
        return sum(self.steps + 1 if m == "rsi" else 1 for m in self.cams)

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
        explanations: dict[Method, dict[str, Explanation]] = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for method, cam in self.cams.items():
                result = cam(image, targets=class_id)
                assert isinstance(result, dict)  # a list of layers gives one per layer
                explanations[method] = {layer: exp.cpu() for layer, exp in result.items()}
                if progress is not None:
                    progress(next(iter(result.values())).n_evaluations)
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

    Files, for each explained layer and method (``gradcam`` or ``rsi``):

    - ``{name}_{layer}_{method}.png``: the heatmap in the jet colormap, blended on the image;
    - ``{name}_{layer}_{method}.npy``: the raw heatmap, float32 ``(224, 224)`` in [0, 1];

    and once per image:

    - ``{name}.json``: the top-5 classes, the explained class, and per layer and method
      the steps, the completeness error (``null`` where it does not apply, as for
      Grad-CAM), the scores and the file names; the time taken;
    - ``{name}_grid.png``: rows = layers, columns = image | Grad-CAM | RSI-Grad-CAM.

    Every file is written atomically; if one fails, the files already written for this
    image are removed, so a failed image leaves nothing behind.

    Args:
        result: From :class:`ImageExplainer`.
        out_dir: An existing folder.
        grid: Write the grid; ``None`` writes it when there are several layers or methods.

    Example:
        >>> files = write_outputs(explainer("cat.jpg"), "out")  # doctest: +SKIP
    """
    out = Path(out_dir)
    methods = [m for m in METHODS if m in result.explanations]
    want_grid = grid if grid is not None else len(result.layers) * len(methods) > 1
    written: list[Path] = []
    try:
        entries, overlays, heatmaps, rows = [], [], [], []
        for layer in result.layers:
            row = [GridCell(result.rgb, result.title)]
            for method in methods:
                exp = result.explanations[method][layer]
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
                        "steps": result.steps if method == "rsi" else None,
                        "evaluations": exp.n_evaluations,
                        "score": finite(float(exp.scores[0])),
                        "baseline_score": finite(float(exp.baseline_scores[0])),
                        "completeness_error": error,
                        "overlay": overlays[-1].name,
                        "heatmap": heatmaps[-1].name,
                    }
                )
                title = CAM_METHODS[method].label
                if method == "rsi":
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
                row_labels=list(result.layers),
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
