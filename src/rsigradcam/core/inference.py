"""The model a call runs: a private inference copy, prepared for speed.

The user's model is borrowed and never changed. When a call asks for anything that needs
its own model (another ``dtype``, BatchNorms folded into their convolutions, the
channels-last memory format, ``torch.compile``), :func:`prepare_model` makes a private
copy, prepares it and caches it, so that repeated calls on the same model pay for it once.
The cache notices changed weights: it is keyed on every parameter's and buffer's storage
and version counter, and on the identity of every module.

* **BatchNorm folding**: an eval-mode ``BatchNorm2d`` that directly follows a
  ``Conv2d`` (found in a traced graph, or in an ``nn.Sequential``, which runs its children
  in order) becomes part of the convolution's weight and bias, and is replaced by an
  ``nn.Identity`` under the same name. A pair whose convolution or BatchNorm is an explained
  layer is kept as it is, so that the explained activation stays what it is. After folding,
  the copy's logits are compared with the model's on one input; if they differ by more than
  rounding, the copy is not folded.
* **channels-last**: the copy's 4-D weights and the path points are stored NHWC, the
  layout oneDNN's CPU convolutions prefer.
* **kernel padding** (on a CPU): the embedded model's stride-2 convolutions pad their input
  unevenly ("same" padding, one more row and column at the bottom and right); in the copy
  the kernel grows a zero row and column instead, so no padded copy of the input is made.
* **activations in place** (on a CPU): a ReLU or ReLU6 right after a folded pair clamps the
  convolution's fresh output in place (:func:`activations_in_place`).
* **compile**: ``torch.compile`` on the copy (opt-in; the first call pays the compile time,
  which :func:`warm_up` measures separately). On a CPU, Inductor *freezes* the no-gradient
  part of the pass (everything before the explained layer): the copy's weights become
  constants, pre-packed for oneDNN, with the activations fused into the convolutions.
  The copy is never changed (a changed user model gets a new copy), so that is safe; on
  the embedded model (``head``, m = 50, 2 threads) a compiled call took 0.36 s with
  freezing against 0.52 s without.
* **float32 means float32**: on a GPU the passes run with TF32 off
  (:func:`float32_arithmetic`); reduced precision is asked for with ``autocast``.

Example:
    >>> from rsigradcam.core.inference import SpeedOptions, prepare_model
    >>> prepared = prepare_model(model, x, SpeedOptions(fold_batchnorm=True))  # doctest: +SKIP
    >>> prepared.folded                                                        # doctest: +SKIP
    frozenset({'features.2', 'features.3'})
"""

from __future__ import annotations

import copy
import itertools
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, fx, nn

from rsigradcam.core.capture import LayerCapture, logits_of, model_dtype
from rsigradcam.models.efficientnet_lite import EfficientNetLite0, SameConv2d

__all__ = [
    "FOLD_CHECK_TOLERANCE",
    "PreparedModel",
    "SpeedOptions",
    "activations_in_place",
    "check_speed_options",
    "conv_bn_pairs",
    "float32_arithmetic",
    "fold_batchnorm",
    "prepare_model",
    "run_settings",
    "warm_up",
]

#: The largest relative difference of the logits that folding may cause (float32 rounding
#: is about 1e-6 of the largest logit); beyond it the copy is left unfolded.
FOLD_CHECK_TOLERANCE = 1e-4

#: Convolutions whose forward uses ``weight`` and ``bias`` as ``nn.Conv2d`` does, so that a
#: folded weight and bias give the BatchNorm's output (a weight-standardising convolution,
#: for one, would undo the fold).
_FOLDABLE_CONV_FORWARDS = (nn.Conv2d.forward, SameConv2d.forward)

#: A small LRU of prepared copies per model (several option sets or layers per model).
_CACHE_PER_MODEL = 4


@dataclass(frozen=True)
class SpeedOptions:
    """How a call runs its model, none of which changes the maps beyond float rounding.

    Attributes:
        fold_batchnorm: Fold eval-mode BatchNorms into the preceding convolutions in a
            private copy; ``None``: for the embedded EfficientNet-Lite0 only.
        channels_last: Run the path points and a private copy in the NHWC memory format;
            ``None``: for the embedded EfficientNet-Lite0 on a CPU only.
        compile: ``torch.compile`` a private copy (opt-in; the first call compiles).
        autocast: Run the forward and backward passes under CUDA autocast in this dtype
            (``torch.bfloat16`` or ``torch.float16``); maps then differ from float32 by
            the reduced precision. CUDA only.
    """

    fold_batchnorm: bool | None = None
    channels_last: bool | None = None
    compile: bool = False
    autocast: torch.dtype | None = None


