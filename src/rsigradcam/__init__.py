"""rsigradcam: RSI-Grad-CAM explanations for PyTorch image classifiers.

Example:
    >>> from rsigradcam import RSIGradCAM
    >>> exp = RSIGradCAM(model, "head")(images)  # doctest: +SKIP
    >>> exp.heatmap.shape                         # doctest: +SKIP
    torch.Size([1, 224, 224])
"""

from rsigradcam.explanation import Explanation
from rsigradcam.methods import BaseCAM, GradCAM, RSIGradCAM

__all__ = ["BaseCAM", "Explanation", "GradCAM", "RSIGradCAM", "__version__"]

__version__ = "0.1.0"
