"""The inputs of an evaluation: its images and the layers to explain.

Example:
    >>> loaded = load_model("efficientnet_lite0")                        # doctest: +SKIP
    >>> images, notes = load_images(EvaluationOptions(max_images=2), loaded)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from rsigradcam.app.errors import InputError
from rsigradcam.app.evaluation.options import EvaluationOptions
from rsigradcam.app.images import list_images
from rsigradcam.app.loading.layers import check_layers, probe_layers
from rsigradcam.app.loading.models import EMBEDDED_MODELS, LoadedModel
from rsigradcam.app.samples import (
    DEMO_LAYERS,
    EVALUATION_PHOTOS,
    find_paper_samples,
    sample_images,
)

__all__ = ["SKIPPED", "EvalImage", "load_images", "resolve_layers", "skipped_images"]

#: How a run's notes begin for an image that could not be read (see :func:`skipped_images`).
SKIPPED = "skipped "


@dataclass(frozen=True)
class EvalImage:
    """One image of the evaluation.

    Attributes:
        name: A short unique name (the file's path relative to the folder).
        source: Where it came from.
        tensor: (1, 3, H, W) normalised input (``options.input_size``), on the CPU.
        rgb: (H, W, 3) uint8, the resized image the model saw.
        target: The class to explain, or ``None`` for the top-1 class.
    """

    name: str
    source: str
    tensor: Tensor
    rgb: np.ndarray
    target: int | None = None


def load_images(
    options: EvaluationOptions, loaded: LoadedModel, exclude: Path | None = None
) -> tuple[list[EvalImage], list[str]]:
    """Read the images of a run, resized and normalised as ``options.input_format`` says.

    Returns:
        The images (at most ``options.max_images``) and one warning per unreadable file,
        which is skipped.

    Raises:
        InputError: The folder does not exist or holds no readable image.
    """
    notes: list[str] = []
    found: list[EvalImage] = []
    limit = options.max_images or math.inf
    load_image = options.input_format.load
    if options.images is None:
        for name, source, value in sample_images(EVALUATION_PHOTOS, find_paper_samples()):
            if len(found) >= limit:
                break
            tensor, rgb = load_image(value)
            found.append(EvalImage(name, source, tensor, rgb))
        return found, notes
    entries = list_images(
        options.images, exclude=exclude, class_names=loaded.class_names,
        num_classes=loaded.num_classes,
    )
    for entry in entries:
        if len(found) >= limit:
            break
        try:
            tensor, rgb = load_image(entry.path)
        except (OSError, ValueError) as exc:
            notes.append(f"{SKIPPED}{entry.id}: {exc}")
            continue
        found.append(EvalImage(entry.id, entry.path, tensor, rgb, entry.target))
    if not found:
        first = "; ".join(notes[:3])
        raise InputError(f"no readable image in '{options.images}' ({first})")
    return found, notes


def skipped_images(notes: Sequence[str]) -> list[str]:
    """The notes of a run that name an image that could not be read (and was skipped)."""
    return [note for note in notes if note.startswith(SKIPPED)]


def resolve_layers(
    loaded: LoadedModel, requested: Sequence[str], size: tuple[int, int] | None = None
) -> list[str]:
    """The layers to explain: ``requested``, else blocks.5/10 and head (embedded), else auto.

    ``size`` is the input ``(height, width)`` the layers are probed with (default 224).
    """
    infos = probe_layers(loaded.model) if size is None else probe_layers(loaded.model, size)
    if requested:
        return check_layers(requested, infos)
    if loaded.name in EMBEDDED_MODELS:
        return check_layers(DEMO_LAYERS, infos)
    return check_layers([], infos)
