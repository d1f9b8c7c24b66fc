"""Overlays and figure grids (the edge of the library: NumPy and matplotlib).

:func:`save_grid` writes atomically (see :mod:`rsigradcam.files`, whose ``save_*``
functions this module re-exports).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rsigradcam.files import save_json, save_npy, save_png, save_text, write_atomically

__all__ = [
    "GridCell",
    "colorize",
    "overlay",
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


def overlay(
    image: np.ndarray,
    heatmap: torch.Tensor | np.ndarray,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> np.ndarray:
    """Alpha-blend a colorized heatmap onto an RGB uint8 image of the same size.

    Args:
        image: (H, W, 3) uint8 RGB image.
        heatmap: (H, W) values in [0, 1].
        alpha: Weight of the heatmap colours (0 shows only the image).
        cmap: A matplotlib colormap name, e.g. ``"jet"`` or ``"turbo"``.

    Example:
        >>> overlay(np.zeros((4, 4, 3), np.uint8), np.ones((4, 4))).dtype
        dtype('uint8')
    """
    colours = colorize(heatmap, cmap)
    if image.shape != colours.shape:
        raise ValueError(
            f"image shape {image.shape} does not match the heatmap's {colours.shape[:2]}."
        )
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours.astype(np.float32)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class GridCell:
    """One panel of a figure grid: an RGB image with a title."""

    image: np.ndarray
    title: str


def save_grid(
    rows: Sequence[Sequence[GridCell]],
    path: str | Path,
    row_labels: Sequence[str] | None = None,
    suptitle: str | None = None,
    panel_size: float = 2.6,
) -> Path:
    """Save a grid of titled panels (rows x columns) as a PNG, atomically.

    Example:
        >>> cell = GridCell(np.zeros((8, 8, 3), np.uint8), "x")
        >>> save_grid([[cell, cell]], tmp_path / "grid.png")  # doctest: +SKIP
    """
    # A bare Figure (no pyplot): nothing global changes, whatever backend the caller uses.
    from matplotlib.figure import Figure

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig = Figure(figsize=(panel_size * n_cols, panel_size * n_rows + (0.5 if suptitle else 0.0)))
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
        if row_labels is not None:
            axes[i][0].set_ylabel(row_labels[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    return write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
