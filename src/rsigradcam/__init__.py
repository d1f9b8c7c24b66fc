"""rsigradcam: RSI-Grad-CAM explanations for PyTorch image classifiers.

Example:
    >>> from rsigradcam import RSIGradCAM
    >>> exp = RSIGradCAM(model, "head")(images)  # doctest: +SKIP
    >>> exp.heatmap.shape                         # doctest: +SKIP
    torch.Size([1, 224, 224])
"""

from rsigradcam.explanation import Explanation
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
    "Explanation",
    "GradCAM",
    "GradCAMPlusPlus",
    "IntegratedGradCAM",
    "IntegratedGradients",
    "LayerCAM",
    "PathCAM",
    "RSIGradCAM",
    "__version__",
    "load_heatmaps",
]

__version__ = "0.1.0"
