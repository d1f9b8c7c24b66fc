"""What an evaluation runs: its options, its metrics, the paper's claims and constants.

Example:
    >>> EvaluationOptions(max_images=4, sanity=False).check()
    >>> METRICS["gridpg"].better
    'higher'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rsigradcam import metrics
from rsigradcam.app.errors import InputError
from rsigradcam.app.evaluation.arms import PRESET_ARMS, Arm, run_arms
from rsigradcam.app.loading.models import INPUT_SIZE
from rsigradcam.app.settings import Channels, InputFormat, Variants
from rsigradcam.constants import IMAGENET_MEAN, IMAGENET_STD
from rsigradcam.core.targets import Output
from rsigradcam.methods import METHODS

__all__ = [
    "CLAIMS",
    "CPU_BATCH",
    "GPU_BATCH",
    "GRID_THRESHOLDS",
    "METRICS",
    "PRESETS",
    "RANDOM",
    "RANDOM_BLOCK",
    "Better",
    "Claim",
    "EvaluationOptions",
    "MetricInfo",
    "Verdict",
]

#: make_grids thresholds tried in turn, until enough grids can be built.
GRID_THRESHOLDS: tuple[float, ...] = (0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0)
#: The pseudo-method of random-order maps (the deletion and insertion baseline).
RANDOM = "random"
#: Side, in pixels, of the blocks that the random-order maps rank: contiguous patches about
#: the size of a blocks.5 / blocks.10 cell (224 / 14), not scattered pixels, which break an
#: image faster than any map and would make a reference that no method can beat.
RANDOM_BLOCK = 16
#: Images per no-grad forward pass of the metrics: small batches are fastest on a CPU.
CPU_BATCH, GPU_BATCH = 8, 64

Better = Literal["higher", "lower"]
Verdict = Literal["holds", "does not hold", "inconclusive"]


@dataclass(frozen=True)
class MetricInfo:
    """How to read one metric: its label, which direction is better, and its unit."""

    label: str
    better: Better
    unit: Literal["image", "cell"] = "image"
    description: str = ""


#: Every scalar metric of a run, by its key in ``EvaluationResults.metrics``.
METRICS: dict[str, MetricInfo] = {
    "deletion_auc": MetricInfo(
        "Deletion AUC", "lower", description="area under the probability as the most "
        "salient pixels are blacked out first (orders that scatter single pixels, as random "
        "order and Integrated Gradients do, break the image's texture and score low for "
        "that alone)"
    ),
    "insertion_auc": MetricInfo(
        "Insertion AUC", "higher", description="area under the probability as the most "
        "salient pixels are restored first into a blurred image"
    ),
    "average_drop": MetricInfo(
        "Average Drop %", "lower", description="probability lost on the image masked by its map"
    ),
    "increase_in_confidence": MetricInfo(
        "Increase in Confidence %", "higher", description="images whose masked probability "
        "exceeds the original"
    ),
    "gridpg": MetricInfo(
        "GridPG", "higher", "cell", "share of the positive attribution inside the explained "
        "cell of a 2x2 grid (chance 0.25)"
    ),
    "sanity_spearman": MetricInfo(
        "Sanity: Spearman under randomisation", "lower", description="rank correlation "
        "with the trained model's map, averaged over the stages of the cascading "
        "randomisation (from the output down to every layer random); low means the map "
        "depends on what the model learned"
    ),
    "dtype_max_abs": MetricInfo(
        "float32 vs float64: max |Δ|", "lower", description="largest heatmap difference "
        "between float32 and float64 computation"
    ),
    "noise_sensitivity": MetricInfo(
        "Max-sensitivity", "lower", description="largest relative heatmap change under "
        "uniform input noise"
    ),
    "steps_max_abs": MetricInfo(
        "m vs reference m: max |Δ|", "lower", description="largest heatmap difference "
        "between the evaluation's m and the reference m (512 by default)"
    ),
}


@dataclass(frozen=True)
class Claim:
    """A claim of the paper, tested by RSI-Grad-CAM minus Grad-CAM on some metrics."""

    key: str
    text: str
    metrics: tuple[str, ...]


#: The paper's claims and the metrics that test them.
CLAIMS: tuple[Claim, ...] = (
    Claim(
        "focus",
        "RSI-Grad-CAM maps are better focused than Grad-CAM's",
        ("gridpg", "deletion_auc", "insertion_auc"),
    ),
    Claim(
        "stability",
        "RSI-Grad-CAM's numerical computation is more stable than Grad-CAM's",
        ("dtype_max_abs", "noise_sensitivity"),
    ),
)


#: ``--preset`` name -> the options it sets (the command's own flags still win). ``claims``
#: keeps what the paper's two claims need and fits 500 images in at most 2.5 hours on a
#: 2-core CPU (about 2 hours, measured shard by shard): the five arms of
#: :data:`~rsigradcam.app.evaluation.arms.PRESET_ARMS`, coarser deletion/insertion curves,
#: GridPG on at least 100 grids, float32/float64 and max-sensitivity on the first images
#: only, no randomisation test or m sweep, and 10 000 bootstrap resamples (a p-value is a
#: multiple of 2 / resamples, and the family has 45 Holm-adjusted tests: with 1000, one
#: resample across 0 leaves an adjusted p of 0.09).
PRESETS: dict[str, dict[str, Any]] = {
    "claims": {
        "arms": PRESET_ARMS["claims"],
        "methods": ("gradcam", "rsi"),
        "curve_points": 8,
        "sanity": False,
        "stability_steps": (),
        "stability_images": 16,
        "noise_samples": 3,
        "max_grids": 1000,
        "min_grids": 100,
        "grid_rounds": 2,
        "bootstrap": 10_000,
    },
}


@dataclass(frozen=True)
class EvaluationOptions:
    """Everything that decides the numbers of a run (all of it goes into ``results.json``).

    Attributes:
        model: ``"efficientnet_lite0"``, a ``.pt2`` file or ``module:callable`` (see
            :func:`rsigradcam.app.loading.load_model`).
        images: A folder of images (or a list file); ``None``: the scikit-image photos of
            :data:`~rsigradcam.app.samples.EVALUATION_PHOTOS` and the paper samples when
            found.
        layers: Layers to explain; empty: blocks.5, blocks.10 and head for the embedded
            model, the last spatial layer otherwise.
        methods: Names from :data:`rsigradcam.methods.METHODS`.
        steps: Path steps m of rsi, integrated-gradcam and ig.
        output: The explained score of every method, ``"softmax"`` or ``"logits"``.
        device: ``"cpu"`` or ``"cuda"``.
        seed: Seed of every random draw (grids, random maps, randomisation, noise,
            bootstrap).
        max_images: Use at most this many images (the first ones).
        curve_points: Steps of the deletion and insertion curves.
        max_grids: At most this many GridPG grids (0: no GridPG).
        min_grids: Lower the grid threshold until this many grids exist (or fewer,
            the most possible).
        grid_rounds: Rounds of grid building: each round groups the eligible images anew
            (another draw of the seed), so an image is in at most this many grids.
        sanity: Run the cascading randomisation test.
        sanity_images: Images of the randomisation test (the first ones).
        sanity_stages: Stages of the cascade, evenly spaced from the output down; each
            randomises every layer from the output down to it.
        stability: Run the stability measures (Grad-CAM and RSI-Grad-CAM only).
        stability_images: Images of the float32/float64 and max-sensitivity measures (the
            first ones); ``None``: all.
        stability_steps: The m compared with ``reference_steps`` (empty: skip).
        reference_steps: The reference m.
        steps_images: Images of the m comparison (the first ones).
        noise_samples: Noise draws of max-sensitivity.
        noise_radius: Noise half-width, in the normalised input space.
        bootstrap: Bootstrap resamples of every interval.
        gallery_images: Images shown in the report's gallery (the first ones).
        grad_relu: The authors' PyTorch variant of ``rsi`` (gradients through a ReLU).
        guided: The authors' Keras variant of ``rsi`` (guided integrated gradients).
        input_size: ``(height, width)`` of the model input.
        mean: The normalisation's per-channel mean; ``None``: not normalised.
        std: The normalisation's per-channel standard deviation; ``None`` with ``mean``.
        arms: The arms (``METHOD[+VARIANT][@OUTPUT]``, see
            :mod:`rsigradcam.app.evaluation.arms`); empty: each of ``methods`` on
            ``output``, with ``grad_relu`` / ``guided`` where they apply.
        preset: The ``--preset`` the options came from, or ``None``.
        shard_size: Images per shard: the unit of work that a resumed run skips when done.
        grid_shard_size: GridPG grids per shard.
    """

    model: str = "efficientnet_lite0"
    images: Path | None = None
    layers: tuple[str, ...] = ()
    methods: tuple[str, ...] = tuple(METHODS)
    steps: int = 50
    output: Output = "softmax"
    device: str = "cpu"
    seed: int = 0
    max_images: int | None = None
    curve_points: int = 16
    max_grids: int = 3
    min_grids: int = 2
    grid_rounds: int = 1
    sanity: bool = True
    sanity_images: int = 3
    sanity_stages: int = 6
    stability: bool = True
    stability_images: int | None = None
    stability_steps: tuple[int, ...] = (8, 16, 32, 50, 100)
    reference_steps: int = metrics.REFERENCE_STEPS
    steps_images: int = 4
    noise_samples: int = 5
    noise_radius: float = 0.02
    bootstrap: int = 1000
    gallery_images: int = 24
    grad_relu: bool = False
    guided: bool = False
    input_size: tuple[int, int] = (INPUT_SIZE, INPUT_SIZE)
    mean: Channels | None = IMAGENET_MEAN
    std: Channels | None = IMAGENET_STD
    arms: tuple[str, ...] = ()
    preset: str | None = None
    shard_size: int = 16
    grid_shard_size: int = 4

    @property
    def variants(self) -> Variants:
        """``grad_relu`` and ``guided``, for the methods that take them."""
        return Variants(self.grad_relu, self.guided)

    @property
    def input_format(self) -> InputFormat:
        """The input size and normalisation."""
        return InputFormat(self.input_size, self.mean, self.std)

    def check(self) -> None:
        """Raise :class:`~rsigradcam.app.loading.InputError` for a value that cannot work."""
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise InputError(
                f"unknown method(s) {unknown or '(none)'}; use {', '.join(METHODS)}"
            )
        positive = {
            "steps": self.steps, "curve_points": self.curve_points,
            "sanity_images": self.sanity_images, "sanity_stages": self.sanity_stages,
            "reference_steps": self.reference_steps, "steps_images": self.steps_images,
            "noise_samples": self.noise_samples, "bootstrap": self.bootstrap,
            "min_grids": self.min_grids, "grid_rounds": self.grid_rounds,
            "shard_size": self.shard_size, "grid_shard_size": self.grid_shard_size,
        }
        for name, value in positive.items():
            if value < 1:
                raise InputError(f"{name} must be a positive integer, got {value}")
        for name in ("max_images", "stability_images"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"{name} must be a positive integer, got {value}")
        if self.max_grids < 0 or self.gallery_images < 0:
            raise InputError("max_grids and gallery_images must not be negative")
        if any(m < 1 for m in self.stability_steps):
            raise InputError(f"stability_steps must be positive, got {self.stability_steps}")
        if not self.noise_radius >= 0:
            raise InputError(f"noise_radius must not be negative, got {self.noise_radius}")
        if self.output not in ("softmax", "logits"):
            raise InputError(f"output must be 'softmax' or 'logits', got {self.output!r}")
        self.variants.check(self.methods)
        self.run_arms()
        if (self.mean is None) != (self.std is None):
            raise InputError("mean and std are both given or both None (not normalised)")

    def run_arms(self) -> list[Arm]:
        """The arms of the run (see :func:`~rsigradcam.app.evaluation.arms.run_arms`)."""
        return run_arms(self.methods, self.arms, self.output, self.variants)
