"""``--model``: the classifier a model argument names, checked with a probe pass.

:func:`load_model` turns a ``--model`` argument into a classifier and its class names, and
:func:`check_device` a ``--device`` into a torch device. Arguments that cannot work raise
:class:`~rsigradcam.app.errors.InputError`, a ``ValueError`` whose message is one line.

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
import importlib
import re
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rsigradcam.app.errors import InputError
from rsigradcam.app.loading.suggest import did_you_mean, suggest
from rsigradcam.core.capture import describe, logits_of
from rsigradcam.files import one_line
from rsigradcam.models import efficientnet_lite0, imagenet_classes

__all__ = [
    "EMBEDDED_MODELS",
    "INPUT_SIZE",
    "PROBE_SIZES",
    "LoadedModel",
    "check_device",
    "load_model",
]

#: Models shipped with the package, by the name ``--model`` accepts.
EMBEDDED_MODELS: dict[str, Callable[[], nn.Module]] = {"efficientnet_lite0": efficientnet_lite0}
#: Height and width the images are resized to (whole image, ImageNet normalisation).
INPUT_SIZE = 224
_IMAGENET_CLASSES = 1000


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
        f"unknown model {spec!r}{did_you_mean(suggest(spec, list(EMBEDDED_MODELS)))}; pass "
        f"{', '.join(EMBEDDED_MODELS)}, a .pt2 file (torch.export.save) or module:callable"
    )


def load_model(
    spec: str = "efficientnet_lite0",
    device: str | torch.device = "cpu",
    size: tuple[int, int] = (INPUT_SIZE, INPUT_SIZE),
    array_shape: tuple[int, ...] | None = None,
    array_label: str = "the array",
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
        array_shape: The shape ``(C, *S)`` of an array input, probed instead of
            ``(3, *size)`` images; the model may then also return ``(N, K, *s)`` scores
            (a segmentation model).
        array_label: How the errors name that array, e.g. ``"array 'vol.npy'"``.

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
    if array_shape is not None:
        return _load_for_array(model, spec, dev, array_shape, array_label)
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
    return _loaded(model, spec, scores, dev)


def _loaded(model: nn.Module, spec: str, scores: torch.Tensor, dev: torch.device) -> LoadedModel:
    num_classes = int(scores.shape[1])
    names = (
        imagenet_classes() if spec in EMBEDDED_MODELS or num_classes == _IMAGENET_CLASSES else None
    )
    return LoadedModel(model, spec, num_classes, names, dev)


def _load_for_array(
    model: nn.Module, spec: str, dev: torch.device, shape: tuple[int, ...], label: str
) -> LoadedModel:
    """Probe with two all-zero inputs of the array's own shape (no 224x224 image)."""
    from rsigradcam.app.arrays import check_channels

    check_channels(label, shape, model, spec)
    try:
        with torch.no_grad():
            output = model(torch.zeros(2, *shape, device=dev))
    except Exception as exc:
        raise InputError(
            f"model {spec!r} fails on {label} of shape {shape} ({type(exc).__name__}: "
            f"{one_line(str(exc))[:300]}); give arrays (C, *S) of the shape the model takes"
        ) from exc
    scores = _scores(output)
    if scores is None or scores.dim() < 2 or scores.shape[0] != 2:
        shown = describe(output if scores is None else scores)
        raise InputError(
            f"model {spec!r} returned {shown} for 2 inputs of shape {shape}; it must return "
            "(N, classes) scores, or (N, classes, *S) for a segmentation model: a tensor, a "
            "ModelOutput or dict with 'logits', or a tuple of them"
        )
    return _loaded(model, spec, scores, dev)


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
