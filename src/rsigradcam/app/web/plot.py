"""The explorer's plots: the class score along the path, and the maps' convergence as m grows.

Figures are built with Matplotlib's object API (no ``pyplot``: no global state shared
between the server's threads).

Example:
    >>> figure = path_figure(result)          # doctest: +SKIP
    >>> figure.savefig("path.png")            # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from rsigradcam.app.web.results import Convergence, WebResult
from rsigradcam.methods import METHODS

__all__ = ["convergence_figure", "path_figure"]

_MARKERS = ("o", "s", "^", "D", "v", "P")


def path_figure(result: WebResult) -> Figure | None:
    """y(x_t) from the baseline (t = 0) to the image (t = 1), each method's points marked.

    The curve shows where the score changes and where it saturates; the markers on it
    are the points the first path method evaluated (with ``steps="auto"``, where the
    adaptive partition put them), and one rug row per path method below shows each
    method's partition. ``None`` when the result has no path method.
    """
    curve = result.curve
    if curve is None:
        return None
    found = result.found
    figure = Figure(figsize=(7.0, 4.0), dpi=100, layout="constrained")
    top, rug = figure.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [4, 0.35 + 0.3 * len(curve.points)]}
    )
    top.plot(curve.t, curve.y, color="0.25", linewidth=1.5, label="y(x_t)", zorder=2)
    for i, (method, t) in enumerate(curve.points.items()):
        label = f"{METHODS[method].label}: {t.size} points"
        marker = _MARKERS[i % len(_MARKERS)]
        colour = f"C{i}"
        if i == 0:
            top.plot(t, curve.at(method), marker, color=colour, markersize=4, label=label, zorder=3)
        rug.plot(t, np.full(t.size, i), "|", color=colour, markersize=10, label=label)
    top.axhline(curve.y[0], color="C7", linestyle=":", linewidth=1)
    top.axhline(curve.y[-1], color="C7", linestyle="--", linewidth=1)
    top.annotate("y(x')", (0.0, curve.y[0]), xytext=(2, 3), textcoords="offset points", fontsize=8)
    top.annotate(
        "y(x)", (1.0, curve.y[-1]), xytext=(-22, 3), textcoords="offset points", fontsize=8
    )
    name = found.explained.name or f"class {found.explained.class_id}"
    score = "softmax probability" if found.output == "softmax" else "logit"
    top.set_title(f"{score} of '{name}', {found.baseline} baseline", fontsize=9, loc="right")
    top.set_ylabel(score)
    top.legend(loc="best", fontsize=8)
    top.grid(alpha=0.3)
    rug.set_yticks(range(len(curve.points)), [METHODS[m].label for m in curve.points])
    rug.set_ylim(-0.6, len(curve.points) - 0.4)
    rug.set_xlim(-0.02, 1.02)
    rug.set_xlabel("t   (x_t = x' + t (x - x'))")
    rug.tick_params(axis="y", labelsize=8)
    return figure


def convergence_figure(found: Convergence) -> Figure:
    """Heatmap correlation with the reference map, and completeness error, against m."""
    figure = Figure(figsize=(9.0, 3.6), dpi=100, layout="constrained")
    left, right = figure.subplots(1, 2)
    steps = np.asarray(found.steps)
    for i, (method, layer) in enumerate(found.correlation):
        label = f"{METHODS[method].label} · {layer}"
        style = {"marker": _MARKERS[i % len(_MARKERS)], "color": f"C{i}", "label": label}
        left.plot(steps, found.correlation[method, layer], **style)
        errors = np.asarray(found.completeness[method, layer], dtype=float)
        if np.isfinite(errors).any():
            right.plot(steps, np.where(errors > 0, errors, np.nan), **style)
    for axes in (left, right):
        axes.set_xscale("log", base=2)
        axes.set_xlabel("m (intervals)")
        axes.grid(alpha=0.3)
        if isinstance(found.current, int):
            axes.axvline(found.current, color="C7", linestyle="--", linewidth=1)
    left.set_ylabel(f"correlation with the m = {found.reference} heatmap")
    left.set_title("The map settles")
    left.legend(fontsize=8, loc="lower right")
    right.set_yscale("log")
    right.set_ylabel("completeness error")
    right.set_title("|Σ attributions - (y(x) - y(x'))| / |y(x) - y(x')|", fontsize=9)
    if not right.lines:
        right.text(0.5, 0.5, "no method with completeness", ha="center", transform=right.transAxes)
    return figure
