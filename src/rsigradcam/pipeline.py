"""Explain image files end to end: the steps behind ``rsigradcam explain`` and the demo.

The command line and the demo share this module. :func:`load_model` turns a model
argument into a classifier and its class names, :func:`probe_layers` and
:func:`check_layers` check layer arguments, :func:`resolve_class` turns a class id or name
into an index, :class:`ImageExplainer` classifies one image and explains it at several
layers with Grad-CAM and RSI-Grad-CAM, and :func:`write_outputs` writes what it found.

Arguments that cannot work (an unknown layer or class, a model that cannot be found, an
output folder that cannot be written) raise :class:`InputError`, a ``ValueError`` whose
message is one line.

Models given as ``"module:callable"`` are imported and called, and model files are
deserialised and run: only load models that you trust.

Example:
    >>> from rsigradcam.pipeline import ImageExplainer, load_model, write_outputs
    >>> loaded = load_model("efficientnet_lite0")                      # doctest: +SKIP
    >>> explainer = ImageExplainer(loaded, ["blocks.10", "head"])      # doctest: +SKIP
    >>> files = write_outputs(explainer("cat.jpg"), "out")             # doctest: +SKIP
    >>> files.summary                                                  # doctest: +SKIP
    PosixPath('out/cat.json')
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import math
import re
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn

from rsigradcam.baselines import BASELINE_NAMES, AutoBaseline, BaselineSpec
from rsigradcam.capture import LayerCapture, describe, is_spatial_map, model_device
from rsigradcam.explanation import Explanation
from rsigradcam.io import ImageSource, _one_line, load_image
from rsigradcam.methods import BaseCAM, GradCAM, RSIGradCAM
from rsigradcam.models import efficientnet_lite0, imagenet_classes
from rsigradcam.targets import Output
from rsigradcam.viz import GridCell, overlay, save_grid, save_json, save_npy, save_png

__all__ = [
    "EMBEDDED_MODELS",
    "INPUT_SIZE",
    "METHODS",
    "ClassScore",
    "ImageExplainer",
    "ImageExplanation",
    "InputError",
    "LayerInfo",
    "LoadedModel",
    "Method",
    "OutputFiles",
    "check_layers",
    "load_model",
    "prepare_output_dir",
    "probe_layers",
    "resolve_class",
    "write_outputs",
]

Method = Literal["gradcam", "rsi"]
#: The methods, in the order of the figure columns.
METHODS: tuple[Method, ...] = get_args(Method)
#: Column titles of the methods in figures.
_METHOD_TITLES: dict[Method, str] = {"gradcam": "Grad-CAM", "rsi": "RSI-Grad-CAM"}
#: Models shipped with the package, by the name ``--model`` accepts.
EMBEDDED_MODELS: dict[str, Callable[[], nn.Module]] = {"efficientnet_lite0": efficientnet_lite0}
#: Height and width the images are resized to (whole image, ImageNet normalisation).
INPUT_SIZE = 224
_IMAGENET_CLASSES = 1000


class InputError(ValueError):
    """An argument that cannot work: unknown model, layer or class, unwritable folder.

    Example:
        >>> try:
        ...     resolve_class("1000", None, 1000)
        ... except InputError as error:
        ...     print(error)
        class id 1000 is out of range: the model has 1000 classes (ids 0 to 999)
    """


def _suggest(word: str, choices: Sequence[str], n: int = 5) -> list[str]:
    """Close matches of ``word`` among ``choices``, ignoring case.

    Choices that contain ``word`` as a whole word come first, then spelling neighbours.
    """
    by_folded: dict[str, str] = {}
    for choice in choices:
        by_folded.setdefault(choice.casefold(), choice)
    folded = word.casefold().strip()
    pattern = re.compile(rf"\b{re.escape(folded)}\b") if folded else None
    containing = [c for f, c in by_folded.items() if pattern is not None and pattern.search(f)]
    close = [by_folded[f] for f in difflib.get_close_matches(folded, by_folded, n=n, cutoff=0.6)]
    return list(dict.fromkeys(containing + close))[:n]


def _did_you_mean(matches: Sequence[str]) -> str:
    return f" (did you mean {', '.join(repr(m) for m in matches)}?)" if matches else ""


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedModel:
    """A classifier ready to explain, with what the command line needs to know about it.

    Attributes:
        model: The network, in eval mode, on ``device``.
        name: The model argument it was loaded from.
        num_classes: Number of outputs per image.
        class_names: One name per output, or ``None`` when they are unknown.
        device: Where the model and the images live.
    """

    model: nn.Module
    name: str
    num_classes: int
    class_names: list[str] | None
    device: torch.device

    def label(self, class_id: int) -> str:
        """The name of a class, or ``"class N"`` when the names are unknown.

        Example:
            >>> load_model().label(285)  # doctest: +SKIP
            'Egyptian cat'
        """
        return self.class_names[class_id] if self.class_names else f"class {class_id}"


def _check_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise InputError(f"unknown device {str(device)!r}; use 'cpu' or 'cuda'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {str(device)!r} is not available: this torch has no usable GPU")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"device {str(device)!r} is not supported; use 'cpu' or 'cuda'")
    return dev


@contextlib.contextmanager
def _cwd_importable() -> Iterator[None]:
    """Let ``import`` find modules in the current folder (as ``python -m`` does)."""
    cwd = str(Path.cwd())
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def _from_callable(spec: str) -> nn.Module:
    module_name, _, attribute = spec.partition(":")
    try:
        with _cwd_importable():
            obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"model {spec!r}: cannot import module {module_name!r}: {exc}") from exc
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise InputError(f"model {spec!r}: {module_name!r} has no attribute {attribute!r}")
        obj = getattr(obj, part)
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise InputError(f"model {spec!r}: {attribute!r} is not callable")
    model = obj()
    if not isinstance(model, nn.Module):
        raise InputError(
            f"model {spec!r}: {attribute}() returned a {type(model).__name__}, not a "
            "torch.nn.Module"
        )
    return model


def _from_file(path: Path, device: torch.device) -> nn.Module:
    label = f"model file '{path}'"
    try:
        with zipfile.ZipFile(path) as archive:
            entries = {name.split("/", 1)[-1] for name in archive.namelist()}
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(
            f"{label} is not a PyTorch model archive ({_one_line(str(exc))}); pass a .pt2 "
            "file written by torch.export.save, efficientnet_lite0, or module:callable"
        ) from exc
    if "archive_format" in entries:
        try:
            with warnings.catch_warnings():
                # torch's own deprecation notices while deserialising; not the user's concern.
                warnings.simplefilter("ignore", FutureWarning)
                exported = torch.export.load(str(path))
        except Exception as exc:
            raise InputError(f"{label} cannot be loaded: {_one_line(str(exc))[:300]}") from exc
        return torch.export.unflatten(exported).to(device)
    if "constants.pkl" in entries or any(e.startswith("code/") for e in entries):
        raise InputError(
            f"{label} is TorchScript, which cannot be explained: TorchScript modules do not "
            "support the forward hooks that capture a layer's activations. Save the model with "
            "torch.export.save(torch.export.export(model, (x,)), 'model.pt2') and pass the "
            ".pt2 file, or pass module:callable"
        )
    raise InputError(
        f"{label} looks like a torch.save checkpoint, which holds weights or pickled code, "
        "not a model that can be loaded safely; pass module:callable (a function that builds "
        "the model and loads the weights) or a .pt2 file written by torch.export.save"
    )


def _build(spec: str, device: torch.device) -> nn.Module:
    path = Path(spec)
    if spec in EMBEDDED_MODELS:
        return EMBEDDED_MODELS[spec]().to(device)
    if path.is_file():
        return _from_file(path, device)
    if re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", spec):
        return _from_callable(spec).to(device)
    if path.suffix or "/" in spec or "\\" in spec:
        raise InputError(f"model file not found: '{spec}'")
    raise InputError(
        f"unknown model {spec!r}{_did_you_mean(_suggest(spec, list(EMBEDDED_MODELS)))}; pass "
        f"{', '.join(EMBEDDED_MODELS)}, a .pt2 file (torch.export.save) or module:callable"
    )


def load_model(spec: str = "efficientnet_lite0", device: str | torch.device = "cpu") -> LoadedModel:
    """Load the classifier that a ``--model`` argument names.

    Args:
        spec: ``"efficientnet_lite0"`` (embedded, ImageNet weights); the path of a ``.pt2``
            file written by ``torch.export.save`` (its layers keep their names); or
            ``"module:callable"``, a function (or a module attribute holding an
            ``nn.Module``) that returns the model, imported from the current folder or
            the Python path. Loading a model file or importing a module runs its code.
        device: ``"cpu"`` or ``"cuda"``.

    Returns:
        The model in eval mode with its number of classes and class names: the ImageNet
        names for the embedded model and for any model with 1000 outputs (assumed to use
        the ImageNet class order), ``None`` otherwise.

    Raises:
        InputError: The model cannot be found, or the file is not a format that can be
            explained (TorchScript and ``torch.save`` checkpoints are refused, with the
            alternative), or the model is not an image classifier: it must map a batch of
            ``(N, 3, 224, 224)`` images to ``(N, classes)`` scores.

    Example:
        >>> loaded = load_model("efficientnet_lite0")  # doctest: +SKIP
        >>> loaded.num_classes, loaded.label(967)       # doctest: +SKIP
        (1000, 'espresso')
    """
    dev = _check_device(device)
    model = _build(spec, dev).eval()
    probe = torch.zeros(2, 3, INPUT_SIZE, INPUT_SIZE, device=dev)
    try:
        with torch.no_grad():
            output = model(probe)
    except Exception as exc:
        raise InputError(
            f"model {spec!r} fails on a batch of two 3x{INPUT_SIZE}x{INPUT_SIZE} images "
            f"({type(exc).__name__}: {_one_line(str(exc))[:300]}); it must accept any batch "
            "size (export .pt2 files with a dynamic batch dimension)"
        ) from exc
    if not isinstance(output, torch.Tensor) or output.dim() != 2 or output.shape[0] != 2:
        raise InputError(
            f"model {spec!r} returned {describe(output)} for 2 images; a classifier must "
            "return (N, classes) scores"
        )
    num_classes = int(output.shape[1])
    names = imagenet_classes() if spec in EMBEDDED_MODELS or num_classes == 1000 else None
    return LoadedModel(model, spec, num_classes, names, dev)


# --------------------------------------------------------------------------------------
# Layers and classes
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerInfo:
    """One module's output for one input image, as seen by a probe pass.

    Attributes:
        name: The dotted module name.
        shape: The output shape without the batch dimension, e.g. ``(1280, 7, 7)``;
            ``None`` when the output is not a tensor.
        runs: How many times the module ran in the forward pass.
    """

    name: str
    shape: tuple[int, ...] | None
    runs: int = 1

    @property
    def explainable(self) -> bool:
        """Whether a CAM can explain it: one run, a spatial (K, h, w) map with h*w > 1."""
        return self.runs == 1 and self.shape is not None and is_spatial_map((1, *self.shape))

    def describe_shape(self) -> str:
        """The shape as ``"1280x7x7"`` (``"-"`` when the output is not a tensor)."""
        return "x".join(str(s) for s in self.shape) if self.shape is not None else "-"


def probe_layers(model: nn.Module, size: int = INPUT_SIZE) -> list[LayerInfo]:
    """Run one black ``size x size`` image through ``model`` and list each module's output.

    The modules come in the order they finish (a block after its own layers); each
    module appears once, with how many times it ran.

    Example:
        >>> infos = probe_layers(efficientnet_lite0())  # doctest: +SKIP
        >>> [i.name for i in infos if i.explainable][-1]  # doctest: +SKIP
        'head'
    """
    image = torch.zeros(1, 3, size, size, device=model_device(model))
    with LayerCapture(model) as capture:
        records = capture.probe(image)
    infos: dict[str, LayerInfo] = {}
    for record in records:
        shape = record.shape[1:] if record.shape is not None else None
        seen = infos.get(record.name)
        runs = 1 if seen is None else seen.runs + 1
        infos[record.name] = LayerInfo(record.name, shape if seen is None else seen.shape, runs)
    return list(infos.values())


def check_layers(requested: Sequence[str], layers: Sequence[LayerInfo]) -> list[str]:
    """Check ``--layer`` arguments against a probe; ``"auto"`` (or none) is the last one.

    Args:
        requested: Layer names (repeats are dropped); empty means ``["auto"]``.
        layers: The result of :func:`probe_layers`.

    Returns:
        The layer names, in the order given.

    Raises:
        InputError: A name that is not a module (close names are suggested), or a module
            whose output is not a spatial map.

    Example:
        >>> check_layers(["auto"], [LayerInfo("conv", (8, 6, 6)), LayerInfo("fc", (5,))])
        ['conv']
    """
    explainable = [info.name for info in layers if info.explainable]
    by_name = {info.name: info for info in layers}
    names: list[str] = []
    for name in requested or ["auto"]:
        if name == "auto":
            if not explainable:
                raise InputError("the model has no layer with a spatial (K, h, w) output")
            name = explainable[-1]
        info = by_name.get(name)
        if info is None:
            raise InputError(
                f"unknown layer {name!r}{_did_you_mean(_suggest(name, explainable))}; run "
                "'rsigradcam layers' to list the layers that can be explained"
            )
        if not info.explainable:
            reason = (
                f"it runs {info.runs} times in one forward pass"
                if info.runs > 1
                else f"its output has shape {info.describe_shape()}, not K x h x w with h x w > 1"
            )
            raise InputError(
                f"layer {name!r} cannot be explained: {reason}; run 'rsigradcam layers' to "
                "list the layers that can"
            )
        names.append(name)
    return list(dict.fromkeys(names))


def resolve_class(spec: str | int, class_names: Sequence[str] | None, num_classes: int) -> int:
    """Turn a ``--target`` argument (a class id or a class name) into a class index.

    Names are matched ignoring case; an unknown name suggests close ones.

    Raises:
        InputError: An id out of range, an unknown or ambiguous name, or a name when the
            class names are unknown.

    Example:
        >>> resolve_class("Egyptian CAT", ["tabby", "Egyptian cat"], 2)
        1
        >>> resolve_class("0", None, 10)
        0
    """
    text = str(spec).strip()
    if re.fullmatch(r"[+-]?\d+", text):
        index = int(text)
        if not 0 <= index < num_classes:
            raise InputError(
                f"class id {index} is out of range: the model has {num_classes} classes "
                f"(ids 0 to {num_classes - 1})"
            )
        return index
    if class_names is None:
        raise InputError(
            f"class {text!r}: this model's class names are unknown; give a class id from 0 "
            f"to {num_classes - 1}"
        )
    matches = [i for i, name in enumerate(class_names) if name.casefold() == text.casefold()]
    if len(matches) > 1:
        raise InputError(
            f"class name {text!r} is ambiguous: it names classes "
            f"{', '.join(str(i) for i in matches)}; give the class id"
        )
    if not matches:
        raise InputError(f"unknown class name {text!r}{_did_you_mean(_suggest(text, class_names))}")
    return matches[0]


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


def resolve_baseline(spec: str, loaded: LoadedModel) -> BaselineSpec:
    """Turn a ``--baseline`` value into a ``baseline=`` argument.

    Args:
        spec: A name (``black``, ``zeros``, ``blur``, ``noise``, ``uniform``, ``auto``)
            or a ``.pt`` file: one saved by :meth:`~rsigradcam.baselines.AutoBaseline.save`,
            or a tensor (C, H, W) saved with ``torch.save`` (read with ``weights_only=True``).
        loaded: The model, which ``auto`` optimises the baseline for.

    Raises:
        InputError: An unknown name, a missing file, or a file that holds neither.
    """
    if spec == "auto":
        return AutoBaseline(loaded.model)
    if spec in BASELINE_NAMES:
        return spec
    path = Path(spec)
    if path.suffix not in (".pt", ".pth") and not path.exists():
        raise InputError(
            f"unknown baseline {spec!r}: use one of {', '.join(BASELINE_NAMES)} or a .pt file "
            "(an AutoBaseline saved with .save, or a (C, H, W) tensor)."
        )
    if not path.is_file():
        raise InputError(f"baseline file {spec} does not exist.")
    try:
        payload = torch.load(path, map_location=model_device(loaded.model), weights_only=True)
    except Exception as err:
        raise InputError(f"baseline file {spec} could not be read: {_one_line(str(err))}") from err
    if isinstance(payload, torch.Tensor):
        if payload.dim() != 3 or not payload.is_floating_point():
            raise InputError(
                f"baseline file {spec} holds a tensor of shape {tuple(payload.shape)}; it must "
                "be a floating (C, H, W) image in the model's preprocessed input space."
            )
        return payload
    try:
        return AutoBaseline.from_file(path, loaded.model)
    except ValueError as err:
        raise InputError(_one_line(str(err))) from err


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
            warnings=tuple(_one_line(str(w.message)) for w in caught),
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


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


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
                error = _finite(float(exp.completeness_error[0]))
                entries.append(
                    {
                        "method": method,
                        "layer": layer,
                        "layer_shape": list(exp.attributions.shape[1:]),
                        "steps": result.steps if method == "rsi" else None,
                        "evaluations": exp.n_evaluations,
                        "score": _finite(float(exp.scores[0])),
                        "baseline_score": _finite(float(exp.baseline_scores[0])),
                        "completeness_error": error,
                        "overlay": overlays[-1].name,
                        "heatmap": heatmaps[-1].name,
                    }
                )
                title = _METHOD_TITLES[method]
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
