"""The command line's shared pieces: one-line errors and the options several commands take.

Each option is declared once here and used by every command that takes it, so that a
name, its help text and its choices are the same everywhere. Values are checked by the
options' own parsers (:func:`integer_option`, :func:`choice_option`), which raise
:class:`BadValueError`: one line in the project's words, exit code 2.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from typer.core import TyperGroup

# Nothing heavy here (no torch, no library module that imports it): the command line
# imports this module before it reads the arguments, and --help must answer at once.
from rsigradcam.app.errors import InputError
from rsigradcam.app.threads import THREADS_HELP, busy_line
from rsigradcam.constants import METHOD_NAMES

__all__ = [
    "ERRORS_HELP",
    "LAST_SPATIAL",
    "BadValueError",
    "CompileOption",
    "DebugOption",
    "DeviceOption",
    "FoldBatchnormOption",
    "GradReluOption",
    "GuidedOption",
    "HeatmapDtypeChoice",
    "LayerFilterOption",
    "LayerOption",
    "MeanOption",
    "MethodOption",
    "ModelOption",
    "NoNormalizeOption",
    "OneLineErrors",
    "OutputChoice",
    "OutputOption",
    "OverlaySizeChoice",
    "OverlaySizeOption",
    "SizeOption",
    "StdOption",
    "StepsOption",
    "ThreadsOption",
    "choice_option",
    "describe",
    "error",
    "fail_cleanly",
    "image_files",
    "integer_option",
    "layer_option",
    "methods_option",
    "parse_step_list",
    "plural",
    "say_if_busy",
    "step_list_option",
    "steps_option",
    "terminated_as_interrupt",
    "usage_error",
]

ERRORS_HELP = "On an error, show the traceback as well as the one-line message."

ChoiceT = TypeVar("ChoiceT", bound=Enum)


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
            # The parser's errors (a bad value, found by our parsers as BadValueError; a missing
            # argument, an unknown command or option) carry an exit code and a message;
            # anything else is a bug to show in full.
            exit_code, message = (
                getattr(exc, "exit_code", None),
                getattr(exc, "format_message", None),
            )
            if not isinstance(exit_code, int) or not callable(message):
                raise
            error(f"{message()} (see --help)")
            sys.exit(exit_code)
        sys.exit(code if isinstance(code, int) else 0)


class BadValueError(Exception):
    """A bad option value, said in one line: ``--steps must be at least 1, got '0'``.

    The options' parsers raise it. It is not a ``ValueError``, so the parser's validation
    library passes it on unchanged, and :class:`OneLineErrors` prints it (exit code 2).
    """

    exit_code = 2

    def format_message(self) -> str:
        """The line, as the command line prints it after ``error: ``."""
        return str(self)


def _refuse(name: str, must: str, got: object) -> NoReturn:
    raise BadValueError(f"{name} must be {must}, got {got!r}")


def _name(names: Sequence[str]) -> str:
    """How messages name an option: its longest ``--`` name (``--batch-size``, not ``-b``)."""
    return max((n for n in names if n.startswith("-")), key=len)


def _integer_parser(
    name: str, minimum: int | None, maximum: int | None
) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value  # a default
        else:
            try:
                number = int(str(value).strip())
            except ValueError:
                _refuse(name, "an integer", value)
        if minimum is not None and number < minimum:
            _refuse(name, f"at least {minimum}", value)
        if maximum is not None and number > maximum:
            _refuse(name, f"at most {maximum}", value)
        return number

    return parse


def integer_option(
    *names: str,
    help: str,
    minimum: int | None = None,
    maximum: int | None = None,
    show_default: bool = True,
) -> Any:
    """An integer option, checked by its parser: ``--workers must be at least 0, got '-1'``.

    ``minimum`` and ``maximum`` also give the help's range note (``x>=1``).
    """
    return typer.Option(
        *names,
        help=help,
        min=minimum,
        max=maximum,
        parser=_integer_parser(_name(names), minimum, maximum),
        show_default=show_default,
    )


def choice_option(
    choices: type[ChoiceT], *names: str, help: str, show_default: bool = True
) -> Any:
    """An option whose values are ``choices``' values, checked by its parser.

    A value that is none of them: ``--output must be one of softmax, logits, got 'foo'``.
    """
    name = _name(names)

    def parse(value: Any) -> ChoiceT:
        if isinstance(value, choices):
            return value
        try:
            return choices(str(value))
        except ValueError:
            _refuse(name, "one of " + ", ".join(str(c.value) for c in choices), value)

    return typer.Option(*names, help=help, parser=parse, show_default=show_default)


def _steps_parser(name: str) -> Callable[[Any], int]:
    """``--steps``: an integer of at least 1 and at most the library's limit."""
    as_integer = _integer_parser(name, 1, None)

    def parse(value: Any) -> int:
        from rsigradcam.core.limits import check_steps  # light: no torch

        try:
            return check_steps(as_integer(value), name)
        except ValueError as err:
            raise BadValueError(str(err)) from None

    return parse


