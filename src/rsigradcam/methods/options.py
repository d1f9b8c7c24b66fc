"""The keyword options the methods share, as types: what ``**options`` may hold.

Example:
    >>> from rsigradcam.methods.options import PathOptions
    >>> options: PathOptions = {"baseline": "blur", "batch_size": 8}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import torch
from torch import Tensor, nn

from rsigradcam.baselines import BaselineSpec, Normalize
from rsigradcam.core.inference import SpeedSpec
from rsigradcam.core.path import PathSpec
from rsigradcam.core.reshape import ReshapeSpec

__all__ = ["CamOptions", "DeprecatedSpeed", "LayerList", "LayerSpec", "OneLayer", "PathOptions"]

#: One layer: a module name, the module itself, or ``"auto"``; a call explains it alone
#: and returns an :class:`~rsigradcam.explanation.Explanation`.
OneLayer = str | nn.Module
#: Several layers (a list or tuple of :data:`OneLayer`); a call explains them from one set
#: of passes and returns ``dict[str, Explanation]`` by layer name.
LayerList = Sequence[str | nn.Module]
#: What ``layer=`` accepts: :data:`OneLayer` or :data:`LayerList`.
LayerSpec = OneLayer | LayerList


class CamOptions(TypedDict, total=False):
    """The keyword options every method takes; see :class:`BaseCAM`."""

    batch_size: int | None
    dtype: torch.dtype | None
    memory_budget_mb: float | None
    reshape_transform: ReshapeSpec
    speed: SpeedSpec
    # Deprecated: use speed=SpeedOptions(...).
    fold_batchnorm: bool | None
    channels_last: bool | None
    compile: bool
    autocast: torch.dtype | None


class DeprecatedSpeed(TypedDict, total=False):
    """The speed keywords of earlier releases: use ``speed=SpeedOptions(...)``."""

    fold_batchnorm: bool | None
    channels_last: bool | None
    compile: bool
    autocast: torch.dtype | None


class PathOptions(CamOptions, total=False):
    """The keyword options every path method takes; see :class:`PathCAM`."""

    baseline: BaselineSpec
    normalize: Normalize
    partition: Tensor | Sequence[float] | None
    path: PathSpec
    n_samples: int
