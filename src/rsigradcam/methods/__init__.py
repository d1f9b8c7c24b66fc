"""CAM methods: each file defines only how its weights come from the shared machinery."""

from rsigradcam.methods.base import BaseCAM
from rsigradcam.methods.gradcam import GradCAM
from rsigradcam.methods.rsi import RSIGradCAM

__all__ = ["BaseCAM", "GradCAM", "RSIGradCAM"]