def steps_option(*names: str, help: str) -> Any:
    """A number of path intervals m: at least 1, at most the library's limit."""
    return typer.Option(*names, help=help, min=1, parser=_steps_parser(_name(names)))


def parse_step_list(text: str, name: str = "--stability-steps") -> tuple[int, ...]:
    """A comma list of step counts, ``"8,16,50"``; ``""`` or ``"none"`` for none.

    Raises:
        BadValueError: An item that is not an integer, or a count the library refuses.

    Example:
        >>> parse_step_list("8, 16,50"), parse_step_list("none")
        ((8, 16, 50), ())
    """
    if text.strip().lower() in ("", "none"):
        return ()
    each = _steps_parser(name)
    try:
        return tuple(each(int(part)) for part in text.split(","))
    except ValueError:
        _refuse(name, "a comma list of integers", text)


def step_list_option(*names: str, help: str) -> Any:
    """A comma list of step counts, checked as it is read (see :func:`parse_step_list`)."""
    name = _name(names)

    def check(text: Any) -> str:
        parse_step_list(str(text), name)
        return str(text)

    return typer.Option(*names, help=help, parser=check)


class OverlaySizeChoice(str, Enum):
    """The ``--overlay-size`` values of ``explain``."""

    model = "model"
    original = "original"


OverlaySizeOption = Annotated[
    OverlaySizeChoice,
    choice_option(
        OverlaySizeChoice,
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
LayerOption = Annotated[
    list[str] | None, layer_option(LAST_SPATIAL + " See 'rsigradcam layers'.")
]
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
    OutputChoice,
    choice_option(OutputChoice, "--output", help="Score to explain, for every method."),
]
StepsOption = Annotated[
    int,
    steps_option(
        "--steps", "-s", help="Path steps m (m + 1 points) of rsi, integrated-gradcam and ig."
    ),
]
MethodOption = Annotated[list[str] | None, methods_option("--method", "-m", default="rsi")]
DeviceOption = Annotated[
    str,
    typer.Option(
        "--device",
        help="'cpu' or 'cuda' (under torchrun, explain-dataset and evaluate take "
        "cuda:LOCAL_RANK).",
    ),
]
DebugOption = Annotated[bool, typer.Option("--debug", help=ERRORS_HELP)]
ThreadsOption = Annotated[
    int | None,
    integer_option("--threads", minimum=1, help=THREADS_HELP, show_default=False),
]
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


@contextmanager
def terminated_as_interrupt() -> Iterator[None]:
    """Handle SIGTERM (``kill``, a job's time limit) as Ctrl+C, so that clean-up runs.

    Only in the main thread (elsewhere signals cannot be handled); the previous handler
    comes back on exit.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


def say_if_busy(threads: int | None, local_processes: int = 1) -> None:
    """Print one note on stderr when the machine is busy and ``--threads 1`` would help.

    Nothing when the user chose the threads (see :func:`rsigradcam.app.threads.busy_line`).
    """
    line = busy_line(threads, local_processes)
    if line is not None:
        typer.echo(line, err=True)


def usage_error(message: str) -> NoReturn:
    """Report a usage error on one line and exit with code 2."""
    error(message)
    raise typer.Exit(2)


class HeatmapDtypeChoice(str, Enum):
    """The ``--dtype`` values of ``explain-dataset``."""

    uint8 = "uint8"
    float16 = "float16"


def image_files(images: Sequence[Path]) -> list[Path]:
    """The image files of ``explain``'s arguments: a folder stands for its image files.

    A folder gives the files directly in it whose suffix Pillow opens, sorted by name
    (not its subfolders: ``explain-dataset`` explains a folder tree). Missing paths, and a
    folder without image files, are refused as usage errors, before torch is imported, so
    a mistyped name answers at once; every missing path is named.
    """
    missing = [str(p) for p in images if not p.exists()]
    if missing:
        noun = "image file" if len(missing) == 1 else "image files"
        usage_error(f"{noun} not found: {', '.join(repr(m) for m in missing)}")
    found: list[Path] = []
    for path in images:
        if path.is_file():
            found.append(path)
            continue
        if not path.is_dir():
            usage_error(f"not an image file: {str(path)!r}")
        from rsigradcam.app.images import image_suffixes  # PIL, no torch

        suffixes = image_suffixes()
        inside = sorted(
            f for f in path.iterdir()
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in suffixes
        )
        if not inside:
            usage_error(
                f"folder {str(path)!r} holds no image file (its subfolders are not searched); "
                "for a folder tree, use rsigradcam explain-dataset"
            )
        found.extend(inside)
    return found