@contextmanager
def float32_arithmetic(device: torch.device) -> Iterator[None]:
    """Within the block, CUDA convolutions and matrix products do not use TF32.

    PyTorch lets cuDNN convolutions use TF32 by default (Ampere and later GPUs), which
    rounds each product's inputs to a 10-bit mantissa. The path sums add 51 such gradient
    and activation products: measured on an H200, the embedded model's RSI-Grad-CAM maps
    (four photos, m = 50) moved from float64's by up to 2.9e-2 at blocks.5, 1.9e-2 at
    blocks.10 and 3.4e-3 at head with TF32, as far as bfloat16 autocast, and by 7.5e-4,
    3.7e-4 and 3.9e-6 without it, as on a CPU. The flags are restored on leaving; off a
    GPU nothing changes.
    """
    if device.type != "cuda":
        yield
        return
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul


@contextmanager
def run_settings(prepared: PreparedModel, device: torch.device) -> Iterator[None]:
    """How a method's passes run: float32 without TF32, and a compiled copy frozen on a CPU.

    The first is :func:`float32_arithmetic`. Inductor reads its ``freezing`` switch when
    Dynamo traces a graph, so it is set for the whole pass, not at ``torch.compile``
    (whose ``options`` come too late for it). It applies to graphs that run without
    gradients only: the part of the pass before the explained layer.
    """
    with float32_arithmetic(device):
        if not (prepared.compiled and device.type == "cpu"):
            yield
            return
        import torch._inductor.config as inductor_config  # the documented switch

        with inductor_config.patch(freezing=True):
            yield


def check_speed_options(options: SpeedOptions) -> SpeedOptions:
    """Check the types and values of ``options``; return them.

    Raises:
        ValueError: An option of the wrong type, or an autocast dtype other than bfloat16
            or float16.
    """
    for name in ("fold_batchnorm", "channels_last"):
        value = getattr(options, name)
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"{name} must be True, False or None, got {value!r}.")
    if not isinstance(options.compile, bool):
        raise ValueError(f"compile must be True or False, got {options.compile!r}.")
    if options.autocast is not None and options.autocast not in (torch.bfloat16, torch.float16):
        raise ValueError(
            f"autocast must be torch.bfloat16, torch.float16 or None, got {options.autocast!r}."
        )
    return options


@dataclass(frozen=True)
class PreparedModel:
    """The model a call runs, and how it was prepared.

    Attributes:
        module: The user's model itself, or a private prepared copy.
        dtype: The floating dtype it runs in.
        channels_last: Whether the path points are to be given in NHWC.
        folded: Names of the convolutions and BatchNorms that were folded (a BatchNorm's
            name now holds an ``nn.Identity``).
        compiled: Whether ``module`` is compiled.
        autocast: The CUDA autocast dtype, or ``None``.
        warmed: Input shapes the compiled module has run on (see :func:`warm_up`).
    """

    module: nn.Module
    dtype: torch.dtype
    channels_last: bool = False
    folded: frozenset[str] = frozenset()
    compiled: bool = False
    autocast: torch.dtype | None = None
    warmed: set[tuple[Any, ...]] = field(default_factory=set, compare=False)


_Entry = tuple[tuple[Any, ...], PreparedModel]
_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], _Entry]] = (
    weakref.WeakKeyDictionary()
)


def _state_key(model: nn.Module) -> tuple[Any, ...]:
    """What changes when weights are edited in place or replaced, or modules swapped."""
    tensors = (*model.parameters(), *model.buffers())
    return (
        tuple((t.data_ptr(), t._version, t.dtype, t.device, t.shape) for t in tensors),
        tuple(id(m) for m in model.modules()),
    )


