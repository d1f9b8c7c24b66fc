"""What the page shows of a result: overlays and captions, a table, a summary, notes.

The notes are the page's one-line error (:func:`error_note`, replaced by the next run)
and what the convergence panel says before it is drawn (:func:`convergence_note`).

Example:
    >>> [caption for _, caption in gallery(result)][-1]        # doctest: +SKIP
    'head · RSI-Grad-CAM · completeness error 0.006 · 51 evaluations'
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from rsigradcam.app.errors import InputError
from rsigradcam.app.explain import ImageExplanation
from rsigradcam.app.web.results import CONVERGENCE_REFERENCE, CONVERGENCE_STEPS, WebResult
from rsigradcam.explanation import Explanation
from rsigradcam.files import finite
from rsigradcam.methods import METHODS
from rsigradcam.serialization import encode
from rsigradcam.viz import overlay

__all__ = [
    "cell_caption",
    "cells",
    "convergence_note",
    "error_note",
    "gallery",
    "results_table",
    "summary",
]


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


# --------------------------------------------------------------------------------------
# Notes: the page's error line and the convergence panel's instructions
# --------------------------------------------------------------------------------------


def error_note(message: str) -> str:
    """The page's error line (HTML): shown where the results were, until the next run.

    Example:
        >>> print(error_note("unknown layer 'x' <b>"))
        <div class="rsg-error" role="alert">unknown layer 'x' &lt;b&gt;</div>
    """
    return f'<div class="rsg-error" role="alert">{html.escape(message, quote=False)}</div>'


def _listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def convergence_note(result: WebResult | None, *, drawn: bool = False) -> str:
    """What the convergence panel says (HTML): how to fill it, or how to read it.

    Args:
        result: The tab's explanation (``None`` before the first one).
        drawn: Whether the plot below is that result's convergence.
    """
    ladder = ", ".join(str(m) for m in CONVERGENCE_STEPS)
    compared = (
        f"at m = {ladder} and compares each map with the m = {CONVERGENCE_REFERENCE} map "
        "(correlation, and completeness error)"
    )
    button = "<b>Convergence as m grows</b>"
    if result is None:
        return f"<p>Explain an image first; then {button} explains its class again {compared}.</p>"
    methods = result.options.path_methods
    if not methods:
        return (
            "<p>The convergence follows the path methods (rsi, integrated-gradcam, ig): tick "
            f"one and explain again, then click {button}.</p>"
        )
    labels = _listing([METHODS[m].label for m in methods])
    if drawn:
        return (
            f"<p>{html.escape(labels)} at m = {ladder} against m = {CONVERGENCE_REFERENCE}; the "
            f"dashed line marks this explanation's m = {result.options.steps}.</p>"
        )
    explained = result.found.explained
    name = html.escape(explained.name or f"class {explained.class_id}")
    layers = html.escape(_listing(list(result.options.layers)))
    runs = len(CONVERGENCE_STEPS) + 1
    return (
        f"<p>Click {button} to explain '{name}' again with {html.escape(labels)} at {layers} "
        f"{compared}: {runs} more explanations.</p>"
    )
