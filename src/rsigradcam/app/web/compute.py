"""What the explorer's page computes, without any web framework: the model and the options.

:func:`open_explorer` loads the model once, lists its layers and writes the sample photos;
:func:`check_options` turns the page's widgets into :class:`Options` (every mistake is an
:class:`~rsigradcam.app.errors.InputError` with a one-line message); :func:`classify`
gives an image's top-5 classes. Images are read by :func:`rsigradcam.io.load_image`, with
its checks (size limit, decompression bombs, truncated files), after
:func:`check_upload` has refused, from the file's size and header alone, what is larger
than the app takes. Explaining is in
:mod:`rsigradcam.app.web.results`, what the page shows of it in
:mod:`rsigradcam.app.web.views`; none of them imports Gradio, so they are tested without a
browser.

Example:
    >>> explorer = open_explorer("efficientnet_lite0", work_dir=tmp)      # doctest: +SKIP
    >>> options = check_options(explorer, ["head"], ["rsi"], "50")        # doctest: +SKIP
    >>> classify(explorer, "cat.jpg").top5[0].name                        # doctest: +SKIP
    'Egyptian cat'
"""

from __future__ import annotations

import copy
import queue
import shutil
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rsigradcam.app.errors import InputError
from rsigradcam.app.explain import ClassScore, Steps, top_classes
from rsigradcam.app.layer_list import layer_lines
from rsigradcam.app.loading.layers import LayerInfo, check_layers, probe_layers
from rsigradcam.app.loading.methods import parse_methods
from rsigradcam.app.loading.models import LoadedModel, load_model
from rsigradcam.app.samples import SKIMAGE_PHOTOS, find_paper_samples, sample_images
from rsigradcam.app.settings import InputFormat, Variants
from rsigradcam.baselines import BASELINE_NAMES, AutoBaseline
from rsigradcam.core.inference import SpeedSpec
from rsigradcam.core.limits import check_steps
from rsigradcam.core.targets import Output
from rsigradcam.files import one_line, save_png
from rsigradcam.io import ImageLoadError
from rsigradcam.methods import METHODS

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_METHODS",
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOAD_PIXELS",
    "STEP_CHOICES",
    "Classification",
    "Explorer",
    "ExplorerPool",
    "Options",
    "Progress",
    "check_options",
    "check_upload",
    "classify",
    "error_line",
    "load_input",
    "no_progress",
    "open_explorer",
    "parse_steps",
]

#: The steps the page offers (any other number can be typed).
STEP_CHOICES: tuple[str, ...] = ("auto", "8", "16", "32", "50", "100", "200")
#: The methods ticked when the page opens: Grad-CAM and RSI-Grad-CAM, as in the demo.
DEFAULT_METHODS: tuple[str, ...] = ("gradcam", "rsi")
#: Requests that may wait while the model is busy (``--max-queue``); more are refused.
DEFAULT_MAX_QUEUE = 8
#: Requests that run at once (``--concurrency``), each on its own copy of the model.
DEFAULT_CONCURRENCY = 1
#: The largest image file the app takes (bytes); the server refuses larger uploads too.
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
#: The most pixels (width x height) the app decodes: 50 megapixels, 150 MB as RGB.
MAX_UPLOAD_PIXELS = 50_000_000

#: ``progress(fraction, description)``: how far a computation is, for the page.
Progress = Callable[[float, str], None]


def no_progress(fraction: float, description: str) -> None:
    """A :data:`Progress` that shows nothing."""


