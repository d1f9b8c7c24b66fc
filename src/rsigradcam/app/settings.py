"""Settings that several commands share: how images become inputs, and the authors' variants.

:class:`InputFormat` is the model's input: its size (``--size``) and normalisation
(``--mean``/``--std``, or ``--no-normalize``), read from the user's strings by
:func:`input_format`. :class:`Variants` are the authors' variants of RSI-Grad-CAM
(``--grad-relu``, their PyTorch notebooks; ``--guided``, their Keras notebook): they apply
to the methods whose class lists them in ``variants`` (``rsi``), and the commands refuse
them when no chosen method takes them. Each records itself in the commands' JSON files.

Example:
    >>> input_format("32", "0.5,0.5,0.5", "0.25,0.25,0.25", False).describe()
    '32x32, mean (0.5, 0.5, 0.5) and std (0.25, 0.25, 0.25)'
    >>> Variants(grad_relu=True).caption("rsi")
    ' (grad ReLU)'
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from rsigradcam.app.errors import InputError
from rsigradcam.app.loading.models import INPUT_SIZE
from rsigradcam.baselines import Normalize
from rsigradcam.constants import IMAGENET_MEAN, IMAGENET_STD
from rsigradcam.core.inference import SpeedOptions
from rsigradcam.explanation import Explanation
from rsigradcam.io import ImageSource, load_image
from rsigradcam.methods.registry import METHODS
from rsigradcam.methods.rsi import NO_COMPLETENESS_REASON
from rsigradcam.serialization import json_options

__all__ = [
    "MAX_SIDE",
    "NO_COMPLETENESS_REASON",
    "Channels",
    "InputFormat",
    "Variants",
    "completeness_warnings",
    "input_format",
    "parse_channels",
    "parse_size",
    "speed_options",
]

#: The largest height or width ``--size`` accepts.
MAX_SIDE = 4096

#: Three per-channel values (R, G, B).
Channels = tuple[float, float, float]


@dataclass(frozen=True)
class InputFormat:
    """How an image becomes a model input: resized to ``size``, then normalised.

    Attributes:
        size: ``(height, width)`` of the model input (whole image resized).
        mean: Per-channel mean (R, G, B) of images in [0, 1], or ``None``: not normalised.
        std: Per-channel standard deviation, ``None`` exactly when ``mean`` is.
    """

    size: tuple[int, int] = field(
        default=(INPUT_SIZE, INPUT_SIZE), metadata=json_options(key="input_size")
    )
    mean: Channels | None = IMAGENET_MEAN
    std: Channels | None = IMAGENET_STD

    def __post_init__(self) -> None:
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std are both given or both None (not normalised)")

    @property
    def normalize(self) -> Normalize:
        """``(mean, std)`` for the path methods' black baseline; ``None``: pixels in [0, 1]."""
        return None if self.mean is None or self.std is None else (self.mean, self.std)

    @property
    def size_text(self) -> str:
        """``"224x224"``: height x width."""
        return f"{self.size[0]}x{self.size[1]}"

    def load(self, source: ImageSource) -> tuple[torch.Tensor, np.ndarray]:
        """Read an image as an input ``(1, 3, H, W)`` and the resized ``(H, W, 3)`` uint8 RGB."""
        return load_image(
            source,
            size=self.size,
            mean=self.mean or (0.0, 0.0, 0.0),
            std=self.std or (1.0, 1.0, 1.0),
        )

    def describe(self) -> str:
        """``"224x224, ImageNet mean and std"``, or the values, or ``"not normalised"``."""
        if self.mean is None or self.std is None:
            return f"{self.size_text}, not normalised (pixels in [0, 1])"
        if (self.mean, self.std) == (IMAGENET_MEAN, IMAGENET_STD):
            return f"{self.size_text}, ImageNet mean and std"
        return f"{self.size_text}, mean {_triple(self.mean)} and std {_triple(self.std)}"


def _triple(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def parse_size(text: str) -> tuple[int, int]:
    """``--size``: one number (a square) or ``HxW``, each side 1 to :data:`MAX_SIDE`.

    Raises:
        InputError: Anything else, in one line.

    Example:
        >>> parse_size("32"), parse_size("224x320")
        ((32, 32), (224, 320))
    """
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX×]\s*(\d+)\s*)?", text)
    if match is None:
        raise InputError(f"--size must be one number or HxW (e.g. 224 or 224x320), got {text!r}")
    height = int(match.group(1))
    width = int(match.group(2)) if match.group(2) is not None else height
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise InputError(
            f"--size {text.strip()}: each side must be from 1 to {MAX_SIDE} pixels"
        )
    return height, width


def parse_channels(text: str, option: str) -> Channels:
    """``--mean`` or ``--std``: three numbers (R, G, B), e.g. ``0.5,0.5,0.5``.

    Raises:
        InputError: Not three finite numbers, or a ``--std`` value that is not positive.

    Example:
        >>> parse_channels("0.485, 0.456, 0.406", "--mean")
        (0.485, 0.456, 0.406)
    """
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise InputError(
            f"{option} must be three numbers (R, G, B) separated by commas, e.g. "
            f"{option} 0.5,0.5,0.5; got {text!r}"
        )
    if option == "--std" and min(values) <= 0:
        raise InputError(f"--std values must be positive, got {text!r}")
    return values[0], values[1], values[2]


