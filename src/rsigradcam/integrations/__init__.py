"""Front-ends with the call shapes of other explanation libraries, for one-import migration.

- :mod:`rsigradcam.integrations.pytorch_grad_cam`: ``RSIGradCAM(model=..., target_layers=[...])``
  called as ``cam(input_tensor=x, targets=[ClassifierOutputTarget(281)])``, returning
  (N, H, W) float32 NumPy maps in [0, 1], like pytorch-grad-cam's CAM classes; its
  ``GradCAM`` gives pytorch-grad-cam's Grad-CAM maps.
- :mod:`rsigradcam.integrations.captum`: ``LayerRSIGradCAM(forward_func, layer).attribute(...)``
  returning the (N, 1, h, w) layer map, like Captum's ``LayerGradCam``; its
  ``LayerGradCam`` gives Captum's Grad-CAM maps.
- :mod:`rsigradcam.integrations.monai`: ``RSIGradCAM(nn_module, target_layers)`` called as
  ``cam(x, class_idx=None)``, returning the (N, 1, *S) map upsampled and normalised as
  ``monai.visualize.GradCAM`` does, for signals, images and volumes; its ``GradCAM`` and
  ``GradCAMpp`` give MONAI's maps.

Each keeps its library's defaults (the logit for ``ClassifierOutputTarget``, the signed map
for ``attribute``, MONAI's logit and flipped min-max normaliser). None imports the other
library: they only mirror its calls. The submodules are not imported here, so
``import rsigradcam.integrations`` stays light.
"""
