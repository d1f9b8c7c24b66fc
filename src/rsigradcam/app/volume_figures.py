"""The figures of ``rsigradcam explain`` for arrays: volumes, images and signals.

:func:`save_array_figure` writes one PNG per explained layer and method:

- a volume ``(C, D, H, W)``: evenly spaced slices along each of the three axes (a row
  per axis), the heatmap in the jet colormap over the input's channel mean in grey;
- an image array ``(C, H, W)``: the input and the overlay;
- a signal ``(C, L)``: the signal's channels, with the heatmap beneath as a colour strip;

each with a colour bar of the heatmap scale (0 to 1) and a caption naming the method,
the layer and the explained score.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rsigradcam.app.figures import score_name
from rsigradcam.files import write_atomically
from rsigradcam.methods import METHODS
from rsigradcam.viz import GridCell, overlay, save_grid

if TYPE_CHECKING:
    from rsigradcam.app.explain import ImageExplanation
    from rsigradcam.explanation import Explanation

__all__ = ["SLICES_PER_AXIS", "array_caption", "save_array_figure", "slice_indices"]

#: How many slices a volume's figure shows along each axis (fewer when it is thinner).
SLICES_PER_AXIS = 5


def slice_indices(length: int, count: int = SLICES_PER_AXIS) -> list[int]:
    """``count`` evenly spaced indices inside ``range(length)``, ends excluded when possible.

    Example:
        >>> slice_indices(16), slice_indices(3), slice_indices(1)
        ([2, 5, 8, 10, 12], [0, 1, 2], [0])
    """
    if length <= count:
        return list(range(length))
    return [round(i) for i in np.linspace(0, length - 1, count + 2)[1:-1]]


def array_caption(result: ImageExplanation, method: str, layer: str, exp: Explanation) -> str:
    """``RSI-Grad-CAM at conv, m=50: logit of class 2 = 1.234, completeness error 0.003``."""
    label = METHODS[method].label + result.variants.caption(method)
    steps = f", m={result.steps}" if METHODS[method].takes_steps else ""
    explained = result.explained
    which = f"'{explained.name}' (class {explained.class_id})" if explained.name else (
        f"class {explained.class_id}"
    )
    caption = (
        f"{label} at {layer}{steps}: {score_name(result.output)} of {which} = "
        f"{float(exp.scores[0]):.4g}"
    )
    error = float(exp.completeness_error[0])
    return caption + (f", completeness error {error:.3f}" if np.isfinite(error) else "")


def _grey(array: np.ndarray) -> np.ndarray:
    """The channel mean of ``(C, *S)`` scaled to [0, 1] over the whole input."""
    mean = array.mean(axis=0)
    low, high = float(mean.min()), float(mean.max())
    return (mean - low) / (high - low) if high > low else np.zeros_like(mean)


def _rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat((grey * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def save_array_figure(
    result: ImageExplanation, method: str, layer: str, exp: Explanation, path: Path
) -> Path:
    """Write the figure of one layer and method's heatmap over ``result.array``, atomically."""
    array = result.array
    if array is None:
        raise ValueError("save_array_figure needs an explanation of an array input")
    heatmap = exp.heatmap[0].numpy()
    title = f"{result.name}: {METHODS[method].label} at {layer}"
    caption = array_caption(result, method, layer, exp)
    grey = _grey(array)
    if array.ndim == 2:
        return _save_signal(array, heatmap, title, caption, path)
    if array.ndim == 3:
        rows = [[GridCell(_rgb(grey), "input (channel mean)"),
                 GridCell(overlay(_rgb(grey), heatmap), METHODS[method].label)]]
        return save_grid(rows, path, suptitle=title, caption=caption)
    rows, labels = [], []
    for axis in range(3):
        cells = []
        for index in slice_indices(array.shape[axis + 1]):
            picture = np.take(grey, index, axis=axis)
            cells.append(GridCell(
                overlay(_rgb(picture), np.take(heatmap, index, axis=axis)),
                f"axis {axis}, slice {index}",
            ))
        rows.append(cells)
        labels.append(f"axis {axis} ({array.shape[axis + 1]})")
    return save_grid(rows, path, row_labels=labels, suptitle=title, caption=caption,
                     panel_size=2.0)


def _save_signal(
    array: np.ndarray, heatmap: np.ndarray, title: str, caption: str, path: Path
) -> Path:
    """The signal's channels above, the heatmap beneath as a jet strip with a colour bar."""
    from matplotlib.figure import Figure

    length = array.shape[1]
    fig = Figure(figsize=(9, 4), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for channel, values in enumerate(array):
        top.plot(np.arange(length), values, linewidth=0.9, label=f"channel {channel}")
    if len(array) > 1:
        top.legend(fontsize=7, loc="upper right")
    top.set_ylabel("signal", fontsize=8)
    strip = bottom.imshow(heatmap[None], aspect="auto", cmap="jet", vmin=0.0, vmax=1.0,
                          extent=(-0.5, length - 0.5, 0, 1), interpolation="nearest")
    bottom.set_yticks([])
    bottom.set_xlabel("position", fontsize=8)
    bar = fig.colorbar(strip, ax=[top, bottom], aspect=25)
    bar.set_label("heatmap (0 to 1)", fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.supxlabel(caption, fontsize=8)
    return write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
