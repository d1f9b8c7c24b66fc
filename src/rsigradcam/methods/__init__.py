"""CAM methods: each file defines only how its weights come from the shared machinery."""

from rsigradcam.methods.base import BaseCAM
from rsigradcam.methods.gradcam import GradCAM
from rsigradcam.methods.gradcampp import GradCAMPlusPlus
from rsigradcam.methods.integrated_gradcam import IntegratedGradCAM
from rsigradcam.methods.integrated_gradients import IntegratedGradients
from rsigradcam.methods.layercam import LayerCAM
from rsigradcam.methods.rsi import RSIGradCAM

#: Every method by the name a caller may choose it with.
METHODS: dict[str, type[BaseCAM]] = {
    "rsi": RSIGradCAM,
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "layercam": LayerCAM,
    "integrated-gradcam": IntegratedGradCAM,
    "ig": IntegratedGradients,
}

__all__ = [
    "METHODS",
    "BaseCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "IntegratedGradCAM",
    "IntegratedGradients",
    "LayerCAM",
    "RSIGradCAM",
]