def prepare_model(
    model: nn.Module,
    x: Tensor,
    options: SpeedOptions,
    dtype: torch.dtype | None = None,
    keep: Iterable[str] = (),
) -> PreparedModel:
    """The model to run for ``x``: the user's own, or a cached private prepared copy.

    Args:
        model: The user's model (never changed).
        x: The images (their device decides the defaults; one is used to check a fold).
        options: What to prepare.
        dtype: Run in this dtype (a cast copy when it is not the model's).
        keep: Layer names whose conv/BatchNorm pair must not be folded.

    Raises:
        ValueError: ``autocast`` on a model that is not on a CUDA device.
    """
    own = model_dtype(model)
    run_dtype = own if dtype is None else dtype
    embedded = isinstance(model, EfficientNetLite0)
    fold = embedded if options.fold_batchnorm is None else options.fold_batchnorm
    nhwc = options.channels_last
    if nhwc is None:
        nhwc = embedded and x.device.type == "cpu"
    if options.autocast is not None and x.device.type != "cuda":
        raise ValueError(
            f"autocast={options.autocast} runs on CUDA only, but the model is on "
            f"{x.device.type}; omit autocast (float32 is what a CPU runs fastest here)."
        )
    if not (fold or nhwc or options.compile or run_dtype != own):
        return PreparedModel(model, run_dtype, autocast=options.autocast)
    keep = frozenset(keep)
    key = (run_dtype, fold, nhwc, options.compile, keep)
    state = _state_key(model)
    per_model = _CACHE.setdefault(model, {})
    cached = per_model.pop(key, None)
    if cached is not None and cached[0] == state:
        per_model[key] = cached  # most recently used last
        return replace(cached[1], autocast=options.autocast)
    private = copy.deepcopy(model).to(run_dtype)
    folded: frozenset[str] = frozenset()
    if fold:
        folded = _checked_fold(model, private, x[:1], keep)
    if nhwc:
        private = private.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if x.device.type == "cpu":  # uneven "same" padding done by the kernel: no padded copy
        for module in private.modules():
            if isinstance(module, SameConv2d):
                module.kernel_padding = True
        activations_in_place(private, folded)
    if options.compile:
        private.compile(dynamic=False)
    prepared = PreparedModel(private, run_dtype, nhwc, folded, options.compile)
    per_model[key] = (state, prepared)
    while len(per_model) > _CACHE_PER_MODEL:
        del per_model[next(iter(per_model))]
    return replace(prepared, autocast=options.autocast)


def _checked_fold(
    model: nn.Module, private: nn.Module, x: Tensor, keep: frozenset[str]
) -> frozenset[str]:
    """Fold ``private``'s pairs (not those in ``keep``); undo it if the logits move."""
    pairs = [p for p in conv_bn_pairs(private) if not keep & set(p)]
    if not pairs:
        return frozenset()
    with torch.no_grad(), LayerCapture(private):  # eval mode, restored after
        before = logits_of(private(x.to(model_dtype(private))))
    saved = {name: copy.deepcopy(private.get_submodule(name)) for pair in pairs for name in pair}
    fold_batchnorm(private, pairs)
    with torch.no_grad(), LayerCapture(private):
        after = logits_of(private(x.to(model_dtype(private))))
    scale = float(before.abs().max().clamp(min=1.0))
    if before.shape == after.shape and float((before - after).abs().max()) <= (
        FOLD_CHECK_TOLERANCE * scale
    ):
        return frozenset(name for pair in pairs for name in pair)
    for name, module in saved.items():  # put the originals back
        _set_submodule(private, name, module)
    return frozenset()


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and type(conv).forward in _FOLDABLE_CONV_FORWARDS
        and isinstance(bn, nn.BatchNorm2d)
        and bn.track_running_stats
        and bn.running_mean is not None
        and bn.running_var is not None
        and bn.num_features == conv.out_channels
        and conv.weight.is_floating_point()
        and not (conv._forward_hooks or bn._forward_hooks or bn._forward_pre_hooks)
    )


