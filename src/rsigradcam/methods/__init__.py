"""CAM methods: each file defines only how its weights come from the shared machinery."""

from rsigradcam.methods.base import BaseCAM
from rsigradcam.methods.gradcam import GradCAM
from rsigradcam.methods.gradcampp import GradCAMPlusPlus
from rsigradcam.methods.integrated_gradcam import IntegratedGradCAM
from rsigradcam.methods.integrated_gradients import IntegratedGradients
from rsigradcam.methods.layercam import LayerCAM
from rsigradcam.methods.registry import METHODS, create_cam, method_class, method_layers
from rsigradcam.methods.rsi import RSIGradCAM

__all__ = [
    "METHODS",
    "BaseCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "IntegratedGradCAM",
    "IntegratedGradients",
    "LayerCAM",
    "RSIGradCAM",
    "create_cam",
    "method_class",
    "method_layers",
]
