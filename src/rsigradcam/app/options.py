"""The command line's shared pieces: one-line errors and the options several commands take.

Each option is declared once here and used by every command that takes it, so that a
name, its help text and its choices are the same everywhere.
"""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

# Nothing heavy here (no torch, no library module that imports it): the command line
# imports this module before it reads the arguments, and --help must answer at once.
from rsigradcam.app.errors import InputError

__all__ = [
    "ERRORS_HELP",
    "LAST_SPATIAL",
    "METHOD_NAMES",
    "CompileOption",
    "DebugOption",
    "DeviceOption",
    "FoldBatchnormOption",
    "GradReluOption",
    "GuidedOption",
    "HeatmapDtypeChoice",
    "LayerFilterOption",
    "MeanOption",
    "ModelOption",
    "NoNormalizeOption",
    "OneLineErrors",
    "OutputChoice",
    "OutputOption",
    "OverlaySizeChoice",
    "OverlaySizeOption",
    "SizeOption",
    "StdOption",
    "bad_value_line",
    "check_image_files",
    "describe",
    "error",
    "fail_cleanly",
    "layer_option",
    "methods_option",
    "plural",
    "usage_error",
]

ERRORS_HELP = "On an error, show the traceback as well as the one-line message."
#: The method names of :data:`rsigradcam.methods.METHODS`, in its order, for the help
#: texts (the registry imports torch; a test checks that the two agree).
METHOD_NAMES: tuple[str, ...] = (
    "rsi",
    "gradcam",
    "gradcam++",
    "layercam",
    "integrated-gradcam",
    "ig",
)


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
            error(f"{bad_value_line(exc) or message()} (see --help)")
            sys.exit(exit_code)
        sys.exit(code if isinstance(code, int) else 0)




# The parser's type checks, in our words: what the value must be.
_MUST_BE = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "greater_than_equal": "at least {ge}",
    "greater_than": "more than {gt}",
    "less_than_equal": "at most {le}",
    "less_than": "less than {lt}",
}
_CHOICES = re.compile(r"^'.*' is not one of (?P<choices>.+?)\.?$", re.DOTALL)


def bad_value_line(exc: BaseException) -> str | None:
    """The parser's error for a bad option value, as ``--steps must be at least 1, got '0'``.

    typer checks values with a validation library whose wording (``Value error, ...``,
    ``Input should be ...``) is not ours; this rewrites it in the project's words.
    ``None`` when ``exc`` is not a value that failed a check (the caller keeps its message).
    """
    param = getattr(exc, "param", None)
    errors = getattr(exc.__cause__, "errors", None)
    found = errors() if callable(errors) else None
    if param is None or not found:
        return None
    first = found[0]
    opts = [o for o in getattr(param, "opts", ()) if o.startswith("-")]
    name = max(opts, key=len) if opts else str(getattr(param, "name", "value")).upper()
    context = first.get("ctx") or {}
    template = _MUST_BE.get(str(first.get("type")))
    if template is not None:
        must = template.format(**context)
    else:
        text = str(context.get("error") or first.get("msg", ""))
        text = text.removeprefix("Value error, ")
        choices = _CHOICES.match(text)
        if choices is None:
            return f"{name}: {text[:1].lower()}{text[1:]}, got {first.get('input')!r}"
        must = "one of " + choices.group("choices").replace("'", "")
    return f"{name} must be {must}, got {first.get('input')!r}"


class OverlaySizeChoice(str, Enum):
    """The ``--overlay-size`` values of ``explain``."""

    model = "model"
    original = "original"


OverlaySizeOption = Annotated[
    OverlaySizeChoice,
    typer.Option(
        "--overlay-size",
        help="Size of the overlay PNGs: model (the model's input size) or original (the "
        "image's own size, the heatmap upsampled bilinearly); the .npy stays at the "
        "model's input size.",
    ),
]
LayerFilterOption = Annotated[
    str | None,
    typer.Option(
        "--filter",
        help="Only the layers whose name contains this text, or matches this glob "
        "('blocks.*', 'blocks.1?').",
        show_default=False,
    ),
]


