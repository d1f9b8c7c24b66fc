"""The option blocks that several commands take, each declared once as a dataclass.

A command names a block as one keyword parameter (``model_input: ModelInput``) and
:func:`with_option_groups` shows typer the block's fields as options, in its place; the
command receives the block built from them. So ``--model``, ``--device``, ``--size``,
``--mean``, ``--std`` and ``--no-normalize`` are written once, with their help, and every
command that loads a model reads them the same way.

Like :mod:`rsigradcam.app.options`, this module imports no torch: the blocks' methods
import the settings when a command runs.

Example:
    >>> ModelInput(size="32").size
    '32'
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, fields, is_dataclass
from typing import TYPE_CHECKING, Any, TypeVar, get_type_hints

from rsigradcam.app.options import (
    CompileOption,
    DeviceOption,
    FoldBatchnormOption,
    GradReluOption,
    GuidedOption,
    MeanOption,
    ModelOption,
    NoNormalizeOption,
    SizeOption,
    StdOption,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from rsigradcam.app.settings import InputFormat, Variants
    from rsigradcam.core.inference import SpeedOptions

__all__ = ["ModelInput", "RsiVariants", "SpeedFlags", "with_option_groups"]

ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class ModelInput:
    """``--model``, ``--device`` and the model's input: ``--size``, ``--mean``, ``--std``."""

    model: ModelOption = "efficientnet_lite0"
    device: DeviceOption = "cpu"
    size: SizeOption = None
    mean: MeanOption = None
    std: StdOption = None
    no_normalize: NoNormalizeOption = False

    def input_format(self) -> InputFormat:
        """The input size and normalisation these options ask for.

        Raises:
            InputError: A malformed value (see :func:`rsigradcam.app.settings.input_format`).
        """
        from rsigradcam.app.settings import input_format

        return input_format(self.size, self.mean, self.std, self.no_normalize)


@dataclass(frozen=True)
class RsiVariants:
    """``--grad-relu`` and ``--guided``: the authors' variants of rsi."""

    grad_relu: GradReluOption = False
    guided: GuidedOption = False

    def variants(self) -> Variants:
        """The variants, for the methods that take them."""
        from rsigradcam.app.settings import Variants

        return Variants(self.grad_relu, self.guided)


@dataclass(frozen=True)
class SpeedFlags:
    """``--compile`` and ``--fold-batchnorm/--no-fold-batchnorm``: how the model runs."""

    compile_model: CompileOption = False
    fold_batchnorm: FoldBatchnormOption = None

    def speed(self) -> SpeedOptions:
        """The methods' speed option (see :func:`rsigradcam.app.settings.speed_options`)."""
        from rsigradcam.app.settings import speed_options

        return speed_options(self.compile_model, self.fold_batchnorm)


def with_option_groups(command: Callable[..., ResultT]) -> Callable[..., ResultT]:
    """``command`` as typer should see it: each option-block parameter spread into its fields.

    A parameter annotated with a dataclass (a block above) becomes the block's fields, as
    keyword parameters with their ``Annotated`` options and defaults, at its place; the
    call builds the block from them and passes it on. Other parameters are kept as they are.
    """
    signature = inspect.signature(command, eval_str=True)
    blocks: dict[str, type[Any]] = {}
    parameters: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():
        block = parameter.annotation
        if not (isinstance(block, type) and is_dataclass(block)):
            # Keyword-only, all of them: a block's fields may follow parameters without
            # defaults, and typer passes every value by name.
            parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))
            continue
        blocks[parameter.name] = block
        hints = get_type_hints(block, include_extras=True)
        parameters.extend(
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name]
            )
            for f in fields(block)
        )

    @functools.wraps(command)
    def run(**values: Any) -> ResultT:
        for name, block in blocks.items():
            values[name] = block(**{f.name: values.pop(f.name) for f in fields(block)})
        return command(**values)

    spread = signature.replace(parameters=parameters)
    run.__signature__ = spread  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    return run
