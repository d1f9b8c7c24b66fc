"""The demo: explain real photos with the embedded pretrained EfficientNet-Lite0.

It uses scikit-image's bundled photos (installed with the package, no download) and,
when a ``paper-samples`` folder is found, the six sample images of the RSI-Grad-CAM paper.
For each image it explains the top-1 class at three depths with Grad-CAM and
RSI-Grad-CAM, and writes a figure grid (rows = layers; columns = image | Grad-CAM |
RSI-Grad-CAM), the overlays, the raw heatmaps (.npy) and a JSON summary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rsigradcam.app.explain import ImageExplainer
from rsigradcam.app.loading.models import load_model
from rsigradcam.app.outputs import write_outputs
from rsigradcam.app.samples import DEMO_LAYERS, DEMO_PHOTOS, find_paper_samples, sample_images

__all__ = ["DEMO_METHODS", "DemoResult", "run_demo"]

#: The demo's methods, in the order of the figure columns: Grad-CAM, then RSI-Grad-CAM.
DEMO_METHODS: tuple[str, ...] = ("gradcam", "rsi")


@dataclass(frozen=True)
class DemoResult:
    """What the demo wrote for one image."""

    name: str
    label: str
    probability: float
    grid: Path
    summary: Path
    completeness_error: dict[str, float]
    seconds: float


def run_demo(
    out_dir: str | Path = "rsigradcam-output/demo",
    samples: Path | None = None,
    steps: int = 50,
    progress: Callable[[str], None] = print,
) -> list[DemoResult]:
    """Run the demo and return what it wrote.

    Each image is explained at :data:`DEMO_LAYERS` with Grad-CAM and RSI-Grad-CAM (both
    on the softmax probability of the top-1 class), and gets the files of
    :func:`rsigradcam.app.outputs.write_outputs`, always with the figure grid.

    Args:
        out_dir: Folder for the figures, overlays, heatmaps and summaries.
        samples: Folder of extra .jpg images; ``None`` looks for the paper samples.
        steps: RSI-Grad-CAM steps m.
        progress: Called with one line per image.

    Example:
        >>> results = run_demo("demo-output")  # doctest: +SKIP
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples = samples if samples is not None else find_paper_samples()
    explainer = ImageExplainer(load_model("efficientnet_lite0"), DEMO_LAYERS, DEMO_METHODS, steps)
    results: list[DemoResult] = []
    for name, description, source in sample_images(DEMO_PHOTOS, samples):
        found = explainer(source, name=name, description=description)
        files = write_outputs(found, out, grid=True)
        assert files.grid is not None
        completeness = {
            layer: float(exp.completeness_error[0])
            for layer, exp in found.explanations["rsi"].items()
        }
        label = found.explained.name or str(found.explained.class_id)
        result = DemoResult(
            name,
            label,
            found.explained.probability,
            files.grid,
            files.summary,
            completeness,
            found.seconds,
        )
        results.append(result)
        errors = ", ".join(f"{k} {v:.3f}" for k, v in completeness.items())
        progress(
            f"{name:22s} {label:24s} p={result.probability:.3f}  "
            f"completeness error: {errors}  ({found.seconds:.1f} s)"
        )
    return results
