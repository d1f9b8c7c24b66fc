"""The engine every method shares: layer capture, paths, streamed integration, memory.

- :mod:`~rsigradcam.core.capture`: borrow the model, hooks in a context manager, a leaf at
  the layer.
- :mod:`~rsigradcam.core.path`: partitions, straight-line / callable / tensor paths, rows.
- :mod:`~rsigradcam.core.evaluator`: rows of (image, t) -> activations and gradients.
- :mod:`~rsigradcam.core.integrate`: Riemann–Stieltjes rules, streamed over chunks.
- :mod:`~rsigradcam.core.adaptive`: ``steps="auto"``.
- :mod:`~rsigradcam.core.memory`, :mod:`~rsigradcam.core.targets`,
  :mod:`~rsigradcam.core.reshape`.
"""
