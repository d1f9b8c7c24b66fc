"""rsigradcam: RSI-Grad-CAM explanations for PyTorch image classifiers.

Example:
    >>> from rsigradcam import RSIGradCAM
    >>> exp = RSIGradCAM(model, "head")(images)  # doctest: +SKIP
    >>> exp.heatmap.shape                         # doctest: +SKIP
    torch.Size([1, 224, 224])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rsigradcam.core.inference import SpeedOptions
    from rsigradcam.core.targets import (
        BoxTarget,
        ClassTarget,
        RegressionTarget,
        SegmentationTarget,
        Target,
    )
    from rsigradcam.explanation import Explanation, ModelRun
    from rsigradcam.heatmaps import load_heatmaps
    from rsigradcam.methods import (
        METHODS,
        BaseCAM,
        GradCAM,
        GradCAMPlusPlus,
        IntegratedGradCAM,
        IntegratedGradients,
        LayerCAM,
        PathCAM,
        RSIGradCAM,
    )

__all__ = [
    "METHODS",
    "BaseCAM",
    "BoxTarget",
    "ClassTarget",
    "Explanation",
    "GradCAM",
    "GradCAMPlusPlus",
    "IntegratedGradCAM",
    "IntegratedGradients",
    "LayerCAM",
    "ModelRun",
    "PathCAM",
    "RSIGradCAM",
    "RegressionTarget",
    "SegmentationTarget",
    "SpeedOptions",
    "Target",
    "__version__",
    "load_heatmaps",
]

__version__ = "0.1.0"

# The names are imported on first use (PEP 562), so that importing a light submodule, such
# as the command line's, does not import torch: ``rsigradcam --help`` answers at once.
_EXPORTS = {
    "Explanation": "rsigradcam.explanation",
    "ModelRun": "rsigradcam.explanation",
    "SpeedOptions": "rsigradcam.core.inference",
    "load_heatmaps": "rsigradcam.heatmaps",
    **dict.fromkeys(
        ("BoxTarget", "ClassTarget", "RegressionTarget", "SegmentationTarget", "Target"),
        "rsigradcam.core.targets",
    ),
    **dict.fromkeys(
        (
            "METHODS",
            "BaseCAM",
            "GradCAM",
            "GradCAMPlusPlus",
            "IntegratedGradCAM",
            "IntegratedGradients",
            "LayerCAM",
            "PathCAM",
            "RSIGradCAM",
        ),
        "rsigradcam.methods",
    ),
}


def __getattr__(name: str) -> Any:
    """Import an exported name on first use (``from rsigradcam import RSIGradCAM``)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rsigradcam' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The exported names, for ``dir(rsigradcam)`` and completion."""
    return sorted({*globals(), *__all__})
