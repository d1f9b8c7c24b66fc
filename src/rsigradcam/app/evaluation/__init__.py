"""``rsigradcam evaluate``: every method on the same images, scored by every metric.

Each method of :data:`rsigradcam.methods.METHODS` explains the images' top-1 classes at
the same layers (Integrated Gradients at the input), and :mod:`rsigradcam.metrics` scores
the maps: deletion and insertion (and the random-order baseline), Average Drop and
Increase in Confidence, the grid pointing game on 2 x 2 grids of the images, cascading
parameter randomisation on a few images, and, for Grad-CAM and RSI-Grad-CAM, numerical
stability (float32 against float64, m steps against m = 512, input noise).

Every mean comes with a 95 % percentile bootstrap interval. The paper's two claims,
RSI-Grad-CAM maps are *better focused* than Grad-CAM's and *numerically more stable*, get a
verdict per layer from paired bootstrap intervals of RSI-Grad-CAM minus Grad-CAM on the
same images (or grid cells): ``holds`` when the interval lies on the better side of 0,
``does not hold`` when it lies on the worse side, ``inconclusive`` when it contains 0.

A run is reproducible: the same options and seed give the same numbers (path chunks come
from a fixed memory budget, every random draw from the seed).

The modules, each one step: :mod:`.options` (what to run, the metrics and claims),
:mod:`.inputs` (images and layers), :mod:`.stages` (the method runner and the metric
stages), :mod:`.stats` (bootstrap intervals and verdicts), :mod:`.results` (the typed
results), :mod:`.storage` (``results.json`` and ``results-units.json.gz``, and
:func:`load_results`, which reads them back), :mod:`.report` (``report.html`` and
``summary.md``) and :mod:`.run` (:func:`evaluate` and :func:`write_evaluation`).

Example:
    >>> from rsigradcam.app.evaluation import EvaluationOptions, evaluate, write_evaluation
    >>> found = evaluate(EvaluationOptions(max_images=4, sanity=False))  # doctest: +SKIP
    >>> write_evaluation(found, "rsigradcam-evaluation")                 # doctest: +SKIP
"""

from rsigradcam.app.evaluation.inputs import EvalImage, load_images, resolve_layers
from rsigradcam.app.evaluation.options import (
    CLAIMS,
    GRID_THRESHOLDS,
    METRICS,
    RANDOM,
    Claim,
    EvaluationOptions,
    MetricInfo,
)
from rsigradcam.app.evaluation.report import markdown_summary, render_report
from rsigradcam.app.evaluation.results import Evaluation, EvaluationResults, Interval, Units
from rsigradcam.app.evaluation.run import evaluate, write_evaluation
from rsigradcam.app.evaluation.stages import MethodRunner, sanity_stages
from rsigradcam.app.evaluation.stats import (
    bootstrap_mean,
    judge_claims,
    paired_bootstrap_mean,
    summarize,
    verdict,
)
from rsigradcam.app.evaluation.storage import load_results, read_results, save_results

__all__ = [
    "CLAIMS",
    "GRID_THRESHOLDS",
    "METRICS",
    "RANDOM",
    "Claim",
    "EvalImage",
    "Evaluation",
    "EvaluationOptions",
    "EvaluationResults",
    "Interval",
    "MethodRunner",
    "MetricInfo",
    "Units",
    "bootstrap_mean",
    "evaluate",
    "judge_claims",
    "load_images",
    "load_results",
    "markdown_summary",
    "paired_bootstrap_mean",
    "read_results",
    "render_report",
    "resolve_layers",
    "sanity_stages",
    "save_results",
    "summarize",
    "verdict",
    "write_evaluation",
]
