"""The ``rsigradcam`` command line: the typer app, assembled from the command modules.

Each group of commands lives in :mod:`rsigradcam.app.commands`: ``explain`` (overlays,
heatmaps, JSON and figure grids for image files) and ``layers`` (the layers of a model
that can be explained) in :mod:`~rsigradcam.app.commands.images`; ``explain-dataset`` (a
folder of images, in resumable shards, on one or several processes) in
:mod:`~rsigradcam.app.commands.dataset`; ``evaluate`` (every method scored by every
metric, with an HTML report) in :mod:`~rsigradcam.app.commands.evaluate`; ``demo``,
``bench`` and ``app`` (the explorer in the browser, :mod:`rsigradcam.app.web`) in
:mod:`~rsigradcam.app.commands.tools`. Their options are declared once, in
:mod:`rsigradcam.app.options`. ``--method`` takes the registry's names
(:data:`rsigradcam.methods.METHODS`) in every command, and ``all`` means all of them.

Exit codes: 0 success; 2 a usage error (a bad option, a missing image file, an unknown
model, layer or class, an output folder that cannot be written), reported before any
work starts; 1 a runtime error, such as an image that cannot be decoded (the other
images are still explained). Each error is one line on stderr; ``--debug`` adds the
traceback.

Example:
    $ rsigradcam explain cat.jpg --layer blocks.10 --layer head --method all --out out
"""

from __future__ import annotations

from typing import Annotated

import typer

from rsigradcam import __version__

# Only typer and the light command modules here: the commands import torch and the library
# when they run, so that --help and a usage error answer at once (see tests).
from rsigradcam.app.commands.dataset import explain_dataset
from rsigradcam.app.commands.evaluate import evaluate_command
from rsigradcam.app.commands.images import explain, layers
from rsigradcam.app.commands.tools import app_command, bench, demo
from rsigradcam.app.options import OneLineErrors

__all__ = ["app", "main"]


app = typer.Typer(
    name="rsigradcam",
    cls=OneLineErrors,
    help="Explain image classifiers with RSI-Grad-CAM (Riemann-Stieltjes Integrated Grad-CAM).",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _show_version(shown: bool) -> None:
    if shown:
        typer.echo(f"rsigradcam {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_show_version, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Explain image classifiers with RSI-Grad-CAM."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


app.command()(explain)
app.command()(layers)
app.command("explain-dataset")(explain_dataset)
app.command()(demo)
app.command("evaluate")(evaluate_command)
app.command()(bench)
app.command("app")(app_command)


def main() -> None:
    """Entry point of the ``rsigradcam`` console script."""
    app()


if __name__ == "__main__":
    main()
