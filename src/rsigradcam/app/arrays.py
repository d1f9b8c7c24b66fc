"""Arrays and volumes for ``rsigradcam explain``: ``.npy`` files and NIfTI volumes.

An array file holds one input ``(C, *S)`` with one to three spatial dimensions: a signal
``(C, L)``, an image ``(C, H, W)`` or a volume ``(C, D, H, W)``, already in the model's
input space (not resized, not normalised). The channel axis is always there, so that a
one-channel image ``(1, H, W)`` and a three-channel signal ``(3, L)`` cannot be confused.
A NIfTI volume
(``.nii``, ``.nii.gz``, read with nibabel, the ``medical`` extra) is ``(X, Y, Z)``, read as
one channel ``(1, X, Y, Z)``, or ``(X, Y, Z, C)``, read as ``(C, X, Y, Z)``.

:func:`check_array_files` runs before torch is imported, so that a missing extra answers
at once. Bad arrays raise :class:`~rsigradcam.app.errors.InputError`, one line each.

Example:
    >>> is_array_file("scan.nii.gz"), is_array_file("cat.jpg")
    (True, False)
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rsigradcam.app.errors import InputError
from rsigradcam.app.extras import install_command

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "ARRAY_SUFFIXES",
    "MAX_SPATIAL_DIMS",
    "array_format",
    "check_array_files",
    "check_channels",
    "file_stem",
    "first_channels",
    "is_array_file",
    "is_nifti",
    "read_array",
    "read_mask",
]

#: The file endings ``explain`` reads as arrays, not images.
ARRAY_SUFFIXES = (".npy", ".nii", ".nii.gz")
#: Signals, images, volumes: 1, 2 or 3 spatial dimensions after the channels.
MAX_SPATIAL_DIMS = 3


def is_nifti(path: str | Path) -> bool:
    """Whether the file name ends in ``.nii`` or ``.nii.gz`` (any case)."""
    return str(path).lower().endswith((".nii", ".nii.gz"))


def is_array_file(path: str | Path) -> bool:
    """Whether ``explain`` reads the file as an array (``.npy``, ``.nii``, ``.nii.gz``)."""
    return str(path).lower().endswith(ARRAY_SUFFIXES)


def file_stem(path: Path) -> str:
    """The file name without its suffix, both of ``.nii.gz``.

    Example:
        >>> file_stem(Path("a/scan.nii.gz")), file_stem(Path("cat.jpg"))
        ('scan', 'cat')
    """
    return path.name[: -len(".nii.gz")] if path.name.lower().endswith(".nii.gz") else path.stem


def check_array_files(paths: Sequence[Path]) -> bool:
    """Whether the inputs are arrays; refuse a mix with images, or NIfTI without nibabel.

    Imports neither torch nor nibabel (nibabel is looked up with ``find_spec``).

    Returns:
        ``True`` when every path is an array file, ``False`` when none is.

    Raises:
        InputError: Image files and arrays together, or a NIfTI file while nibabel is not
            installed (the line names the extra and the pip command).
    """
    arrays = [p for p in paths if is_array_file(p)]
    if not arrays:
        return False
    if len(arrays) != len(paths):
        images = [str(p) for p in paths if not is_array_file(p)]
        raise InputError(
            f"explain takes image files or arrays ({', '.join(ARRAY_SUFFIXES)}), not both in "
            f"one run: {', '.join(repr(i) for i in images)} with {str(arrays[0])!r}; run them "
            "separately"
        )
    nifti = next((p for p in arrays if is_nifti(p)), None)
    if nifti is not None and find_spec("nibabel") is None:
        raise InputError(
            f"reading the NIfTI file '{nifti}' needs nibabel, in the 'medical' extra: "
            f"{install_command('medical')}"
        )
    return True


def read_array(path: str | Path) -> np.ndarray:
    """Read one input ``(C, *S)`` as float32 from a ``.npy`` or NIfTI file.

    Raises:
        InputError: The file cannot be read, or does not hold a finite numeric array
            ``(C, *S)`` with 1 to 3 spatial dimensions.

    Example:
        >>> np.save(tmp_path / "signal.npy", np.zeros((2, 120)))  # doctest: +SKIP
        >>> read_array(tmp_path / "signal.npy").shape             # doctest: +SKIP
        (2, 120)
    """
    label = f"array file '{path}'"
    try:
        if is_nifti(path):
            import nibabel

            data = np.asarray(nibabel.load(str(path)).get_fdata(dtype=np.float32))  # type: ignore[attr-defined]
            data = data[None] if data.ndim == MAX_SPATIAL_DIMS else np.moveaxis(data, -1, 0)
        else:
            data = np.load(path, allow_pickle=False)
    except Exception as exc:
        from rsigradcam.files import one_line

        reason = one_line(str(exc)) or type(exc).__name__
        raise InputError(f"{label} cannot be read ({reason[:200]})") from exc
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == np.bool_):
        raise InputError(f"{label} holds {data.dtype} values; give numbers")
    if not 2 <= data.ndim <= MAX_SPATIAL_DIMS + 1 or data.size == 0:
        raise InputError(
            f"{label} has shape {tuple(data.shape)}; explain reads one input (C, *S): a "
            "signal (C, L), an image (C, H, W) or a volume (C, D, H, W), with its channel "
            "axis first (e.g. (1, L) for one channel)"
        )
    array = np.ascontiguousarray(data, dtype=np.float32)
    if not np.isfinite(array).all():
        raise InputError(f"{label} holds NaN or infinite values; give finite numbers")
    return array


def first_channels(model: nn.Module) -> tuple[str, int] | None:
    """The first module that declares ``in_channels`` (a convolution), and that number."""
    for name, module in model.named_modules():
        channels = getattr(module, "in_channels", None)
        if isinstance(channels, int):
            return f"{name!r} ({type(module).__name__})" if name else "(the model)", channels
    return None


def check_channels(label: str, shape: Sequence[int], model: nn.Module, model_name: str) -> None:
    """Refuse an input whose channel count is not the one the model's first layer takes.

    Args:
        label: The input, e.g. ``"array 'vol.npy'"``.
        shape: Its shape ``(C, *S)``.
        model: The model; its first module with ``in_channels`` gives the count (nothing
            is checked when it has none).
        model_name: The ``--model`` argument, for the message.

    Raises:
        InputError: One line naming both counts.
    """
    found = first_channels(model)
    if found is None or found[1] == shape[0]:
        return
    layer, channels = found
    spatial = ", ".join(str(s) for s in shape[1:])
    raise InputError(
        f"{label} has {shape[0]} channel{'s' if shape[0] != 1 else ''} (shape {tuple(shape)}), "
        f"but model {model_name!r} takes {channels} (its first layer {layer}); give an array "
        f"({channels}, {spatial})"
    )



def array_format(array: np.ndarray) -> dict[str, object]:
    """The JSON record of an array input: its spatial shape and channels, not normalised.

    Example:
        >>> array_format(np.zeros((1, 8, 16, 16)))
        {'input_size': [8, 16, 16], 'channels': 1, 'mean': None, 'std': None}
    """
    return {"input_size": list(array.shape[1:]), "channels": int(array.shape[0]),
            "mean": None, "std": None}


def read_mask(path: Path) -> np.ndarray:
    """``--target-mask``: a boolean (H, W) mask from a PNG (non-zero: in) or a ``.npy``.

    Raises:
        InputError: The file cannot be read, is not 2-D, or marks no position.
    """
    try:
        if path.suffix.lower() == ".npy":
            mask = np.load(path, allow_pickle=False)
        else:
            from PIL import Image

            with Image.open(path) as image:
                mask = np.asarray(image.convert("L"))
    except Exception as exc:
        raise InputError(f"--target-mask '{path}' cannot be read ({type(exc).__name__})") from exc
    if mask.ndim != 2 or not mask.any():
        raise InputError(
            f"--target-mask '{path}' has shape {tuple(mask.shape)}"
            + (" and no position set" if mask.ndim == 2 else "")
            + "; give a 2-D mask (a PNG, non-zero inside) at the model input's size or its "
            "output's"
        )
    return np.asarray(mask != 0, dtype=bool)