def input_format(
    size: str | None = None,
    mean: str | None = None,
    std: str | None = None,
    no_normalize: bool = False,
) -> InputFormat:
    """The input format that ``--size``, ``--mean``, ``--std`` and ``--no-normalize`` ask for.

    Without them: 224x224 with the ImageNet mean and std. ``--mean`` or ``--std`` alone
    keeps the ImageNet value of the other one.

    Raises:
        InputError: A malformed value, or ``--no-normalize`` with ``--mean`` or ``--std``.
    """
    shape = parse_size(size) if size is not None else (INPUT_SIZE, INPUT_SIZE)
    if no_normalize:
        if mean is not None or std is not None:
            raise InputError("--no-normalize cannot be combined with --mean or --std")
        return InputFormat(shape, None, None)
    return InputFormat(
        shape,
        parse_channels(mean, "--mean") if mean is not None else IMAGENET_MEAN,
        parse_channels(std, "--std") if std is not None else IMAGENET_STD,
    )


#: The variants' option names and how captions name them.
_VARIANTS = {"grad_relu": ("--grad-relu", "grad ReLU"), "guided": ("--guided", "guided")}


def _method_variants(method: str) -> tuple[str, ...]:
    variants: tuple[str, ...] = METHODS[method].variants
    return variants


@dataclass(frozen=True)
class Variants:
    """The authors' variants of RSI-Grad-CAM, for the methods that take them (``rsi``).

    Attributes:
        grad_relu: ReLU on the gradients before integrating (the authors' PyTorch code).
        guided: Keep the integrated gradient only where the activation, the integrated
            gradient and the activation's change are positive (the authors' Keras code).
    """

    grad_relu: bool = False
    guided: bool = False

    @property
    def chosen(self) -> tuple[str, ...]:
        """The variants that are on, by parameter name (``"grad_relu"``, ``"guided"``)."""
        return tuple(name for name in _VARIANTS if getattr(self, name))

    def applies_to(self, method: str) -> bool:
        """Whether a chosen variant changes ``method`` (its class takes it)."""
        return any(name in _method_variants(method) for name in self.chosen)

    def options_for(self, method: str) -> dict[str, bool]:
        """The keyword options for ``create_cam``: those ``method``'s class takes."""
        return {name: getattr(self, name) for name in _method_variants(method)}

    def check(self, methods: Sequence[str]) -> None:
        """Refuse chosen variants that no method of ``methods`` takes.

        Raises:
            InputError: One line naming the options and the methods that take them.
        """
        unused = [n for n in self.chosen if not any(n in _method_variants(m) for m in methods)]
        if unused:
            options = " and ".join(_VARIANTS[name][0] for name in unused)
            takers = [m for m in METHODS if any(n in _method_variants(m) for n in unused)]
            verb = "apply" if len(unused) > 1 else "applies"
            raise InputError(
                f"{options} {verb} only to {', '.join(takers)}, which is not among the chosen "
                f"methods ({', '.join(methods)}); add --method {takers[0]} or drop {options}"
            )

    def caption(self, method: str) -> str:
        """``" (grad ReLU)"``, ``" (guided)"``, ``" (grad ReLU, guided)"`` or ``""``."""
        names = [_VARIANTS[n][1] for n in self.chosen if n in _method_variants(method)]
        return f" ({', '.join(names)})" if names else ""

    def warnings(self, methods: Sequence[str]) -> list[str]:
        """Why completeness is null for the chosen methods a variant changes (or nothing).

        The reason is the library's :data:`rsigradcam.methods.rsi.NO_COMPLETENESS_REASON`.
        """
        changed = [m for m in methods if self.applies_to(m)]
        return [f"{', '.join(changed)}: {NO_COMPLETENESS_REASON}"] if changed else []


def completeness_warnings(explanations: Mapping[str, Mapping[str, Explanation]]) -> list[str]:
    """Why completeness is null at the layers the score can bypass, one line per method.

    ``explanations[method][layer]``; each line names the method and its layers, then the
    explanations' :attr:`~rsigradcam.explanation.Explanation.completeness_note`
    (``"rsi at vit.layers.1.layernorm_before: completeness_error does not apply at a layer
    the score can bypass ..."``). The variants' reason is left to :meth:`Variants.warnings`.
    """
    lines = []
    for method, by_layer in explanations.items():
        by_note: dict[str, list[str]] = {}
        for layer, exp in by_layer.items():
            if exp.completeness_note and exp.completeness_note != NO_COMPLETENESS_REASON:
                by_note.setdefault(exp.completeness_note, []).append(layer)
        lines += [f"{method} at {', '.join(layers)}: {note}" for note, layers in by_note.items()]
    return lines


def speed_options(compile: bool = False, fold_batchnorm: bool | None = None) -> SpeedOptions:
    """The methods' speed from ``--compile`` and ``--fold-batchnorm/--no-fold-batchnorm``.

    ``fold_batchnorm=None`` is the default of
    :class:`~rsigradcam.core.inference.SpeedOptions` (on).

    Example:
        >>> speed_options(compile=True).compile
        True
    """
    fold = True if fold_batchnorm is None else fold_batchnorm
    return SpeedOptions(fold_batchnorm=fold, compile=compile)
