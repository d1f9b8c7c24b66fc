"""Every method by its one name, and how to build one from a name.

Each method class carries its own metadata (:attr:`~BaseCAM.method_name`,
:attr:`~BaseCAM.label`, :attr:`~BaseCAM.takes_steps`, :attr:`~BaseCAM.explains_input`);
this module only lists the classes, in the order of the names in
:data:`rsigradcam.constants.METHOD_NAMES` (which the command line reads without torch).
``--method all`` in every command, the files' method names and :attr:`Explanation.method`
all come from here.

Example:
    >>> from rsigradcam.methods.registry import METHODS, method_layers
    >>> list(METHODS)
    ['rsi', 'gradcam', 'gradcam++', 'layercam', 'integrated-gradcam', 'ig']
    >>> method_layers("ig", ["head"])
    ['input']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from torch import nn

from rsigradcam.constants import METHOD_NAMES
from rsigradcam.explanation import Explanation
from rsigradcam.methods.base import BaseCAM
from rsigradcam.methods.gradcam import GradCAM
from rsigradcam.methods.gradcampp import GradCAMPlusPlus
from rsigradcam.methods.integrated_gradcam import IntegratedGradCAM
from rsigradcam.methods.integrated_gradients import INPUT_LAYER, IntegratedGradients
from rsigradcam.methods.layercam import LayerCAM
from rsigradcam.methods.rsi import RSIGradCAM

__all__ = ["METHODS", "create_cam", "method_class", "method_layers"]

#: The method classes; :data:`METHODS` orders them by ``METHOD_NAMES``.
_CLASSES: tuple[type[BaseCAM[Any]], ...] = (
    RSIGradCAM,
    GradCAM,
    GradCAMPlusPlus,
    LayerCAM,
    IntegratedGradCAM,
    IntegratedGradients,
)


def _registry(classes: Sequence[type[BaseCAM[Any]]]) -> dict[str, type[BaseCAM[Any]]]:
    """The classes by name, in the order of :data:`rsigradcam.constants.METHOD_NAMES`.

    Raises:
        RuntimeError: The classes' names are not exactly ``METHOD_NAMES``, in its order.
    """
    names = tuple(cls.method_name for cls in classes)
    if names != METHOD_NAMES:
        raise RuntimeError(
            f"the method classes are named {names}, but rsigradcam.constants.METHOD_NAMES "
            f"is {METHOD_NAMES}: list each method once, in the same order, in both"
        )
    return dict(zip(METHOD_NAMES, classes, strict=True))


#: Every method by the name a caller may choose it with, in the order of tables.
METHODS: dict[str, type[BaseCAM[Any]]] = _registry(_CLASSES)


def method_class(name: str) -> type[BaseCAM[Any]]:
    """The class registered under ``name``.

    Raises:
        ValueError: ``name`` is not a method; the message lists the names.
    """
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown method {name!r}; use one of {', '.join(METHODS)}"
        ) from None


def method_layers(name: str, layers: Sequence[str]) -> list[str]:
    """The layers the method explains: the input for Integrated Gradients, else ``layers``."""
    return [INPUT_LAYER] if method_class(name).explains_input else list(layers)


def create_cam(
    name: str,
    model: nn.Module,
    layers: Sequence[str],
    *,
    steps: int | Literal["auto"] | None = None,
    path_options: Mapping[str, Any] | None = None,
    variants: Mapping[str, bool] | None = None,
    **options: Any,
) -> BaseCAM[dict[str, Explanation]]:
    """Build the method ``name`` for ``layers``, with ``steps`` where it integrates.

    ``options`` go to every method (e.g. ``output``, ``memory_budget_mb``, ``dtype``);
    ``steps`` and ``path_options`` (e.g. ``baseline``, ``normalize``) only to the path
    methods (:attr:`~BaseCAM.takes_steps`); of ``variants`` (``grad_relu``, ``guided``), only
    those the class lists in :attr:`~BaseCAM.variants`. Its call returns a dict by layer:
    of ``layers`` for a layer method, of ``"input"`` alone for a method that explains the
    input (:func:`method_layers`).

    Example:
        >>> cam = create_cam("rsi", model, ["head"], steps=50, output="softmax")  # doctest: +SKIP
    """
    cls = method_class(name)
    if cls.takes_steps:
        if steps is not None:
            options["steps"] = steps
        options.update(path_options or {})
    options.update({k: v for k, v in (variants or {}).items() if k in cls.variants})
    return cls(model, method_layers(name, layers), **options)