def error_line(exc: BaseException) -> str:
    r"""One line for the page: the message of a known error, the type and message otherwise.

    An unexpected error (not a ``ValueError`` or ``OSError``, which carry the project's
    one-line messages) also prints its traceback on the server's stderr, never in the page.

    Example:
        >>> error_line(ValueError("bad\\n  layer"))
        'bad layer'
    """
    if isinstance(exc, (ValueError, OSError)) and str(exc):
        return one_line(str(exc))
    traceback.print_exception(type(exc), exc, exc.__traceback__)
    return one_line(f"{type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------------------
# The model, loaded once
# --------------------------------------------------------------------------------------


@dataclass
class Explorer:
    """The model the page explains, loaded once at startup, and what the page offers.

    Attributes:
        loaded: The model and its class names.
        input_format: Its input size and normalisation.
        layers: Every module seen by a probe pass (:func:`probe_layers`).
        layer_choices: ``(label, name)`` of each explainable layer in the model's order
            (a block before its own layers): the label is the line of
            ``rsigradcam layers`` (name, type, shape).
        samples: Sample photos by name (files in ``work_dir``).
        work_dir: A private folder for the samples and the downloads.
        auto_baseline: The ``auto`` baseline, fitted on first use and then reused.
        speed: How the methods run the model (``"auto"``: a prepared private copy;
            ``"off"``: the model as given, see :class:`ExplorerPool`).
    """

    loaded: LoadedModel
    input_format: InputFormat
    layers: tuple[LayerInfo, ...]
    layer_choices: tuple[tuple[str, str], ...]
    samples: dict[str, Path]
    work_dir: Path
    auto_baseline: AutoBaseline | None = field(default=None, repr=False)
    speed: SpeedSpec = "auto"

    @property
    def default_layer(self) -> str:
        """The last explainable layer to finish (``--layer auto``; ``head`` when embedded)."""
        return [info.name for info in self.layers if info.explainable][-1]

    def describe(self) -> str:
        """``"efficientnet_lite0: 1000 classes, input 224x224, ImageNet mean and std"``."""
        return (
            f"{self.loaded.name}: {self.loaded.num_classes} classes, input "
            f"{self.input_format.describe()}"
        )

    def baseline(self, name: str) -> str | AutoBaseline:
        """The path methods' baseline by name; ``auto`` is fitted once and kept.

        Raises:
            InputError: Not one of :data:`~rsigradcam.baselines.BASELINE_NAMES` (the page
                offers no baseline files: they would be read from the server's disk).
        """
        _check_baseline_name(name)
        if name == "auto":
            if self.auto_baseline is None:
                self.auto_baseline = AutoBaseline(self.loaded.model)
            return self.auto_baseline
        return name


def _check_baseline_name(name: str) -> None:
    if name not in BASELINE_NAMES:
        raise InputError(f"unknown baseline {name!r}; use one of {', '.join(BASELINE_NAMES)}")


def open_explorer(
    model: str = "efficientnet_lite0",
    device: str = "cpu",
    input_format: InputFormat | None = None,
    *,
    work_dir: str | Path,
    samples: Path | None = None,
) -> Explorer:
    """Load the model, list its explainable layers and write the sample photos.

    Args:
        model: ``efficientnet_lite0``, a ``.pt2`` file or ``module:callable`` (as
            ``--model`` takes it in every command).
        device: ``"cpu"`` or ``"cuda"``.
        input_format: The input size and normalisation (default 224x224, ImageNet).
        work_dir: An existing folder for the samples and the downloads.
        samples: A folder of extra sample photos (.jpg); default the paper samples when a
            ``shared/data/paper-samples`` folder is found.

    Raises:
        InputError: The model cannot be loaded, or it has no layer that can be explained.
    """
    fmt = input_format or InputFormat()
    loaded = load_model(model, device, fmt.size)
    layers = tuple(probe_layers(loaded.model, fmt.size))
    found = [info for info in layers if info.explainable]
    if not found:
        raise InputError(
            f"model {model!r} has no layer with a spatial (K, h, w) output to explain"
        )
    labels = [line.replace("  (default)", "") for line in layer_lines(loaded.model, found)]
    choices = _in_model_order(
        loaded.model, [(label, info.name) for label, info in zip(labels, found, strict=True)]
    )
    folder = Path(work_dir) / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    extra = samples if samples is not None else find_paper_samples()
    for name, _, source in sample_images(tuple(SKIMAGE_PHOTOS), extra):
        if isinstance(source, np.ndarray):
            written[name] = save_png(source, folder / f"{name}.png")
        else:
            path = Path(str(source))
            written[name] = Path(shutil.copyfile(path, folder / path.name))
    return Explorer(loaded, fmt, layers, choices, written, Path(work_dir))


def _in_model_order(
    model: torch.nn.Module, choices: Sequence[tuple[str, str]]
) -> tuple[tuple[str, str], ...]:
    """``(label, name)`` pairs in ``model.named_modules()`` order: parents before children.

    A probe lists a block after its own layers (the order they finish); typing
    ``blocks.5`` in the page should find the block first. Names a probe saw but the model
    does not list keep the probe's order, after the others.
    """
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    ranked = sorted(
        enumerate(choices), key=lambda item: (order.get(item[1][1], len(order)), item[0])
    )
    return tuple(choice for _, choice in ranked)


class ExplorerPool:
    """``size`` explorers that run at the same time, each with its own copy of the model.

    A method borrows the model while it runs (it installs hooks on it), so two requests at
    once need two copies; the page's ``--concurrency`` sets ``size``. The first explorer
    shares the given one's model; each other holds a deep copy of it (more memory, one
    model each). :meth:`borrow` waits until one is free.

    With more than one, every explorer runs its model as given (``speed="off"``): the
    prepared copies that fold BatchNorms are found by tracing the model with ``torch.fx``,
    which patches ``nn.Module.__call__`` for the whole process while it traces, and would
    break a forward pass running in another thread at that moment.
    """

    def __init__(self, explorer: Explorer, size: int = DEFAULT_CONCURRENCY) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InputError(f"concurrency must be a positive integer, got {size!r}")
        self.explorer = explorer if size == 1 else replace(explorer, speed="off")
        self.size = size
        self._free: queue.Queue[Explorer] = queue.Queue()
        self._free.put(self.explorer)
        for _ in range(size - 1):
            loaded = replace(explorer.loaded, model=copy.deepcopy(explorer.loaded.model))
            self._free.put(replace(self.explorer, loaded=loaded, auto_baseline=None))

    @contextmanager
    def borrow(self) -> Iterator[Explorer]:
        """An explorer no other request is using, until the block ends."""
        explorer = self._free.get()
        try:
            yield explorer
        finally:
            self._free.put(explorer)


# --------------------------------------------------------------------------------------
# The page's options
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """What to explain, checked: the page's widgets (or the API's arguments)."""

    layers: tuple[str, ...]
    methods: tuple[str, ...]
    steps: Steps = 50
    output: Output = "softmax"
    baseline: str = "black"
    variants: Variants = field(default_factory=Variants)

    @property
    def path_methods(self) -> tuple[str, ...]:
        """The chosen methods that integrate (``rsi``, ``integrated-gradcam``, ``ig``)."""
        return tuple(m for m in self.methods if METHODS[m].takes_steps)


def parse_steps(value: object) -> Steps:
    """Steps m from the page: a number of intervals (1 to 100,000) or ``"auto"``.

    Raises:
        InputError: Anything else, in one line.

    Example:
        >>> parse_steps(" 50 "), parse_steps(32.0), parse_steps("Auto")
        (50, 32, 'auto')
    """
    number: object = value
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == "auto":
            return "auto"
        number = int(text) if text.isdigit() else text
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    try:
        return check_steps(number, "steps")
    except ValueError as err:
        raise InputError(f"{str(err).rstrip('.')}, or 'auto'") from None


def check_options(
    explorer: Explorer,
    layers: Sequence[str] | str | None,
    methods: Sequence[str] | str | None,
    steps: object = 50,
    output: str = "softmax",
    baseline: str = "black",
    grad_relu: bool = False,
    guided: bool = False,
) -> Options:
    """Check the page's choices and return them as :class:`Options`.

    Raises:
        InputError: No layer or method, an unknown one, steps that are not a number or
            ``auto`` (or ``auto`` with a method other than ``rsi``), an unknown output or
            baseline, or ``grad_relu`` / ``guided`` without ``rsi``.
    """
    chosen_layers = [layers] if isinstance(layers, str) else list(layers or [])
    if not chosen_layers:
        raise InputError("choose at least one layer")
    names = check_layers(chosen_layers, explorer.layers)
    chosen = parse_methods([methods] if isinstance(methods, str) else list(methods or []))
    parsed = parse_steps(steps)
    if parsed == "auto":
        fixed = [m for m in chosen if METHODS[m].takes_steps and m != "rsi"]
        if fixed:
            raise InputError(
                f"steps 'auto' is for rsi only; give {', '.join(fixed)} a number of steps, "
                "or untick them"
            )
    if output not in ("softmax", "logits"):
        raise InputError(f"output must be softmax or logits, got {output!r}")
    _check_baseline_name(baseline)
    variants = Variants(bool(grad_relu), bool(guided))
    variants.check(chosen)
    score: Output = "softmax" if output == "softmax" else "logits"
    return Options(tuple(names), chosen, parsed, score, baseline, variants)


# --------------------------------------------------------------------------------------
# Classifying
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Classification:
    """An image and its top-5 classes (most probable first)."""

    image: str
    top5: tuple[ClassScore, ...]

    def choices(self) -> list[tuple[str, int]]:
        """``("Egyptian cat  0.799", 285)`` per class, for the page's class picker."""
        return [
            (f"{score.name or f'class {score.class_id}'}  {score.probability:.3f}", score.class_id)
            for score in self.top5
        ]


def _megabytes(size: int) -> str:
    return f"{size / 2**20:,.1f} MB"


def check_upload(
    image: str | Path,
    *,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_UPLOAD_PIXELS,
) -> None:
    """Refuse a file larger than the app takes, from its size and its header alone.

    Nothing is decoded: Pillow reads the header (width, height) and stops. A file whose
    header Pillow cannot read is left to :func:`rsigradcam.io.load_image`, whose messages
    say what is wrong with it.

    Raises:
        InputError: More than ``max_bytes`` bytes, or more than ``max_pixels`` pixels;
            the message names the file, not the folder the server keeps it in.
    """
    path = Path(image)
    name = path.name
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(
            f"{name!r} is {_megabytes(size)}; the app takes image files up to "
            f"{_megabytes(max_bytes)}"
        )
    too_large = f"the app takes images up to {max_pixels:,} pixels: make it smaller first"
    try:
        with Image.open(path) as header:  # lazy: reads the header, decodes nothing
            width, height = header.size
    except Image.DecompressionBombError:  # Pillow's own limit, far above the app's
        raise InputError(f"{name!r} has more pixels than Pillow opens; {too_large}") from None
    except (OSError, ValueError, SyntaxError):  # load_image says what is wrong, in one line
        return
    if width * height > max_pixels:
        raise InputError(f"{name!r} is {width}x{height} = {width * height:,} pixels; {too_large}")


def load_input(explorer: Explorer, image: str | Path | None) -> torch.Tensor:
    """Read an image file as the model's input, on its device.

    :func:`check_upload` runs first: a file over the app's limits is refused undecoded.

    Raises:
        InputError: No image, or an image over the app's limits.
        rsigradcam.io.ImageLoadError: The file is not a readable image.
    """
    if image is None or not str(image):
        raise InputError("no image: upload one, drop one on the image box, or pick a sample")
    if Path(image).is_file():
        check_upload(image)
    try:
        tensor, _ = explorer.input_format.load(str(image))  # load_image's checks, one line each
    except ImageLoadError as exc:  # name the upload, not where the server keeps it
        raise ImageLoadError(str(exc).replace(str(image), Path(image).name)) from None
    return tensor.to(explorer.loaded.device)


def classify(explorer: Explorer, image: str | Path | None) -> Classification:
    """The top-5 classes of an image file.

    Raises:
        InputError: No image.
        rsigradcam.io.ImageLoadError: The file is not a readable image, is truncated, or
            is too large (a possible decompression bomb).
    """
    top5, _ = top_classes(explorer.loaded, load_input(explorer, image))
    return Classification(str(image), tuple(top5))
