"""Turn the user's strings into the things an explanation needs.

:func:`load_model` turns a ``--model`` argument into a classifier and its class names,
:func:`probe_layers` and :func:`check_layers` check layer arguments,
:func:`resolve_class` turns a class id or name into an index and
:func:`resolve_baseline` a ``--baseline`` into a baseline. Arguments that cannot work
raise :class:`InputError`, a ``ValueError`` whose message is one line.

Models given as ``"module:callable"`` are imported and called, and model files are
deserialised and run: only load models that you trust.

Example:
    >>> from rsigradcam.app.loading.models import load_model
    >>> loaded = load_model("efficientnet_lite0")   # doctest: +SKIP
    >>> loaded.label(285)                           # doctest: +SKIP
    'Egyptian cat'
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import re
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rsigradcam.app.errors import InputError
from rsigradcam.baselines import BASELINE_NAMES, AutoBaseline, BaselineSpec
from rsigradcam.core.capture import LayerCapture, describe, is_spatial_map, logits_of, model_device
from rsigradcam.files import one_line
from rsigradcam.methods.registry import METHODS
from rsigradcam.models import efficientnet_lite0, imagenet_classes

__all__ = [
    "EMBEDDED_MODELS",
    "FIXED_BUDGET_MB",
    "INPUT_SIZE",
    "PROBE_SIZES",
    "InputError",
    "LayerInfo",
    "LoadedModel",
    "check_device",
    "check_layers",
    "load_model",
    "model_sha256",
    "parse_methods",
    "probe_layers",
    "resolve_baseline",
    "resolve_class",
]

#: Memory budget of a path chunk (MB) in dataset runs and evaluations. It is fixed, not
#: taken from the free memory, so that chunks, and with them the results, are the same on
#: every run.
FIXED_BUDGET_MB = 1024.0
#: Models shipped with the package, by the name ``--model`` accepts.
EMBEDDED_MODELS: dict[str, Callable[[], nn.Module]] = {"efficientnet_lite0": efficientnet_lite0}
#: Height and width the images are resized to (whole image, ImageNet normalisation).
INPUT_SIZE = 224
_IMAGENET_CLASSES = 1000



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


def check_device(device: str | torch.device) -> torch.device:
    """The torch device for a ``--device`` argument; :class:`InputError` if it cannot run here."""
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
            f"model {spec!r}: {attribute}() returned {describe(model)}, not a "
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
            f"{label} is not a PyTorch model archive ({one_line(str(exc))}); pass a .pt2 "
            "file written by torch.export.save, efficientnet_lite0, or module:callable"
        ) from exc
    if "archive_format" in entries:
        try:
            with warnings.catch_warnings():
                # torch's own deprecation notices while deserialising; not the user's concern.
                warnings.simplefilter("ignore", FutureWarning)
                exported = torch.export.load(str(path))
        except Exception as exc:
            raise InputError(f"{label} cannot be loaded: {one_line(str(exc))[:300]}") from exc
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


def load_model(
    spec: str = "efficientnet_lite0",
    device: str | torch.device = "cpu",
    size: tuple[int, int] = (INPUT_SIZE, INPUT_SIZE),
) -> LoadedModel:
    """Load the classifier that a ``--model`` argument names.

    Args:
        spec: ``"efficientnet_lite0"`` (embedded, ImageNet weights); the path of a ``.pt2``
            file written by ``torch.export.save`` (its layers keep their names); or
            ``"module:callable"``, a function (or a module attribute holding an
            ``nn.Module``) that returns the model, imported from the current folder or
            the Python path. Loading a model file or importing a module runs its code.
        device: ``"cpu"`` or ``"cuda"``.
        size: ``(height, width)`` of its inputs (``--size``), checked with a probe.

    Returns:
        The model in eval mode with its number of classes and class names: the ImageNet
        names for the embedded model and for any model with 1000 outputs (assumed to use
        the ImageNet class order), ``None`` otherwise.

    Raises:
        InputError: The model cannot be found, or the file is not a format that can be
            explained (TorchScript and ``torch.save`` checkpoints are refused, with the
            alternative), or the model is not an image classifier: it must map a batch of
            ``(N, 3, height, width)`` images to ``(N, classes)`` scores. When the size is
            what fails, the message says so and names a size that works, if one of
            :data:`PROBE_SIZES` does.

    Example:
        >>> loaded = load_model("efficientnet_lite0")  # doctest: +SKIP
        >>> loaded.num_classes, loaded.label(967)       # doctest: +SKIP
        (1000, 'espresso')
    """
    dev = check_device(device)
    model = _build(spec, dev).eval()
    height, width = size
    try:
        output = _run_probe(model, 2, size, dev)
    except Exception as exc:
        reason = f"({type(exc).__name__}: {one_line(str(exc))[:300]})"
        if _fits(model, size, dev):  # one image works: the batch size is what fails
            raise InputError(
                f"model {spec!r} fails on a batch of two 3x{height}x{width} images {reason}; "
                "it must accept any batch size (export .pt2 files with a dynamic batch "
                "dimension)"
            ) from exc
        fitting = next((s for s in PROBE_SIZES if s != size and _fits(model, s, dev)), None)
        hint = (
            f"pass --size {_size_text(fitting)} if the model expects "
            f"{fitting[0]}x{fitting[1]} images"
            if fitting is not None
            else "pass --size HxW with the input size the model expects"
        )
        raise InputError(
            f"model {spec!r} fails on a {height}x{width} input {reason}; {hint}"
        ) from exc
    scores = _scores(output)
    if scores is None or scores.dim() != 2 or scores.shape[0] != 2:
        shown = describe(output if scores is None else scores)
        raise InputError(
            f"model {spec!r} returned {shown} for 2 images; a classifier must return (N, "
            "classes) scores: a tensor, a ModelOutput or dict with 'logits', or a tuple of them"
        )
    num_classes = int(scores.shape[1])
    names = (
        imagenet_classes() if spec in EMBEDDED_MODELS or num_classes == _IMAGENET_CLASSES else None
    )
    return LoadedModel(model, spec, num_classes, names, dev)


#: Input sizes tried, smallest first, when a model fails at the requested one.
PROBE_SIZES: tuple[tuple[int, int], ...] = tuple(
    (s, s) for s in (28, 32, 64, 96, 128, 160, 192, 224, 256, 299, 384)
)


def _run_probe(model: nn.Module, n: int, size: tuple[int, int], dev: torch.device) -> Any:
    with torch.no_grad():
        return model(torch.zeros(n, 3, *size, device=dev))


def _fits(model: nn.Module, size: tuple[int, int], dev: torch.device) -> bool:
    """Whether one black image of ``size`` gives (1, classes) scores."""
    try:
        output = _run_probe(model, 1, size, dev)
    except Exception:
        return False
    scores = _scores(output)
    return scores is not None and scores.dim() == 2 and scores.shape[0] == 1


def _scores(output: Any) -> torch.Tensor | None:
    """:func:`logits_of` a probe's output, ``None`` when it holds no scores."""
    with contextlib.suppress(ValueError):
        return logits_of(output)
    return None


