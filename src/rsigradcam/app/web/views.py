"""What the page shows of a result: the overlays with their captions, a table, a summary.

Example:
    >>> [caption for _, caption in gallery(result)][-1]        # doctest: +SKIP
    'head · RSI-Grad-CAM · completeness error 0.006 · 51 evaluations'
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rsigradcam.app.errors import InputError
from rsigradcam.app.explain import ImageExplanation
from rsigradcam.app.web.results import WebResult
from rsigradcam.explanation import Explanation
from rsigradcam.files import finite
from rsigradcam.methods import METHODS
from rsigradcam.serialization import encode
from rsigradcam.viz import overlay

__all__ = ["cell_caption", "cells", "gallery", "results_table", "summary"]


def cells(found: ImageExplanation) -> list[tuple[str, str, Explanation]]:
    """(layer, method, explanation) in the figure's order: rows = layers, columns = methods."""
    return [
        (layer, method, found.explanations[method][layer])
        for layer in found.rows
        for method in found.explanations
        if layer in found.explanations[method]
    ]


def cell_caption(found: ImageExplanation, layer: str, method: str) -> str:
    """``"head · RSI-Grad-CAM · completeness error 0.006 · 51 evaluations"``."""
    exp = found.explanations[method][layer]
    label = METHODS[method].label + found.variants.caption(method)
    error = float(exp.completeness_error[0])
    parts = [layer, label]
    if np.isfinite(error):
        parts.append(f"completeness error {error:.3f}")
    elif exp.completeness_note:  # why: in the table's notes and the summary
        parts.append("completeness n/a")
    parts.append(f"{exp.n_evaluations} evaluation{'s' if exp.n_evaluations != 1 else ''}")
    if not bool((exp.heatmap > 0).any()):
        parts.append("map all zero")
    return " · ".join(parts)


def gallery(result: WebResult, alpha: float = 0.5) -> list[tuple[np.ndarray, str]]:
    """The overlays (heatmap over the image at ``alpha`` opacity) with their captions."""
    found = result.found
    alpha = min(max(float(alpha), 0.0), 1.0)
    return [
        (overlay(found.rgb, exp.heatmap[0].numpy(), alpha), cell_caption(found, layer, method))
        for layer, method, exp in cells(found)
    ]


def _number(value: float) -> str:
    return f"{value:.3g}" if np.isfinite(value) else "–"


def results_table(result: WebResult) -> str:
    """A Markdown table: per layer and method, completeness error, evaluations and scores."""
    found = result.found
    explained = found.explained
    name = explained.name or f"class {explained.class_id}"
    score = "softmax p" if found.output == "softmax" else "logit"
    lines = [
        f"**{name}** (class {explained.class_id}, p = {explained.probability:.3f}); "
        f"explained: {score}; baseline: {found.baseline}; steps: {found.steps}; "
        f"{found.seconds:.1f} s",
        "",
        "| layer | method | completeness error | evaluations | y(x) | y(x') |",
        "|---|---|---|---|---|---|",
    ]
    for layer, method, exp in cells(found):
        lines.append(
            f"| {layer} | {METHODS[method].label + found.variants.caption(method)} | "
            f"{_number(float(exp.completeness_error[0]))} | {exp.n_evaluations} | "
            f"{_number(float(exp.scores[0]))} | {_number(float(exp.baseline_scores[0]))} |"
        )
    lines.extend(f"\n> {warning}" for warning in found.warnings)
    return "\n".join(lines)


def summary(found: ImageExplanation, layer: str, method: str) -> dict[str, Any]:
    """The JSON summary of one map: the class and its probability, completeness, evaluations.

    Raises:
        InputError: ``layer`` or ``method`` was not explained.
    """
    exp = found.explanations.get(method, {}).get(layer)
    if exp is None:
        exp = next(iter(found.explanations.get(method, {}).values()), None)
    if exp is None:
        raise InputError(f"no map for layer {layer!r} and method {method!r}")
    explained = found.explained
    found_json: dict[str, Any] = finite(
        {
            "class_id": explained.class_id,
            "class": explained.name,
            "probability": explained.probability,
            "layer": exp.layer,
            "method": method,
            "output": found.output,
            "baseline": found.baseline,
            "steps": found.steps if METHODS[method].takes_steps else None,
            "evaluations": exp.n_evaluations,
            "completeness_error": float(exp.completeness_error[0]),
            "completeness_note": exp.completeness_note or None,
            "score": float(exp.scores[0]),
            "baseline_score": float(exp.baseline_scores[0]),
            "top5": [encode(score) for score in found.top5],
            "warnings": list(found.warnings),
            "seconds": round(found.seconds, 3),
        }
    )
    return found_json
