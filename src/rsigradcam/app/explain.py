"""Explain image files end to end: the steps behind ``rsigradcam explain`` and the demo.

:class:`ImageExplainer` classifies one image and explains it at several layers with
any of the registry's methods; :mod:`rsigradcam.app.outputs` writes what it found.

Example:
    >>> from rsigradcam.app.explain import ImageExplainer
    >>> from rsigradcam.app.outputs import write_outputs
    >>> from rsigradcam.app.loading.models import load_model
    >>> loaded = load_model("efficientnet_lite0")                      # doctest: +SKIP
    >>> explainer = ImageExplainer(loaded, ["blocks.10", "head"])      # doctest: +SKIP
    >>> files = write_outputs(explainer("cat.jpg"), "out")             # doctest: +SKIP
    >>> files.summary                                                  # doctest: +SKIP
    PosixPath('out/cat.json')
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from rsigradcam.app.arrays import check_channels, is_array_file, read_array
from rsigradcam.app.loading.models import LoadedModel
from rsigradcam.app.settings import InputFormat, Variants, completeness_warnings
from rsigradcam.baselines import AutoBaseline, BaselineSpec
from rsigradcam.core.adaptive import AUTO_MAX_STEPS
from rsigradcam.core.capture import logits_of
from rsigradcam.core.inference import SpeedSpec
from rsigradcam.core.targets import Output, SegmentationTarget
from rsigradcam.explanation import Explanation
from rsigradcam.files import one_line
from rsigradcam.io import ImageSource, read_image
from rsigradcam.methods import METHODS, BaseCAM, create_cam
from rsigradcam.serialization import encode, json_options

__all__ = ["ClassScore", "ImageExplainer", "ImageExplanation", "Steps", "top_classes"]

#: Path steps m of the methods that integrate, or ``"auto"`` (rsi only: an adaptive
#: partition; see :class:`~rsigradcam.methods.RSIGradCAM`).
Steps = int | Literal["auto"]


# --------------------------------------------------------------------------------------
# Explaining one image
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassScore:
    """A class with its softmax probability for one image."""

    class_id: int
    name: str | None = field(metadata=json_options(key="class"))
    probability: float


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
            ``ig``), or ``"auto"`` (``rsi`` alone).
        output: ``"softmax"`` or ``"logits"``: the explained score.
        seconds: Wall time for decoding, classifying and explaining.
        warnings: Warnings raised while explaining (e.g. a map that is zero everywhere).
        baseline: The path methods' baseline, as named by the user (``"black"``, ``"auto"``,
            a file path, ...).
        variants: The authors' variants of the methods that take them (``rsi``).
        input_format: The model input's size and normalisation.
        original: The image at its own size, for overlays at that size; ``None``: overlays
            at the model's input size (``rgb``).
        array: For an array file (``.npy``, NIfTI), the input ``(C, *S)`` as read; ``rgb``
            is then empty and the heatmaps are at the array's spatial shape.
    """

    name: str
    source: str
    rgb: np.ndarray
    top5: list[ClassScore]
    explained: ClassScore
    layers: tuple[str, ...]
    explanations: dict[str, dict[str, Explanation]]
    steps: Steps
    output: Output
    seconds: float
    warnings: tuple[str, ...] = ()
    baseline: str = "black"
    variants: Variants = field(default_factory=Variants)
    input_format: InputFormat = field(default_factory=InputFormat)
    original: np.ndarray | None = None
    array: np.ndarray | None = None

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
        steps: Path steps m of the methods that integrate (trapezoid rule), or
            ``"auto"``, which only ``rsi`` takes (the library refuses it for the others).
        output: Explain the ``"softmax"`` probability (the paper) or the ``"logits"``;
            used by every method so that their maps explain the same score.
        baseline: The path methods' baseline (see :mod:`rsigradcam.baselines`).
        baseline_name: How the outputs name it (default: the name given as ``baseline``,
            ``"auto"`` for an :class:`~rsigradcam.baselines.AutoBaseline`, else its type).
        variants: ``grad_relu`` / ``guided``, for the methods whose class takes them
            (``rsi``); the others ignore them.
        input_format: The input size and normalisation (default 224x224, ImageNet); the
            path methods' black baseline uses the same normalisation.
        overlay_size: ``"model"`` or ``"original"``: the overlays' size.
        target_mask: A boolean (H, W) mask: explain the class's score summed over it, for
            a segmentation model's (N, classes, h, w) output
            (:class:`~rsigradcam.core.targets.SegmentationTarget`), the mask at the input's
            size or the output's.
        speed: How every path method runs the model
            (:class:`~rsigradcam.core.inference.SpeedOptions`; default ``"auto"``); the
            maps move by rounding only.

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
        steps: Steps = 50,
        output: Output = "softmax",
        baseline: BaselineSpec = "black",
        baseline_name: str | None = None,
        variants: Variants | None = None,
        input_format: InputFormat | None = None,
        overlay_size: str = "model",
        speed: SpeedSpec = "auto",
        target_mask: np.ndarray | None = None,
    ) -> None:
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise ValueError(f"methods must be some of {tuple(METHODS)}, got {list(methods)!r}")
        self.loaded = loaded
        self.layers = tuple(layers)
        self.steps = steps
        self.output: Output = output
        self.baseline_name = baseline_name or _baseline_name(baseline)
        self.variants = variants or Variants()
        self.input_format = input_format or InputFormat()
        self.overlay_size = overlay_size  # "original": overlays at the image's own size
        self.target_mask = None if target_mask is None else torch.from_numpy(target_mask)
        self.cams: dict[str, BaseCAM[dict[str, Explanation]]] = {
            m: create_cam(
                m,
                loaded.model,
                self.layers,
                steps=steps,
                output=output,
                path_options={"baseline": baseline, "normalize": self.input_format.normalize},
                variants=encode(self.variants),
                speed=speed,
            )
            for m in dict.fromkeys(methods)
        }

    @property
    def evaluations_per_image(self) -> int:
        """Model evaluations per image: m + 1 path points per path method, 1 per other.

        With ``steps="auto"``, the most the adaptive partition may use.
        """
        points = AUTO_MAX_STEPS + 1 if self.steps == "auto" else self.steps + 1
        return sum(points if METHODS[m].takes_steps else 1 for m in self.cams)

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
            source: An image path, or anything :func:`~rsigradcam.io.load_image` reads; or
                an array file (``.npy``, ``.nii``, ``.nii.gz``) holding the input
                ``(C, *S)``, explained at its own shape as it is (see
                :mod:`rsigradcam.app.arrays`).
            name: Base name of its output files (default: the file name without suffix).
            target: The class to explain; ``None`` explains the top-1 class.
            progress: Called with the number of model evaluations after each method.
            description: Where the image came from, for the summary (default: the path).

        Raises:
            FileNotFoundError: The image file does not exist.
            rsigradcam.io.ImageLoadError: The file is not a readable image.
            InputError: An array file that cannot be read, or with the wrong channels.
        """
        start = time.perf_counter()
        array, decoded = None, None
        if isinstance(source, (str, Path)) and is_array_file(source):
            array = read_array(source)
            check_channels(f"array '{source}'", array.shape, self.loaded.model, self.loaded.name)
            image, rgb = torch.from_numpy(array)[None], np.zeros((0, 0, 3), np.uint8)
        else:
            # Decoded once: a file object can be read only once.
            decoded = read_image(source) if self.overlay_size == "original" else None
            image, rgb = self.input_format.load(source if decoded is None else decoded)
        original = None if decoded is None else np.asarray(decoded)
        image = image.to(self.loaded.device)
        top5, probabilities = top_classes(self.loaded, image)
        class_id = top5[0].class_id if target is None else target
        explanations: dict[str, dict[str, Explanation]] = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for method, cam in self.cams.items():
                found = cam(image, targets=self._target(class_id))
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
            warnings=(
                *self.variants.warnings(list(self.cams)),
                *completeness_warnings(explanations),
                *(one_line(str(w.message)) for w in caught),
            ),
            baseline=self.baseline_name,
            variants=self.variants,
            input_format=self.input_format,
            original=original,
            array=array,
        )

    def _target(self, class_id: int) -> int | SegmentationTarget:
        """The class, or with a mask its score summed over the mask (segmentation)."""
        if self.target_mask is None:
            return class_id
        return SegmentationTarget(class_id, self.target_mask, output=self.output)

    def _score(self, class_id: int, probabilities: torch.Tensor) -> ClassScore:
        return _class_score(self.loaded, class_id, probabilities)


def _class_score(loaded: LoadedModel, class_id: int, probabilities: torch.Tensor) -> ClassScore:
    names = loaded.class_names
    return ClassScore(class_id, names[class_id] if names else None, float(probabilities[class_id]))


def top_classes(
    loaded: LoadedModel, image: torch.Tensor, k: int = 5
) -> tuple[list[ClassScore], torch.Tensor]:
    """The ``k`` most probable classes of one image (fewer when the model has fewer).

    Args:
        loaded: The model.
        image: One preprocessed input ``(1, C, *S)`` on the model's device. For a model
            returning ``(1, classes, *s)`` per-position scores, the classes are ranked by
            their mean logit over the positions.
        k: How many classes.

    Returns:
        The classes, most probable first, and the softmax probabilities of every class
        (on the CPU).
    """
    with torch.no_grad():
        logits = logits_of(loaded.model(image))
        if logits.dim() > 2:  # a segmentation model: each class's mean logit
            logits = logits.flatten(2).mean(dim=2)
        probabilities = torch.softmax(logits.float(), dim=1)[0].cpu()
    top = probabilities.topk(min(k, probabilities.numel()))
    return [_class_score(loaded, int(i), probabilities) for i in top.indices], probabilities


def _default_name(source: ImageSource) -> str:
    return Path(source).stem if isinstance(source, (str, Path)) else "image"