def _size_text(size: tuple[int, int]) -> str:
    return str(size[0]) if size[0] == size[1] else f"{size[0]}x{size[1]}"


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


def probe_layers(
    model: nn.Module, size: int | tuple[int, int] = INPUT_SIZE
) -> list[LayerInfo]:
    """Run one black image of ``size`` (a side or ``(h, w)``); list each module's output.

    The modules come in the order they finish (a block after its own layers); each
    module appears once, with how many times it ran.

    Example:
        >>> infos = probe_layers(efficientnet_lite0())  # doctest: +SKIP
        >>> [i.name for i in infos if i.explainable][-1]  # doctest: +SKIP
        'head'
    """
    height, width = size if isinstance(size, tuple) else (size, size)
    image = torch.zeros(1, 3, height, width, device=model_device(model))
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
        raise InputError(f"baseline file {spec} could not be read: {one_line(str(err))}") from err
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
        raise InputError(one_line(str(err))) from err


def model_sha256(model: nn.Module) -> str:
    """A SHA-256 of every parameter and buffer of ``model``: names, dtypes, shapes, bytes."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def parse_methods(values: Sequence[str]) -> tuple[str, ...]:
    """Turn ``--method`` values (repeated, or comma lists; ``all``) into method names.

    The names are the keys of :data:`rsigradcam.methods.registry.METHODS`; ``all`` means
    every one, in the registry's order. Repeated names count once.

    Raises:
        InputError: An unknown name, or no name at all.

    Example:
        >>> parse_methods(["rsi,gradcam", "rsi"])
        ('rsi', 'gradcam')
    """
    names: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip().lower()
            if name == "all":
                names.extend(METHODS)
            elif name in METHODS:
                names.append(name)
            elif name:
                raise InputError(
                    f"unknown method {part.strip()!r}; use {', '.join(METHODS)} or all"
                )
    if not names:
        raise InputError(f"no method given; use {', '.join(METHODS)} or all")
    return tuple(dict.fromkeys(names))
