"""Borrowing a model for one explanation, and capturing layer activations.

:class:`LayerCapture` is the only place that touches the user's model. It is a context
manager: on entry it puts the model in eval mode and turns off ``requires_grad`` on every
parameter (so nothing before the captured layer keeps an autograd graph); on exit, on
success and on exceptions alike, it removes every hook it installed and restores every
module's mode and every parameter's ``requires_grad`` flag. It never calls ``.backward()``
and never touches ``param.grad``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

__all__ = [
    "LayerCapture",
    "ModuleOutput",
    "class_logits",
    "describe",
    "is_spatial_map",
    "logits_of",
    "model_device",
    "model_dtype",
    "resolve_layer",
]


def _with_article(word: str) -> str:
    """``"an int"``, ``"a tuple"``, ``"an 8-D"``: ``word`` after its indefinite article."""
    vowel = word[:1].lower() in "aeiou8" or word.startswith(("11-", "18-"))
    return f"{'an' if vowel else 'a'} {word}"


def describe(value: Any) -> str:
    """Describe a module output for an error message (type, and shape for tensors).

    Example:
        >>> describe(3), describe((1,))
        ('an int', 'a tuple of 1 item (an int)')
    """
    if isinstance(value, Tensor):
        return f"{_with_article(f'{value.dim()}-D')} tensor of shape {tuple(value.shape)}"
    if value is None:
        return "None"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(describe(v) for v in value[:4])
        more = ", ..." if len(value) > 4 else ""
        items = f"{len(value)} item" + "s" * (len(value) != 1)
        return f"{_with_article(type(value).__name__)} of {items} ({inner}{more})"
    return _with_article(type(value).__name__)


def logits_of(output: Any) -> Tensor:
    """The class scores in a model's output: the one rule used wherever a model is called.

    - a tensor is the scores itself;
    - a Hugging Face ``ModelOutput`` (e.g. ``ImageClassifierOutput``), a dict, or any
      object with a ``logits`` tensor gives its ``logits``;
    - a tuple or list (e.g. ``return_dict=False``) gives its first item.

    The result is not checked further here; callers that need ``(N, classes)`` check it.

    Raises:
        ValueError: No scores can be found (one line naming what was returned).

    Example:
        >>> logits_of({"logits": torch.zeros(1, 3), "hidden": None}).shape
        torch.Size([1, 3])
        >>> logits_of((torch.zeros(2, 4), torch.ones(1))).shape
        torch.Size([2, 4])
    """
    if isinstance(output, Tensor):
        return output
    found: Any = None
    if isinstance(output, Mapping):
        found = output.get("logits")
    elif not isinstance(output, (tuple, list)):
        found = getattr(output, "logits", None)
    elif output:
        found = output[0]
    if isinstance(found, Tensor):
        return found
    what = describe(output)
    if isinstance(output, Mapping):
        keys = ", ".join(repr(k) for k in list(output)[:6]) or "none"
        what = f"{what} with keys {keys}" + ", ..." * (len(output) > 6)
    raise ValueError(
        f"the model returned {what}, which holds no class scores; a classifier's forward "
        "must return the (N, classes) logits as a tensor, a ModelOutput or dict with a "
        "'logits' tensor (Hugging Face ...ForImageClassification models), or a tuple whose "
        "first item is that tensor. Use a model with a classification head or wrap it."
    )


def class_logits(output: Any) -> Tensor:
    """The (N, classes) scores of a classifier's output (:func:`logits_of`), checked 2-D.

    Raises:
        ValueError: No scores, or scores of another shape (one line naming it and the fix).

    Example:
        >>> class_logits({"logits": torch.zeros(2, 3)}).shape
        torch.Size([2, 3])
    """
    logits = logits_of(output)
    if logits.dim() != 2:
        raise ValueError(
            f"the model returned {describe(logits)}; a class index target needs (N, classes) "
            "scores. For other outputs pass a target that reads them (SegmentationTarget, "
            "BoxTarget, RegressionTarget or a callable(output) -> one score per row), or wrap "
            "the model so that its forward returns the logits tensor."
        )
    return logits


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a stateless model)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating parameter or buffer (else torch's default)."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()


def is_spatial_map(shape: tuple[int, ...] | None, spatial_dims: int = 2) -> bool:
    """Whether a batched output shape is a CAM-able (N, K, *s) map of more than one position.

    ``s`` must have ``spatial_dims`` dimensions, the input's: (N, K, l) for signals,
    (N, K, h, w) for images, (N, K, d, h, w) for volumes and video.

    Example:
        >>> is_spatial_map((1, 8, 7, 7)), is_spatial_map((1, 8, 1, 1))
        (True, False)
        >>> is_spatial_map((1, 8, 30), spatial_dims=1), is_spatial_map((1, 8, 30))
        (True, False)
    """
    return (
        shape is not None
        and len(shape) == 2 + spatial_dims
        and math.prod(shape[2:]) > 1
    )


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """Find a layer of ``model`` by name or by identity.

    Args:
        model: The model that holds the layer.
        layer: A dotted module name such as ``"blocks.10"``, or the module itself.

    Returns:
        The layer's dotted name in ``model`` and the module.

    Raises:
        ValueError: The name does not exist (close matches are listed), or the module is
            not part of the model.
        TypeError: ``layer`` is neither a string nor a module.

    Example:
        >>> name, module = resolve_layer(model, "blocks.10")  # doctest: +SKIP
    """
    named = dict(model.named_modules())
    if isinstance(layer, str):
        if layer in named and layer != "":
            return layer, named[layer]
        compiled = f"_orig_mod.{layer}"  # torch.compile wraps the model as `_orig_mod`
        if compiled in named:
            return compiled, named[compiled]
        candidates = [n for n in named if n]
        close = difflib.get_close_matches(layer, candidates, n=5, cutoff=0.5)
        hint = f" Close matches: {', '.join(repr(c) for c in close)}." if close else ""
        raise ValueError(
            f"layer {layer!r} does not exist in {type(model).__name__}.{hint} "
            f"Pass one of the names from model.named_modules(), the module itself, "
            f"or layer='auto'."
        )
    if isinstance(layer, nn.Module):
        for name, module in named.items():
            if module is layer and name:
                return name, module
        raise ValueError(
            f"layer {type(layer).__name__} is not a submodule of {type(model).__name__}. "
            "Pass a module taken from the model itself (or its name)."
        )
    raise TypeError(
        f"layer must be a module name (str), an nn.Module or 'auto', not {type(layer).__name__}."
    )


#: A layer map's layout by its number of spatial dimensions.
_MAP_LAYOUTS = {1: "(N, K, l)", 2: "(N, K, h, w)", 3: "(N, K, d, h, w)"}


@dataclass(frozen=True)
class ModuleOutput:
    """One module's output seen by :meth:`LayerCapture.probe`, in completion order."""

    name: str
    shape: tuple[int, ...] | None
    nbytes: int
    is_leaf: bool


