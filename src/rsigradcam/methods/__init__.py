"""CAM methods: each file defines only how its weights come from the shared machinery.

:class:`BaseCAM` is the template (one input point, the Grad-CAM family builds on it);
:class:`PathCAM` adds the path from a baseline to the input; the registry lists them.
"""

from rsigradcam.methods.base import BYPASSED_LAYER_REASON, BaseCAM, PathCAM
from rsigradcam.methods.gradcam import GradCAM
from rsigradcam.methods.gradcampp import GradCAMPlusPlus
from rsigradcam.methods.integrated_gradcam import IntegratedGradCAM
from rsigradcam.methods.integrated_gradients import IntegratedGradients
from rsigradcam.methods.layercam import LayerCAM
from rsigradcam.methods.path_scores import path_scores
from rsigradcam.methods.registry import METHODS, create_cam, method_class, method_layers
from rsigradcam.methods.rsi import NO_COMPLETENESS_REASON, RSIGradCAM

__all__ = [
    "BYPASSED_LAYER_REASON",
    "METHODS",
    "NO_COMPLETENESS_REASON",
    "BaseCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "IntegratedGradCAM",
    "IntegratedGradients",
    "LayerCAM",
    "PathCAM",
    "RSIGradCAM",
    "create_cam",
    "method_class",
    "method_layers",
    "path_scores",
]
