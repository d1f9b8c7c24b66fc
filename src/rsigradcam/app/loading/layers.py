"""The layers of a model as a probe pass sees them, and ``--layer`` arguments checked against them.

Example:
    >>> from rsigradcam.app.loading.layers import LayerInfo, check_layers
    >>> check_layers(["auto"], [LayerInfo("conv", (8, 6, 6)), LayerInfo("fc", (5,))])
    ['conv']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from rsigradcam.app.errors import InputError
from rsigradcam.app.loading.models import INPUT_SIZE
from rsigradcam.app.loading.suggest import did_you_mean, suggest
from rsigradcam.core.capture import LayerCapture, is_spatial_map, model_device

__all__ = ["LayerInfo", "check_layers", "probe_layers"]


@dataclass(frozen=True)
class LayerInfo:
    """One module's output for one input image, as seen by a probe pass.

    Attributes:
        name: The dotted module name.
        shape: The output shape without the batch dimension, e.g. ``(1280, 7, 7)``;
            ``None`` when the output is not a tensor.
        runs: How many times the module ran in the forward pass.
        spatial_dims: The input's spatial dimensions (2 for images).
    """

    name: str
    shape: tuple[int, ...] | None
    runs: int = 1
    spatial_dims: int = 2

    @property
    def explainable(self) -> bool:
        """Whether a CAM can explain it: one run, a spatial (K, h, w) map with h*w > 1.

        For inputs with ``spatial_dims`` other than 2, (K, l) or (K, d, h, w) maps.
        """
        return (
            self.runs == 1
            and self.shape is not None
            and is_spatial_map((1, *self.shape), self.spatial_dims)
        )

    def describe_shape(self) -> str:
        """The shape as ``"1280x7x7"`` (``"-"`` when the output is not a tensor)."""
        return "x".join(str(s) for s in self.shape) if self.shape is not None else "-"


def probe_layers(
    model: nn.Module,
    size: int | tuple[int, int] = INPUT_SIZE,
    array_shape: tuple[int, ...] | None = None,
) -> list[LayerInfo]:
    """Run one black image of ``size`` (a side or ``(h, w)``); list each module's output.

    With ``array_shape`` ``(C, *S)``, one all-zero input of that shape instead: the
    layers that can be explained are then those with as many spatial dimensions as it.

    The modules come in the order they finish (a block after its own layers); each
    module appears once, with how many times it ran.

    Example:
        >>> infos = probe_layers(efficientnet_lite0())  # doctest: +SKIP
        >>> [i.name for i in infos if i.explainable][-1]  # doctest: +SKIP
        'head'
    """
    height, width = size if isinstance(size, tuple) else (size, size)
    shape = (3, height, width) if array_shape is None else array_shape
    image = torch.zeros(1, *shape, device=model_device(model))
    spatial_dims = len(shape) - 1
    with LayerCapture(model) as capture:
        records = capture.probe(image)
    infos: dict[str, LayerInfo] = {}
    for record in records:
        out = record.shape[1:] if record.shape is not None else None
        seen = infos.get(record.name)
        runs = 1 if seen is None else seen.runs + 1
        infos[record.name] = LayerInfo(
            record.name, out if seen is None else seen.shape, runs, spatial_dims
        )
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
                f"unknown layer {name!r}{did_you_mean(suggest(name, explainable))}; run "
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