class LayerCapture:
    """Borrow a model, capture chosen layers' outputs, and give everything back.

    Inside the ``with`` block the model is in eval mode and its parameters do not require
    grad. Layers attached with :meth:`attach` are captured on every :meth:`forward`:
    the first captured layer to run becomes a fresh leaf tensor that requires grad (the
    model continues with a clone of it, so an in-place op after the layer is safe), and
    captured layers that run later are taken as intermediate tensors of the same graph.
    A layer that returns a tuple or list is captured through its first item, which must
    be the feature map; the other items pass through unchanged.

    With ``grad_from_layer=True``, :meth:`forward` runs under ``torch.no_grad()`` up to
    the first captured layer and records the graph only from there on (nothing before it
    needs one: the parameters and the input do not require grad).

    Args:
        model: The model to borrow.
        grad_from_layer: Record the graph only from the first captured layer on (above);
            one :meth:`forward` may ask otherwise.

    Example:
        >>> with LayerCapture(model) as capture:  # doctest: +SKIP
        ...     capture.attach({"head": model.head})
        ...     logits, acts = capture.forward(images)
        ...     (grad,) = torch.autograd.grad(logits[:, 3].sum(), [acts["head"]])
    """

    def __init__(self, model: nn.Module, *, grad_from_layer: bool = False) -> None:
        self.model = model
        self._layers: dict[str, nn.Module] = {}
        self._transforms: dict[str, Callable[[Tensor], Tensor]] = {}
        self._handles: list[RemovableHandle] = []
        self._captured: dict[str, Tensor] = {}
        self._modes: list[tuple[nn.Module, bool]] = []
        self._flags: list[tuple[nn.Parameter, bool]] = []
        self._active = False
        #: Run the model without a graph up to the first captured layer (see above).
        self.grad_from_layer = bool(grad_from_layer)
        self._grad_after: bool | None = None
        #: The spatial dimensions of the input of the pass under way (2 for images).
        self._spatial_dims = 2

    def __enter__(self) -> LayerCapture:
        self._modes = [(m, m.training) for m in self.model.modules()]
        self._flags = [(p, p.requires_grad) for p in self.model.parameters()]
        self._active = True
        try:
            self.model.eval()
            for p, _ in self._flags:
                p.requires_grad_(False)
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._restore()

    def _restore(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._captured.clear()
        self._transforms.clear()
        for module, training in self._modes:
            module.training = training
        for param, flag in self._flags:
            param.requires_grad_(flag)
        self._active = False

    def _check_active(self) -> None:
        if not self._active:
            raise RuntimeError("LayerCapture must be used inside its `with` block.")

    def attach(
        self,
        layers: Mapping[str, nn.Module],
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        """Install capture hooks on ``layers`` (name -> module), removed on exit.

        Args:
            layers: The layers by name.
            transform: A reshape transform (see :mod:`rsigradcam.core.reshape`) that turns each
                layer's output into an (N, K, *s) map; :meth:`view` applies it to
                activations and gradients alike.
        """
        self._check_active()
        for name, module in layers.items():
            self._layers[name] = module
            if transform is not None:
                self._transforms[name] = transform
            self._handles.append(module.register_forward_hook(self._capture_hook(name)))

    def view(self, name: str, tensor: Tensor) -> Tensor:
        """A captured layer's tensor (activation or gradient) as its (N, K, *s) map."""
        transform = self._transforms.get(name)
        return tensor if transform is None else transform(tensor)

    def _capture_hook(self, name: str) -> Callable[[nn.Module, tuple[Any, ...], Any], Any]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
            if name in self._captured:
                raise ValueError(
                    f"layer {name!r} ran more than once in one forward pass (a module reused "
                    "in the graph), so its activation is ambiguous. Explain a layer that runs "
                    "once, e.g. a module wrapping only one of its uses."
                )
            first, rebuild = _first_tensor(output)
            tensor = self._check_output(name, first)
            if self._grad_after is not None:  # the graph starts here (grad_from_layer)
                torch.set_grad_enabled(self._grad_after)
            if tensor.requires_grad:
                # Downstream of an earlier captured layer: keep the graph node itself and
                # hand the model a copy, so in-place ops after the layer cannot change it.
                self._captured[name] = tensor
                return rebuild(tensor.clone())
            leaf = tensor.detach().requires_grad_(True)
            self._captured[name] = leaf
            return rebuild(leaf.clone())

        return hook

    def _check_output(self, name: str, output: Any) -> Tensor:
        transform = self._transforms.get(name)
        dims = self._spatial_dims
        layout = _MAP_LAYOUTS.get(dims, f"(N, K, {dims} spatial)")
        if transform is not None and isinstance(output, Tensor):
            try:
                mapped = transform(output.detach())
            except ValueError as err:
                raise ValueError(f"layer {name!r}: reshape_transform failed: {err}") from err
            if not isinstance(mapped, Tensor) or mapped.dim() != 2 + dims:
                raise ValueError(
                    f"reshape_transform turned layer {name!r}'s {describe(output)} into "
                    f"{describe(mapped)}; it must return an {layout} map."
                )
            shape = tuple(mapped.shape)
        elif isinstance(output, Tensor) and output.dim() == 2 + dims:
            shape = tuple(output.shape)
        elif isinstance(output, Tensor) and output.dim() == 3 and dims == 2:
            raise ValueError(
                f"layer {name!r} returned {describe(output)}: (N, tokens, D) like a "
                "transformer block. Pass reshape_transform='tokens' (drops the class and "
                "register tokens, square patch grid), TokenGrid(prefix_tokens, grid), or "
                "a callable (N, T, D) -> (N, D, h, w)."
            )
        elif isinstance(output, Tensor) and output.dim() == 2:
            raise ValueError(
                f"layer {name!r} returned {describe(output)}, which has no spatial dimension, "
                f"but a CAM needs a {2 + dims}-D {layout} feature map like the input's. "
                "Choose a convolutional layer or block before the pooling."
            )
        else:
            raise ValueError(
                f"layer {name!r} returned {describe(output)}, but a CAM needs a {2 + dims}-D "
                f"{layout} feature map with the input's {dims} spatial dimension"
                f"{'s' * (dims != 1)}. Choose a convolutional layer or block."
            )
        if not is_spatial_map(shape, dims):
            single = "x".join(["1"] * dims) if dims > 1 else "length-1"
            raise ValueError(
                f"layer {name!r} has a {single} spatial output {shape}, so a "
                "class activation map would be a single value. Choose an earlier layer with "
                "a spatial feature map."
            )
        return output

    def forward(
        self, x: Tensor, *, grad_from_layer: bool | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Run the model on ``x`` and return its logits and the captured activations.

        The logits are :func:`class_logits` of the model's output (a tensor, ``.logits`` of
        a Hugging Face ``ModelOutput`` or dict, or the first item of a tuple).
        ``grad_from_layer``: for this pass only, instead of the capture's own setting.

        Raises:
            ValueError: An attached layer did not run, or the model's output is not a
                2-D (N, classes) tensor.
        """
        output, captured = self.run(x, grad_from_layer=grad_from_layer)
        return class_logits(output), captured

    def run(
        self, x: Tensor, *, grad_from_layer: bool | None = None
    ) -> tuple[Any, dict[str, Tensor]]:
        """Run the model on ``x``: its raw output, unchanged, and the captured activations.

        The output is whatever the model returns (a tensor of any shape, a dict, a
        ``ModelOutput``, a tuple, a list of dicts); targets read their scores from it.

        Raises:
            ValueError: An attached layer did not run.
        """
        self._check_active()
        self._captured = {}
        self._spatial_dims = x.dim() - 2
        grad = torch.is_grad_enabled()
        from_layer = self.grad_from_layer if grad_from_layer is None else grad_from_layer
        if from_layer:
            self._grad_after = grad
        try:
            torch.set_grad_enabled(grad and not from_layer)
            output = self.model(x)
        finally:
            torch.set_grad_enabled(grad)
            self._grad_after = None
        captured, self._captured = self._captured, {}
        missing = [name for name in self._layers if name not in captured]
        if missing:
            raise ValueError(
                f"layer {missing[0]!r} did not run in the model's forward pass, so it cannot "
                "be explained. Choose a layer that the forward pass uses."
            )
        return output, captured

    def probe(self, x: Tensor) -> list[ModuleOutput]:
        """Run one no-grad forward pass and report every module's output, in completion order.

        Used to find the default layer and to estimate the memory one path point needs.
        The temporary hooks are removed before this returns. A compiled model runs eagerly
        here: one point, once, is not worth compiling a shape for.
        """
        self._check_active()
        records: list[ModuleOutput] = []
        with _temporary_hooks(self.model, records), torch.no_grad(), _uncompiled():
            self.run(x)
        return records


@contextmanager
def _uncompiled() -> Iterator[None]:
    """Run compiled modules eagerly within the block (a one-off probe is not worth a compile).

    Uses ``torch.compiler.set_stance("force_eager")`` (torch 2.6 and later); on older
    versions a compiled module compiles as usual.
    """
    set_stance = getattr(torch.compiler, "set_stance", None)
    if set_stance is None:
        yield
        return
    with set_stance("force_eager"):
        yield


def _first_tensor(output: Any) -> tuple[Any, Callable[[Tensor], Any]]:
    """A layer's explained output and how to put a replacement back in its place.

    A tensor is explained as it is; a tuple, list or named tuple whose first item is a
    tensor is explained through that first item (the others pass through untouched).
    """
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        rest = list(output[1:])
        if isinstance(output, tuple) and hasattr(output, "_fields"):  # a named tuple
            return output[0], lambda first: type(output)(first, *rest)
        return output[0], lambda first: type(output)([first, *rest])
    return output, lambda first: first


@contextmanager
def _temporary_hooks(model: nn.Module, records: list[ModuleOutput]) -> Iterator[None]:
    handles: list[RemovableHandle] = []

    def make(name: str, is_leaf: bool) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            first, _ = _first_tensor(output)
            if isinstance(first, Tensor):
                shape: tuple[int, ...] | None = tuple(first.shape)
                nbytes = first.numel() * first.element_size()
            else:
                shape, nbytes = None, 0
            records.append(ModuleOutput(name, shape, nbytes, is_leaf))

        return hook

    try:
        for name, module in model.named_modules():
            if name:
                is_leaf = next(module.children(), None) is None
                handles.append(module.register_forward_hook(make(name, is_leaf)))
        yield
    finally:
        for handle in handles:
            handle.remove()
