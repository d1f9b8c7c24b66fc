"""Overlays and figure grids (the edge of the library: NumPy and matplotlib).

:func:`save_grid` writes atomically (see :mod:`rsigradcam.files`, whose ``save_*``
functions this module re-exports).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from rsigradcam.files import save_json, save_npy, save_png, save_text, write_atomically

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "GridCell",
    "colorize",
    "grid_figure",
    "overlay",
    "resize_heatmap",
    "save_grid",
    "save_json",
    "save_npy",
    "save_png",
    "save_text",
]


def _as_numpy_map(heatmap: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(heatmap, torch.Tensor):
        heatmap = heatmap.detach().float().cpu().numpy()
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be 2-D (H, W), got shape {heatmap.shape}.")
    clipped: np.ndarray = np.clip(np.nan_to_num(heatmap), 0.0, 1.0)
    return clipped


def colorize(heatmap: torch.Tensor | np.ndarray, cmap: str = "jet") -> np.ndarray:
    """Map a (H, W) heatmap in [0, 1] to an (H, W, 3) uint8 RGB image with a colormap.

    Example:
        >>> colorize(np.zeros((2, 3))).shape
        (2, 3, 3)
    """
    from matplotlib import colormaps

    rgba = colormaps[cmap](_as_numpy_map(heatmap))
    rgb: np.ndarray = (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)
    return rgb


def resize_heatmap(heatmap: torch.Tensor | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a (h, w) heatmap to ``size`` = (H, W) as the methods upsample their maps.

    Bilinear interpolation with ``align_corners=False`` and no antialiasing, the same as
    the upsampling from the layer's map to the input size, so that a heatmap resized to
    an image's own size looks as it would have had the model seen that size.

    Example:
        >>> resize_heatmap(np.eye(2), (4, 6)).shape
        (4, 6)
    """
    values = torch.from_numpy(_as_numpy_map(heatmap))[None, None]
    resized = torch.nn.functional.interpolate(
        values, size=size, mode="bilinear", align_corners=False
    )
    out: np.ndarray = resized[0, 0].numpy()
    return out


def overlay(
    image: np.ndarray,
    heatmap: torch.Tensor | np.ndarray,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> np.ndarray:
    """Alpha-blend a colorized heatmap onto an RGB uint8 image.

    The counterpart of pytorch-grad-cam's ``show_cam_on_image``: a heatmap of another
    size than the image (a map at the model's input size over the original photo) is
    first resized to the image with :func:`resize_heatmap`.

    Args:
        image: (H, W, 3) uint8 RGB image.
        heatmap: (h, w) values in [0, 1].
        alpha: Weight of the heatmap colours (0 shows only the image).
        cmap: A matplotlib colormap name, e.g. ``"jet"`` or ``"turbo"``.

    Example:
        >>> overlay(np.zeros((4, 6, 3), np.uint8), np.ones((2, 2))).shape
        (4, 6, 3)
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be an (H, W, 3) RGB array, got shape {image.shape}.")
    if tuple(heatmap.shape) != image.shape[:2]:
        heatmap = resize_heatmap(heatmap, (image.shape[0], image.shape[1]))
    colours = colorize(heatmap, cmap)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours.astype(np.float32)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class GridCell:
    """One panel of a figure grid: an RGB image with a title.

    Attributes:
        image: (H, W, 3) uint8 RGB image.
        title: Drawn above the panel.
        note: Drawn across the middle of the panel (e.g. ``"all zero"`` for a map that
            is zero everywhere, which would otherwise look like a cold, uniform map).
    """

    image: np.ndarray
    title: str
    note: str = ""


def grid_figure(
    rows: Sequence[Sequence[GridCell]],
    row_labels: Sequence[str] | None = None,
    suptitle: str | None = None,
    panel_size: float = 2.6,
    caption: str | None = None,
    colorbar: str | None = "jet",
) -> Figure:
    """Build a grid of titled panels (rows x columns) as a matplotlib figure.

    Args:
        rows: The panels, row by row (short rows leave blank panels).
        row_labels: One label per row, on the left.
        suptitle: The title above the grid.
        panel_size: Inches per panel.
        caption: Text below the grid (what was explained, the baseline, ...).
        colorbar: The heatmaps' colormap, drawn as a colour bar from 0 to 1 on the right;
            ``None`` for none.

    Example:
        >>> cell = GridCell(np.zeros((8, 8, 3), np.uint8), "x", note="all zero")
        >>> fig = grid_figure([[cell, cell]], caption="logit of class 3")
        >>> [t.get_text() for t in fig.axes[0].texts], len(fig.axes)
        (['all zero'], 3)
    """
    # A bare Figure (no pyplot): nothing global changes, whatever backend the caller uses.
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    extra = (0.5 if suptitle else 0.0) + (0.4 if caption else 0.0)
    width = panel_size * n_cols + (0.9 if colorbar else 0.0)
    fig = Figure(figsize=(width, panel_size * n_rows + extra), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(row):
                ax.axis("off")
                continue
            ax.imshow(row[j].image)
            ax.set_title(row[j].title, fontsize=8)
            if row[j].note:
                ax.text(0.5, 0.5, row[j].note, transform=ax.transAxes, ha="center",
                        va="center", fontsize=10, color="white",
                        bbox={"facecolor": "black", "alpha": 0.6, "edgecolor": "none"})
        if row_labels is not None:
            axes[i][0].set_ylabel(row_labels[i], fontsize=9)
    if colorbar:
        scale = ScalarMappable(Normalize(0.0, 1.0), cmap=colorbar)
        bar = fig.colorbar(scale, ax=axes, shrink=min(0.9, 2.0 / n_rows + 0.3), aspect=25)
        bar.set_label("heatmap (0 to 1)", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    if caption:
        fig.supxlabel(caption, fontsize=8)
    return fig


def save_grid(
    rows: Sequence[Sequence[GridCell]],
    path: str | Path,
    row_labels: Sequence[str] | None = None,
    suptitle: str | None = None,
    panel_size: float = 2.6,
    caption: str | None = None,
    colorbar: str | None = "jet",
) -> Path:
    """Save :func:`grid_figure` of the panels as a PNG, atomically.

    Example:
        >>> cell = GridCell(np.zeros((8, 8, 3), np.uint8), "x")
        >>> save_grid([[cell, cell]], tmp_path / "grid.png")  # doctest: +SKIP
    """
    fig = grid_figure(rows, row_labels, suptitle, panel_size, caption, colorbar)
    return write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
