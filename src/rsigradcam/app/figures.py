"""What the figure grids of ``rsigradcam explain`` and the demo say below and on their panels.

:func:`grid_caption` names the explained score (the softmax probability p or the logit),
the class and the path methods' baseline; :func:`zero_note` marks a map that is zero
everywhere, so that the figure says so and not only the terminal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rsigradcam.methods import METHODS

if TYPE_CHECKING:
    from rsigradcam.app.explain import ImageExplanation

__all__ = ["ZERO_NOTE", "grid_caption", "score_name", "zero_note"]

#: The note drawn on the panel of a map that is zero everywhere.
ZERO_NOTE = "all zero"


def zero_note(heatmap: np.ndarray) -> str:
    """:data:`ZERO_NOTE` for a heatmap with no positive value, else ``""``.

    Example:
        >>> zero_note(np.zeros((2, 2))), zero_note(np.eye(2))
        ('all zero', '')
    """
    return "" if np.any(np.nan_to_num(heatmap) > 0) else ZERO_NOTE


def score_name(output: str) -> str:
    """What ``--output`` explains, in words.

    Example:
        >>> score_name("softmax"), score_name("sigmoid")
        ('softmax probability p', 'sigmoid of the logit')
    """
    return {"softmax": "softmax probability p", "sigmoid": "sigmoid of the logit"}.get(
        output, "logit"
    )


def grid_caption(result: ImageExplanation) -> str:
    """The caption: the explained score and class; the baseline and m of the path methods.

    Example:
        ``Explained: softmax probability p of 'Egyptian cat' (class 285, p = 0.80);
        path methods (RSI-Grad-CAM) from the black baseline, m = 50``
    """
    explained = result.explained
    which = f"class {explained.class_id}"
    label = f"'{explained.name}' ({which}, " if explained.name else f"{which} ("
    score = score_name(result.output)
    caption = f"Explained: {score} of {label}p = {explained.probability:.2f})"
    path = [METHODS[m].label for m in result.explanations if METHODS[m].takes_steps]
    if path:
        caption += (
            f"; path methods ({', '.join(path)}) from the {result.baseline} baseline, "
            f"m = {result.steps}"
        )
    return caption
