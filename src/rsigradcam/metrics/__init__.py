"""Evaluation metrics for saliency maps: faithfulness, localisation, sanity and stability.

Each metric is a plain function of (model, images, maps or an explainer, targets) that
batches its forward passes, shows a progress bar on a terminal (``progress=False`` turns
it off), borrows the model without changing it, and returns a frozen dataclass with
per-image tensors and the aggregate (:func:`rsigradcam.serialization.encode` gives its JSON
values). Randomness comes from a ``seed`` argument through a private ``torch.Generator``;
the global RNG is never touched.

- :func:`deletion`, :func:`insertion`: RISE curves and their area (:func:`auc`);
  :func:`random_heatmaps` gives the random-order baseline.
- :func:`average_drop_increase`: Average Drop and Increase in Confidence.
- :func:`make_grids`, :func:`gridpg`, :func:`gridpg_scores`: the grid pointing game.
- :func:`randomization_sanity`: cascading model-parameter randomisation.
- :func:`stability` (:func:`dtype_difference`, :func:`steps_spread`,
  :func:`max_sensitivity`, :func:`split_saturated`): numerical and input stability.

The explainer types that the metrics accept (:data:`Explain`, :data:`MakeExplainer`,
:data:`GridExplainer`, :data:`SanityExplainer`) are exported here too; import them from
``rsigradcam.metrics``, since ``rsigradcam.metrics.stability`` names the function.

Example:
    >>> from rsigradcam import RSIGradCAM
    >>> from rsigradcam.metrics import deletion, random_heatmaps
    >>> exp = RSIGradCAM(model, "head")(images)                          # doctest: +SKIP
    >>> deletion(model, images, exp.heatmap, progress=False).mean         # doctest: +SKIP
    >>> deletion(model, images, random_heatmaps(images, seed=0)).mean     # doctest: +SKIP
"""

from rsigradcam.metrics.confidence import ConfidenceResult, average_drop_increase, mask_images
from rsigradcam.metrics.correlation import average_ranks, pearson, spearman
from rsigradcam.metrics.deletion import (
    CurveResult,
    auc,
    default_step,
    deletion,
    insertion,
    random_heatmaps,
)
from rsigradcam.metrics.gridpg import (
    CHANCE,
    GridExplainer,
    GridPGResult,
    GridSet,
    attribution_map,
    cell_boxes,
    gridpg,
    gridpg_scores,
    group_cells,
    make_grids,
    tile_grids,
)
from rsigradcam.metrics.sanity import (
    ORIGINAL,
    SanityExplainer,
    SanityResult,
    parameterised_layers,
    randomization_sanity,
    randomize_module,
    stage_modules,
)
from rsigradcam.metrics.stability import (
    REFERENCE_STEPS,
    SATURATION,
    STEPS,
    DtypeResult,
    Explain,
    MakeExplainer,
    SaturationSplit,
    SensitivityResult,
    StabilityResult,
    StepsResult,
    dtype_difference,
    max_sensitivity,
    split_saturated,
    stability,
    steps_spread,
)
from rsigradcam.metrics.substrate import SubstrateSpec, blur_substrate, make_substrate

__all__ = [
    "CHANCE",
    "ORIGINAL",
    "REFERENCE_STEPS",
    "SATURATION",
    "STEPS",
    "ConfidenceResult",
    "CurveResult",
    "DtypeResult",
    "Explain",
    "GridExplainer",
    "GridPGResult",
    "GridSet",
    "MakeExplainer",
    "SanityExplainer",
    "SanityResult",
    "SaturationSplit",
    "SensitivityResult",
    "StabilityResult",
    "StepsResult",
    "SubstrateSpec",
    "attribution_map",
    "auc",
    "average_drop_increase",
    "average_ranks",
    "blur_substrate",
    "cell_boxes",
    "default_step",
    "deletion",
    "dtype_difference",
    "gridpg",
    "gridpg_scores",
    "group_cells",
    "insertion",
    "make_grids",
    "make_substrate",
    "mask_images",
    "max_sensitivity",
    "parameterised_layers",
    "pearson",
    "random_heatmaps",
    "randomization_sanity",
    "randomize_module",
    "spearman",
    "split_saturated",
    "stability",
    "stage_modules",
    "steps_spread",
    "tile_grids",
]
