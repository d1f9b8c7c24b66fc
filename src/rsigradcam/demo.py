"""The demo: explain real photos with the embedded pretrained EfficientNet-Lite0.

It uses scikit-image's bundled photos (installed with the package, no download) and,
when a ``paper-samples`` folder is found, the six sample images of the RSI-Grad-CAM paper.
For each image it explains the top-1 class at three depths with Grad-CAM and
RSI-Grad-CAM, and writes a figure grid (rows = layers; columns = image | Grad-CAM |
RSI-Grad-CAM), the overlays, the raw heatmaps (.npy) and a JSON summary.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rsigradcam.explanation import Explanation
from rsigradcam.io import load_image
from rsigradcam.methods import GradCAM, RSIGradCAM
from rsigradcam.models import efficientnet_lite0, imagenet_classes
from rsigradcam.viz import GridCell, overlay, save_grid, save_png

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


def demo_images(samples: Path | None) -> Iterator[tuple[str, object]]:
    """Yield (name, image source) for the scikit-image photos and the paper samples."""
    from skimage import data

    for name in _SKIMAGE_PHOTOS:
        yield name, getattr(data, name)()
    if samples is not None:
        for path in sorted(samples.glob("*.jpg")):
            yield path.stem, path


def _explain_one(
    model: torch.nn.Module, image: torch.Tensor, steps: int
) -> tuple[dict[str, Explanation], dict[str, Explanation]]:
    grad = GradCAM(model, list(DEMO_LAYERS), output="softmax")(image)
    rsi = RSIGradCAM(model, list(DEMO_LAYERS), steps=steps)(image)
    assert isinstance(grad, dict) and isinstance(rsi, dict)
    return grad, rsi


def run_demo(
    out_dir: str | Path = "rsigradcam-output/demo",
    samples: Path | None = None,
    steps: int = 50,
    progress: Callable[[str], None] = print,
) -> list[DemoResult]:
    """Run the demo and return what it wrote.

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
    model = efficientnet_lite0()
    classes = imagenet_classes()
    results: list[DemoResult] = []
    for name, source in demo_images(samples):
        start = time.perf_counter()
        image, rgb = load_image(source)  # type: ignore[arg-type]
        with torch.no_grad():
            probs = torch.softmax(model(image), dim=1)[0]
        top = probs.topk(5)
        grad, rsi = _explain_one(model, image, steps)
        seconds = time.perf_counter() - start
        label = classes[int(top.indices[0])]
        rows = []
        for layer in DEMO_LAYERS:
            g, r = grad[layer], rsi[layer]
            g_over, r_over = overlay(rgb, g.heatmap[0]), overlay(rgb, r.heatmap[0])
            save_png(g_over, out / f"{name}_{layer}_gradcam.png")
            save_png(r_over, out / f"{name}_{layer}_rsi.png")
            np.save(out / f"{name}_{layer}_rsi.npy", r.heatmap[0].cpu().numpy())
            np.save(out / f"{name}_{layer}_gradcam.npy", g.heatmap[0].cpu().numpy())
            rows.append(
                [
                    GridCell(rgb, f"{label} (p={float(top.values[0]):.2f})"),
                    GridCell(g_over, "Grad-CAM"),
                    GridCell(
                        r_over,
                        f"RSI-Grad-CAM m={steps}, "
                        f"err {float(r.completeness_error[0]):.3f}",
                    ),
                ]
            )
        grid = save_grid(
            rows, out / f"{name}_grid.png", row_labels=list(DEMO_LAYERS), suptitle=name
        )
        completeness = {layer: float(rsi[layer].completeness_error[0]) for layer in DEMO_LAYERS}
        summary = out / f"{name}.json"
        summary.write_text(
            json.dumps(
                {
                    "image": name,
                    "top5": [
                        {"class_id": int(i), "class": classes[int(i)], "probability": float(p)}
                        for p, i in zip(top.values, top.indices, strict=True)
                    ],
                    "explained_class": {"class_id": int(top.indices[0]), "class": label},
                    "layers": list(DEMO_LAYERS),
                    "steps": steps,
                    "output": "softmax",
                    "baseline": "black",
                    "completeness_error": completeness,
                    "seconds": round(seconds, 3),
                },
                indent=2,
            )
        )
        result = DemoResult(
            name, label, float(top.values[0]), grid, summary, completeness, seconds
        )
        results.append(result)
        errors = ", ".join(f"{k} {v:.3f}" for k, v in completeness.items())
        progress(
            f"{name:22s} {label:24s} p={result.probability:.3f}  "
            f"completeness error: {errors}  ({seconds:.1f} s)"
        )
    return results