def plural(count: int, noun: str) -> str:
    """``"1 image"``, ``"3 images"``, ``"2 processes"``: a count and its noun.

    Example:
        >>> plural(1, "shard"), plural(0, "shard"), plural(2, "process")
        ('1 shard', '0 shards', '2 processes')
    """
    if count == 1:
        return f"1 {noun}"
    return f"{count} {noun}{'es' if noun.endswith(('s', 'sh', 'ch', 'x')) else 's'}"


class OutputChoice(str, Enum):
    """The ``--output`` values."""

    softmax = "softmax"
    logits = "logits"
    sigmoid = "sigmoid"


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
        help=f"Method: {', '.join(METHOD_NAMES)} or all; repeat or give a comma "
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
# The model's input (every command that loads a model) and the authors' variants of rsi.
SizeOption = Annotated[
    str | None,
    typer.Option(
        "--size",
        help="Model input size: one number (a square) or HxW, e.g. 32 or 224x320; images "
        "are resized to it. Default: 224.",
        show_default=False,
    ),
]
MeanOption = Annotated[
    str | None,
    typer.Option(
        "--mean",
        help="Per-channel mean (R,G,B) of the model's normalisation, e.g. 0.5,0.5,0.5. "
        "Default: ImageNet's (0.485,0.456,0.406).",
        show_default=False,
    ),
]
StdOption = Annotated[
    str | None,
    typer.Option(
        "--std",
        help="Per-channel standard deviation (R,G,B), e.g. 0.5,0.5,0.5. Default: ImageNet's "
        "(0.229,0.224,0.225).",
        show_default=False,
    ),
]
NoNormalizeOption = Annotated[
    bool,
    typer.Option(
        "--no-normalize",
        help="Feed the model pixels in [0, 1], not normalised (instead of --mean/--std).",
    ),
]
GradReluOption = Annotated[
    bool,
    typer.Option(
        "--grad-relu",
        help="rsi only: ReLU on the gradients before integrating, as in the authors' "
        "PyTorch notebooks (completeness no longer applies).",
    ),
]
GuidedOption = Annotated[
    bool,
    typer.Option(
        "--guided",
        help="rsi only: keep the integrated gradient where the activation, it and the "
        "activation's change are positive, as in the authors' Keras notebook "
        "(completeness no longer applies).",
    ),
]
# How the model runs (maps move by float rounding only).
CompileOption = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="torch.compile a private copy of the model (needs a C++ compiler on a CPU); "
        "the first image pays the compile time (up to minutes), the others run faster.",
    ),
]
FoldBatchnormOption = Annotated[
    bool | None,
    typer.Option(
        "--fold-batchnorm/--no-fold-batchnorm",
        help="Fold BatchNorms into their convolutions in a private copy of the model, "
        "checked against the model's output (default: on).",
        show_default=False,
    ),
]


def error(message: str) -> None:
    """Print ``error: MESSAGE`` on one line to stderr."""
    from rsigradcam.files import one_line

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


def check_steps_option(value: int, name: str = "--steps") -> int:
    """Refuse a number of intervals the library refuses (above 100,000), before any work.

    The words are those of :func:`rsigradcam.core.limits.check_steps`, with the option's
    name; that module does not import torch.
    """
    from rsigradcam.core.limits import check_steps

    try:
        return check_steps(value, name)
    except ValueError as err:
        usage_error(str(err))


class HeatmapDtypeChoice(str, Enum):
    """The ``--dtype`` values of ``explain-dataset``."""

    uint8 = "uint8"
    float16 = "float16"


def check_image_files(images: Sequence[Path]) -> None:
    """Refuse, as a usage error, image arguments that are missing or are not files.

    It names every missing path, or else every path that is not a file; it runs before
    torch is imported, so a mistyped name answers at once.
    """
    missing = [str(p) for p in images if not p.exists()]
    if missing:
        noun = "image file" if len(missing) == 1 else "image files"
        usage_error(f"{noun} not found: {', '.join(repr(m) for m in missing)}")
    folders = [str(p) for p in images if not p.is_file()]
    if folders:
        usage_error(f"not an image file: {', '.join(repr(f) for f in folders)}")