class _LeafTracer(fx.Tracer):
    """Treat every convolution and BatchNorm as one call, whatever its class."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)):
            return True
        return bool(super().is_leaf_module(m, module_qualified_name))


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """The (convolution, BatchNorm) names where the BatchNorm reads the convolution alone.

    Each of the two runs once, and nothing else reads the convolution's output. The
    model's graph is traced with ``torch.fx`` (convolutions and BatchNorms as leaves); a
    model that cannot be traced is searched for ``nn.Sequential`` children that follow each
    other instead, since a plain ``nn.Sequential`` feeds each child the previous one's
    output alone.
    """
    named = dict(model.named_modules())
    uses: dict[str, int] = {}
    for name, _ in model.named_modules(remove_duplicate=False):
        uses[name] = uses.get(name, 0) + 1
    found: list[tuple[str, str]] = []
    try:
        graph = _LeafTracer().trace(model)
    except Exception:  # any model that fx cannot trace
        graph = None
    if graph is not None:
        calls: dict[str, int] = {}
        for node in graph.nodes:
            if node.op == "call_module":
                calls[str(node.target)] = calls.get(str(node.target), 0) + 1
        for node in graph.nodes:
            if node.op != "call_module" or len(node.users) != 1:
                continue
            (user,) = node.users
            if user.op == "call_module" and len(user.args) == 1 and not user.kwargs:
                conv, bn = str(node.target), str(user.target)
                if calls.get(conv) == calls.get(bn) == 1:
                    found.append((conv, bn))
    else:
        for parent, module in named.items():
            if type(module) is not nn.Sequential:
                continue
            children = list(module.named_children())
            for (a, _), (b, _) in itertools.pairwise(children):
                prefix = f"{parent}." if parent else ""
                found.append((prefix + a, prefix + b))
    return [
        (conv, bn)
        for conv, bn in found
        if uses.get(conv) == uses.get(bn) == 1 and _foldable(named[conv], named[bn])
    ]


def fold_batchnorm(model: nn.Module, pairs: Sequence[tuple[str, str]]) -> None:
    """Fold each BatchNorm of ``pairs`` into its convolution, IN PLACE: only on a copy.

    ``conv(x) * s + (bias - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``,
    computed in float64 and stored in the convolution's dtype; the BatchNorm's name then
    holds an ``nn.Identity``.

    Args:
        model: A model the caller owns (a private copy, never the user's model).
        pairs: (convolution, BatchNorm) names from :func:`conv_bn_pairs`.
    """
    with torch.no_grad():
        for conv_name, bn_name in pairs:
            conv = model.get_submodule(conv_name)
            bn = model.get_submodule(bn_name)
            assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
            assert bn.running_mean is not None and bn.running_var is not None
            dtype = conv.weight.dtype
            mean = bn.running_mean.double()
            scale = (bn.running_var.double() + bn.eps).rsqrt()
            if bn.weight is not None:
                scale = scale * bn.weight.double()
            bias = (conv.bias.double() if conv.bias is not None else torch.zeros_like(mean))
            bias = (bias - mean) * scale
            if bn.bias is not None:
                bias = bias + bn.bias.double()
            weight = conv.weight.double() * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
            conv.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
            conv.bias = nn.Parameter(bias.to(dtype), requires_grad=False)
            _set_submodule(model, bn_name, nn.Identity())


def activations_in_place(model: nn.Module, folded: Iterable[str]) -> list[str]:
    """Let each ReLU / ReLU6 that follows a folded pair clamp the convolution's output in place.

    Only the pattern ``Conv2d, Identity (a folded BatchNorm), ReLU or ReLU6`` inside an
    ``nn.Sequential`` is changed. The activation's input is then the convolution's own fresh
    output, which nothing else reads: an explained convolution or BatchNorm keeps its pair
    (no ``Identity``), and a ReLU's output is what a hook on it sees either way. On the
    embedded model's CPU copy this saved 13-16 % of a forward (one pass and one allocation
    less per activation). Returns the names of the activations changed.
    """
    folded = set(folded)
    changed: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (_, conv), (bn_name, bn), (act_name, act) in zip(
            children, children[1:], children[2:], strict=False
        ):
            full = f"{name}.{bn_name}" if name else bn_name
            if (
                isinstance(conv, nn.Conv2d)
                and isinstance(bn, nn.Identity)
                and full in folded
                and isinstance(act, (nn.ReLU, nn.ReLU6))
                and type(act) in (nn.ReLU, nn.ReLU6)  # not a subclass with its own forward
            ):
                act.inplace = True
                changed.append(f"{name}.{act_name}" if name else act_name)
    return changed


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def warm_up(
    prepared: PreparedModel, run: Callable[[Tensor], None], x: Tensor, sizes: Iterable[int]
) -> float:
    """Run a compiled model once per new batch size; the seconds spent (compiling).

    The first call's compile time is so measured apart from the explanation's; 0.0 when
    every size was seen before or the model is not compiled.

    Args:
        prepared: The prepared model; its ``warmed`` set records the shapes seen.
        run: One forward and backward pass on a batch of points.
        x: One point (1, C, H, W) to repeat.
        sizes: The chunk sizes the call will use.
    """
    if not prepared.compiled:
        return 0.0
    start, ran = time.perf_counter(), False
    for size in sorted(set(sizes)):
        key = (size, *x.shape[1:], x.dtype, x.device)
        if key not in prepared.warmed:
            ran = True
            try:
                run(x.expand(size, *x.shape[1:]).contiguous())
            except Exception as err:
                first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
                raise RuntimeError(
                    f"compile=True failed: torch.compile could not build the model ({first}); "
                    "on a CPU it needs a C++ compiler (gcc or clang) on the PATH, or run "
                    "without compile."
                ) from err
            prepared.warmed.add(key)
    return time.perf_counter() - start if ran else 0.0
