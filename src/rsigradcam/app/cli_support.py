"""The command line's shared pieces: one-line errors and the options several commands take.

Each option is declared once here and used by every command that takes it, so that a
name, its help text and its choices are the same everywhere.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from rsigradcam.app.loading import InputError
from rsigradcam.files import one_line
from rsigradcam.methods.registry import METHODS

__all__ = [
    "ERRORS_HELP",
    "LAST_SPATIAL",
    "DebugOption",
    "DeviceOption",
    "HeatmapDtypeChoice",
    "ModelOption",
    "OneLineErrors",
    "OutputChoice",
    "OutputOption",
    "describe",
    "error",
    "fail_cleanly",
    "layer_option",
    "methods_option",
    "usage_error",
]

ERRORS_HELP = "On an error, show the traceback as well as the one-line message."


class OneLineErrors(TyperGroup):
    """A command group whose usage errors are one line on stderr (exit code 2)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command; in standalone mode print usage errors as one line and exit."""
        options = (args, prog_name, complete_var, False, windows_expand_args)
        if not standalone_mode:
            return super().main(*options, **extra)
        try:
            code = super().main(*options, **extra)
        except Exception as exc:
            # The parser's errors (bad option value, missing argument, unknown command)
            # carry an exit code and a message; anything else is a bug to show in full.
            exit_code, message = (
                getattr(exc, "exit_code", None),
                getattr(exc, "format_message", None),
            )
            if not isinstance(exit_code, int) or not callable(message):
                raise
            error(f"{message()} (see --help)")
            sys.exit(exit_code)
        sys.exit(code if isinstance(code, int) else 0)




class OutputChoice(str, Enum):
    """The ``--output`` values."""

    softmax = "softmax"
    logits = "logits"


def layer_option(default: str) -> Any:
    """``--layer/-l``, repeatable; ``default`` says what happens without it."""
    return typer.Option(
        "--layer",
        "-l",
        help=f"Layer to explain; repeat for several. Default: {default}",
        show_default=False,
    )


def methods_option(*names: str, default: str) -> Any:
    """A repeatable method list option (comma lists allowed)."""
    return typer.Option(
        *names,
        help=f"Method: {', '.join(METHODS)} or all; repeat or give a comma "
        f"list for several. Default: {default}.",
        show_default=False,
    )


LAST_SPATIAL = "the last layer with a spatial map ('auto'; 'head' for efficientnet_lite0)."
# Options shared by several commands, declared once.
ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        help="'efficientnet_lite0' (embedded, ImageNet), a .pt2 file saved by "
        "torch.export.save, or module:callable returning an nn.Module. Loading a model "
        "file or module runs its code: use only ones you trust.",
    ),
]
OutputOption = Annotated[
    OutputChoice, typer.Option("--output", help="Score to explain, for every method.")
]
DeviceOption = Annotated[str, typer.Option("--device", help="'cpu' or 'cuda'.")]
DebugOption = Annotated[bool, typer.Option("--debug", help=ERRORS_HELP)]


def error(message: str) -> None:
    """Print ``error: MESSAGE`` on one line to stderr."""
    typer.echo(f"error: {one_line(message)}", err=True)


@contextmanager
def fail_cleanly(debug: bool) -> Iterator[None]:
    """Turn an exception into one error line and an exit code (2 for bad arguments)."""
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        error("interrupted")
        raise typer.Exit(130) from None
    except Exception as exc:
        error(describe(exc, debug))
        raise typer.Exit(2 if isinstance(exc, InputError) else 1) from None


def describe(exc: BaseException, debug: bool) -> str:
    """One line for an exception: the message, with its type for unexpected ones.

    With ``debug`` the traceback is printed first, on stderr.
    """
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    if isinstance(exc, (ValueError, OSError)) and str(exc):
        return str(exc)
    hint = "" if debug else " (run with --debug for the traceback)"
    return f"{type(exc).__name__}: {exc}{hint}"


def usage_error(message: str) -> NoReturn:
    """Report a usage error on one line and exit with code 2."""
    error(message)
    raise typer.Exit(2)


class HeatmapDtypeChoice(str, Enum):
    """The ``--dtype`` values of ``explain-dataset``."""

    uint8 = "uint8"
    float16 = "float16"
