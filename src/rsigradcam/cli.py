"""The ``rsigradcam`` command line: a thin layer that parses arguments and calls the library."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="rsigradcam",
    help="Explain image classifiers with RSI-Grad-CAM (Riemann-Stieltjes Integrated Grad-CAM).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Explain image classifiers with RSI-Grad-CAM."""


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for figures, overlays, heatmaps and JSON.")
    ] = Path("rsigradcam-output/demo"),
    steps: Annotated[int, typer.Option("--steps", min=1, help="RSI-Grad-CAM steps m.")] = 50,
) -> None:
    """Explain bundled photos (and the paper samples, when found) with the embedded model."""
    from rsigradcam.demo import DEMO_LAYERS, find_paper_samples, run_demo

    samples = find_paper_samples()
    typer.echo(
        "Explaining scikit-image photos"
        + (f" and the paper samples in {samples}" if samples else "")
        + f" with EfficientNet-Lite0 (ImageNet weights), layers {', '.join(DEMO_LAYERS)}, "
        f"Grad-CAM and RSI-Grad-CAM (m={steps}, trapezoid, softmax, black baseline)."
    )
    results = run_demo(out, samples=samples, steps=steps, progress=typer.echo)
    typer.echo(f"\nWrote {len(results)} figure grids, overlays (.png), heatmaps (.npy) and")
    typer.echo(f"summaries (.json) to {out.resolve()}")
    for r in results:
        typer.echo(f"  {r.grid}")


def main() -> None:
    """Entry point of the ``rsigradcam`` console script."""
    app()


if __name__ == "__main__":
    main()
