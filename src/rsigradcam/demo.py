"""The demo: explain real photos with the embedded pretrained EfficientNet-Lite0.

It uses scikit-image's bundled photos (installed with the package, no download) and,
when a ``paper-samples`` folder is found, the six sample images of the RSI-Grad-CAM paper.
For each image it explains the top-1 class at three depths with Grad-CAM and
RSI-Grad-CAM, and writes a figure grid (rows = layers; columns = image | Grad-CAM |
RSI-Grad-CAM), the overlays, the raw heatmaps (.npy) and a JSON summary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rsigradcam.io import ImageSource
from rsigradcam.pipeline import METHODS, ImageExplainer, load_model, write_outputs

__all__ = ["DEMO_LAYERS", "DemoResult", "demo_images", "find_paper_samples", "run_demo"]

#: Layers shown by the demo: a middle block, a late block, and the head convolution.
DEMO_LAYERS: tuple[str, ...] = ("blocks.5", "blocks.10", "head")

_SKIMAGE_PHOTOS = {"chelsea": "Egyptian cat", "coffee": "espresso", "camera": "tripod"}


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


def find_paper_samples(start: Path | None = None) -> Path | None:
    """Find ``shared/data/paper-samples`` beside the working folder or the source tree."""
    roots = [Path.cwd() if start is None else start, Path(__file__).resolve().parents[3]]
    for root in roots:
        for base in (root, *root.parents[:2]):
            candidate = base / "shared" / "data" / "paper-samples"
            if candidate.is_dir():
                return candidate
    return None


def demo_images(samples: Path | None) -> Iterator[tuple[str, str, ImageSource]]:
    """Yield (name, description, image) for the scikit-image photos and the paper samples."""
    from skimage import data

    for name in _SKIMAGE_PHOTOS:
        yield name, f"skimage.data.{name}()", getattr(data, name)()
    if samples is not None:
        for path in sorted(samples.glob("*.jpg")):
            yield path.stem, str(path), path


def run_demo(
    out_dir: str | Path = "rsigradcam-output/demo",
    samples: Path | None = None,
    steps: int = 50,
    progress: Callable[[str], None] = print,
) -> list[DemoResult]:
    """Run the demo and return what it wrote.

    Each image is explained at :data:`DEMO_LAYERS` with Grad-CAM and RSI-Grad-CAM (both
    on the softmax probability of the top-1 class), and gets the files of
    :func:`rsigradcam.pipeline.write_outputs`, always with the figure grid.

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
    explainer = ImageExplainer(load_model("efficientnet_lite0"), DEMO_LAYERS, METHODS, steps)
    results: list[DemoResult] = []
    for name, description, source in demo_images(samples):
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
