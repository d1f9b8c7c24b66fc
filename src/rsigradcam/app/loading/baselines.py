"""``--baseline``: a baseline name, or a baseline file saved earlier, read safely."""

from __future__ import annotations

from pathlib import Path

import torch

from rsigradcam.app.errors import InputError
from rsigradcam.app.loading.models import LoadedModel
from rsigradcam.baselines import BASELINE_NAMES, AutoBaseline, BaselineSpec
from rsigradcam.core.capture import model_device
from rsigradcam.files import one_line

__all__ = ["resolve_baseline"]


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
