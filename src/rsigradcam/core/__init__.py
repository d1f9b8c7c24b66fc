"""The engine every method shares: layer capture, paths, streamed integration, memory.

- :mod:`~rsigradcam.core.capture`: borrow the model, hooks in a context manager, a leaf at
  the layer.
- :mod:`~rsigradcam.core.path`: partitions, straight-line / callable / tensor paths, rows.
- :mod:`~rsigradcam.core.evaluator`: rows of (image, t) -> activations and gradients.
- :mod:`~rsigradcam.core.integrate`: Riemann–Stieltjes rules, streamed over chunks, and the
  one-point accumulator of the Grad-CAM family.
- :mod:`~rsigradcam.core.reduction`: the CAM reduction, heatmap normalisation, completeness.
- :mod:`~rsigradcam.core.checks`: the one image check of methods and metrics.
- :mod:`~rsigradcam.core.adaptive`: ``steps="auto"``.
- :mod:`~rsigradcam.core.memory`, :mod:`~rsigradcam.core.targets`,
  :mod:`~rsigradcam.core.reshape`.
"""
