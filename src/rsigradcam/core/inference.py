"""The model a call runs: the user's own, or a private inference copy prepared for speed.

The user's model is borrowed and never changed. A path method runs many points through
the model, so by default (``speed="auto"``) it runs a private copy prepared for speed,
for every model, not only the embedded one. :func:`prepare_model` builds the copy,
**checks it against the model's own output** on the call's first image (within float
rounding, :data:`COPY_CHECK_TOLERANCE`) and caches it; where the copy cannot be built,
does not fit the memory budget or does not match, the model runs as given. Either way the
:class:`~rsigradcam.explanation.Explanation` says which (:class:`ModelRun`).

What a float32 copy gets (:class:`SpeedOptions`):

* **BatchNorm folding**: an eval-mode BatchNorm that directly follows a convolution
  (found in a traced graph, or in an ``nn.Sequential``, which runs its children in order)
  becomes part of the convolution's weight and bias, and is replaced by an
  ``nn.Identity`` under the same name. A pair whose convolution or BatchNorm is an
  explained layer is kept, so that the explained activation stays what it is. Plain
  ``nn.Conv1d/2d/3d`` fold; a subclass folds when it declares ``folds_batchnorm = True``
  (its output is linear in its weight plus its bias, as ``nn.Conv2d``'s).
* **channels-last**: the copy's 4-D weights and the path points are stored NHWC, the
  layout oneDNN's CPU convolutions prefer (on a CPU by default).
* **CPU tuning** (on a CPU): a ReLU or ReLU6 right after a folded pair clamps the
  convolution's fresh output in place (:func:`activations_in_place`), and every module
  of the copy that implements :class:`InferenceCopyHook` prepares itself (the embedded
  model's "same"-padded convolutions pad in the kernel instead of copying the input).
* **compile**: ``torch.compile`` on the copy (opt-in; the first call pays the compile time,
  which :func:`warm_up` measures separately). On a CPU, Inductor *freezes* the no-gradient
  part of the pass (everything before the explained layer): the copy's weights become
  constants, pre-packed for oneDNN, with the activations fused into the convolutions.
  The copy is never changed (a changed user model gets a new copy), so that is safe.

Other dtypes get none of these float32 tricks: a ``dtype=torch.float64`` run casts a
copy and runs exactly the model's own arithmetic, so float64 maps are the reference.
**float32 means float32**: on a GPU the passes run with TF32 off
(:func:`float32_arithmetic`); reduced precision is asked for with ``autocast``.

**The cache.** Copies are cached per model (weakly: a model that is freed frees its
copies), at most :data:`COPIES_PER_MODEL` per model, least recently used first out; a key
is the dtype, the options and the explained layers' pairs. The cache notices changed
weights: it is keyed on every parameter's and buffer's storage and version counter, and on
the identity of every module. :func:`clear_cache` empties it.

Example:
    >>> from rsigradcam.core.inference import SpeedOptions, prepare_model
    >>> prepared = prepare_model(model, x, SpeedOptions())  # doctest: +SKIP
    >>> prepared.run.folded                                 # doctest: +SKIP
    2
"""

from __future__ import annotations

import copy
import itertools
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, fx, nn

from rsigradcam.core.capture import LayerCapture, model_dtype
from rsigradcam.explanation import ModelRun

__all__ = [
    "COPIES_PER_MODEL",
    "COPY_CHECK_TOLERANCE",
    "InferenceCopyHook",
    "ModelRun",
    "PreparedModel",
    "SpeedOptions",
    "SpeedSpec",
    "activations_in_place",
    "check_speed",
    "clear_cache",
    "conv_bn_pairs",
    "float32_arithmetic",
    "fold_batchnorm",
    "prepare_model",
    "run_settings",
    "state_key",
    "warm_up",
]

#: The largest difference of any output tensor between the copy and the model, relative
#: to the largest output magnitude (at least 1), that the copy may show on the check;
#: float32 rounding of a reordered sum is about 1e-6 of it.
COPY_CHECK_TOLERANCE = 1e-4

#: Prepared copies kept per model (several option sets or explained layers per model).
#: Each copy is made only where it fits the call's memory budget. Fewer thrash: a process
#: that alternates between more option sets (as ``rsigradcam bench`` does, four) would
#: rebuild, re-check and, with ``compile``, recompile a copy on every call.
COPIES_PER_MODEL = 4


@runtime_checkable
class InferenceCopyHook(Protocol):
    """A module that can prepare itself for inference in a private copy.

    :func:`prepare_model` calls ``prepare_inference_copy`` on every module of a float32
    copy that has it (with CPU tuning on), never on the user's model. The module may then
    compute its output another way, provided the output stays the same within float
    rounding (the copy is checked against the model). The embedded model's
    :class:`~rsigradcam.models.efficientnet_lite.SameConv2d` pads in its kernel there.
    """

    def prepare_inference_copy(self, device: torch.device) -> None:
        """Prepare this module (of a private copy) to run on ``device``."""


@dataclass(frozen=True)
class SpeedOptions:
    """How a call runs its model: none of these moves the maps beyond float rounding.

    ``SpeedOptions()`` is what ``speed="auto"`` means for a path method; ``speed="off"``
    (:attr:`OFF`) runs the model as given. They apply to float32 runs; other dtypes run
    a plain cast copy (see :mod:`rsigradcam.core.inference`).

    Attributes:
        fold_batchnorm: Fold eval-mode BatchNorms into the preceding convolutions in a
            private copy (a pair whose convolution or BatchNorm is explained is kept).
        channels_last: Run the path points and a private copy in the NHWC memory format;
            ``None``: on a CPU. It applies to 4-D (image) inputs only; signals, volumes
            and video run in the usual layout whatever it says.
        cpu_tuning: On a CPU, activations that follow a folded pair clamp in place and
            modules implementing :class:`InferenceCopyHook` prepare themselves.
        compile: ``torch.compile`` a private copy (the first call compiles).
        autocast: Run the forward and backward passes under CUDA autocast in this dtype
            (``torch.bfloat16`` or ``torch.float16``); maps then differ from float32 by
            the reduced precision. CUDA only.

    Example:
        >>> from rsigradcam import RSIGradCAM, SpeedOptions
        >>> cam = RSIGradCAM(model, "head", speed=SpeedOptions(compile=True))  # doctest: +SKIP
    """

    fold_batchnorm: bool = True
    channels_last: bool | None = None
    cpu_tuning: bool = True
    compile: bool = False
    autocast: torch.dtype | None = None

    #: The model as given: no private copy (unless another dtype needs one).
    OFF: ClassVar[SpeedOptions]

    @property
    def makes_copy(self) -> bool:
        """Whether the options ask for a private copy at all (for float32 runs)."""
        return bool(
            self.fold_batchnorm or self.channels_last or self.cpu_tuning or self.compile
        )


SpeedOptions.OFF = SpeedOptions(
    fold_batchnorm=False, channels_last=False, cpu_tuning=False, compile=False
)

#: What ``speed=`` accepts: :class:`SpeedOptions`, ``"auto"`` (``SpeedOptions()`` for the
#: path methods; the model as given for the one-point methods, where a copy would not pay
#: for itself) or ``"off"`` (:attr:`SpeedOptions.OFF`).
SpeedSpec = SpeedOptions | Literal["auto", "off"]


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


def check_speed(speed: SpeedSpec, one_point: bool = False) -> SpeedOptions:
    """The :class:`SpeedOptions` that ``speed`` stands for, checked.

    Args:
        speed: :class:`SpeedOptions`, ``"auto"`` or ``"off"``.
        one_point: Whether the method evaluates one point per image, where ``"auto"``
            runs the model as given (a copy would not pay for itself).

    Raises:
        ValueError: Another value, an option of the wrong type, or an autocast dtype
            other than bfloat16 or float16.
    """
    if isinstance(speed, str) and speed in ("auto", "off"):
        if speed == "off" or one_point:
            return SpeedOptions.OFF
        return SpeedOptions()
    if not isinstance(speed, SpeedOptions):
        raise ValueError(
            f"speed must be 'auto', 'off' or a SpeedOptions(...), got {speed!r}."
        )
    for name in ("fold_batchnorm", "cpu_tuning", "compile"):
        if not isinstance(getattr(speed, name), bool):
            raise ValueError(
                f"SpeedOptions.{name} must be True or False, got {getattr(speed, name)!r}."
            )
    if speed.channels_last is not None and not isinstance(speed.channels_last, bool):
        raise ValueError(
            f"SpeedOptions.channels_last must be True, False or None, got "
            f"{speed.channels_last!r}."
        )
    if speed.autocast is not None and speed.autocast not in (torch.bfloat16, torch.float16):
        raise ValueError(
            f"autocast must be torch.bfloat16, torch.float16 or None, got {speed.autocast!r}."
        )
    return speed


@dataclass(frozen=True)
class PreparedModel:
    """The model a call runs, and how it was prepared.

    Attributes:
        module: The user's model itself, or a private prepared copy.
        run: What ran (:class:`ModelRun`, given to every Explanation).
        folded: Names of the convolutions and BatchNorms that were folded (a BatchNorm's
            name now holds an ``nn.Identity``).
        warmed: Input shapes the compiled module has run on (see :func:`warm_up`).
    """

    module: nn.Module
    run: ModelRun
    dtype: torch.dtype
    folded: frozenset[str] = frozenset()
    autocast: torch.dtype | None = None
    warmed: set[tuple[Any, ...]] = field(default_factory=set, compare=False)

    @property
    def channels_last(self) -> bool:
        """Whether the path points are to be given in NHWC."""
        return self.run.channels_last

    @property
    def compiled(self) -> bool:
        """Whether ``module`` is compiled."""
        return self.run.compiled


_Entry = tuple[tuple[Any, ...], PreparedModel]
_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], _Entry]] = (
    weakref.WeakKeyDictionary()
)


def clear_cache() -> None:
    """Drop every cached private copy (they are rebuilt on demand)."""
    _CACHE.clear()


def state_key(model: nn.Module) -> tuple[Any, ...]:
    """What changes when weights are edited in place or replaced, or modules swapped.

    Every parameter's and buffer's storage, version counter, dtype, device and shape, and
    the identity of every module: equal keys mean the same model computing the same way.
    """
    tensors = (*model.parameters(), *model.buffers())
    return (
        tuple((t.data_ptr(), t._version, t.dtype, t.device, t.shape) for t in tensors),
        tuple(id(m) for m in model.modules()),
    )


def _dtype_name(dtype: torch.dtype | None) -> str | None:
    return None if dtype is None else str(dtype).removeprefix("torch.")


def _model_bytes(model: nn.Module, dtype: torch.dtype) -> int:
    itemsize = torch.empty((), dtype=dtype).element_size()
    return sum(t.numel() for t in (*model.parameters(), *model.buffers())) * itemsize


def prepare_model(
    model: nn.Module,
    x: Tensor,
    options: SpeedOptions,
    dtype: torch.dtype | None = None,
    keep: Iterable[str] = (),
    budget_bytes: int | None = None,
) -> PreparedModel:
    """The model to run for ``x``: the user's own, or a cached private prepared copy.

    A float32 copy gets the options' tricks and is checked against the model's own output
    on ``x[:1]``; one that cannot be built, does not fit ``budget_bytes`` or does not
    match is dropped, and the model runs as given (``run.note`` says why). Other dtypes
    get a plain cast copy.

    Args:
        model: The user's model (never changed).
        x: The images (their device decides the defaults; the first checks the copy).
        options: What to prepare (:func:`check_speed`).
        dtype: Run in this dtype (a cast copy when it is not the model's).
        keep: Layer names whose conv/BatchNorm pair must not be folded.
        budget_bytes: The memory a copy may take; ``None``: no limit.

    Raises:
        ValueError: ``autocast`` on a model that is not on a CUDA device.
    """
    own = model_dtype(model)
    run_dtype = own if dtype is None else dtype
    autocast = options.autocast
    if autocast is not None and x.device.type != "cuda":
        raise ValueError(
            f"autocast={autocast} runs on CUDA only, but the model is on "
            f"{x.device.type}; omit autocast (float32 is what a CPU runs fastest here)."
        )
    tricks = run_dtype == own == torch.float32
    fold = tricks and options.fold_batchnorm
    nhwc = tricks and x.dim() == 4 and (
        options.channels_last if options.channels_last is not None
        else x.device.type == "cpu"
    )
    tune = tricks and options.cpu_tuning and x.device.type == "cpu"
    as_given = ModelRun(dtype=str(_dtype_name(own)), autocast=_dtype_name(autocast))
    if not (fold or nhwc or tune or options.compile or run_dtype != own):
        return PreparedModel(model, as_given, own, autocast=autocast)
    size = _model_bytes(model, run_dtype)
    if budget_bytes is not None and size > budget_bytes:
        mb, limit = size / 2**20, budget_bytes / 2**20
        note = f"a private copy ({mb:.0f} MB) does not fit the memory budget ({limit:.0f} MB)"
        if run_dtype != own:
            raise ValueError(
                f"dtype={run_dtype} needs a cast copy of the model, but {note}; raise "
                "memory_budget_mb or cast the model yourself."
            )
        return PreparedModel(model, replace(as_given, note=note), own, autocast=autocast)
    keep = frozenset(keep)
    key = (run_dtype, fold, nhwc, tune, options.compile, keep, x.device)
    state = state_key(model)
    per_model = _CACHE.setdefault(model, {})
    cached = per_model.pop(key, None)
    if cached is not None and cached[0] == state:
        per_model[key] = cached  # most recently used last
        return replace(cached[1], autocast=autocast)
    try:
        prepared = _build_copy(model, x, run_dtype, fold, nhwc, tune, keep)
    except _CopyMismatchError as err:
        return PreparedModel(model, replace(as_given, note=str(err)), own, autocast=autocast)
    if options.compile:
        prepared.module.compile(dynamic=False)
        prepared = replace(prepared, run=replace(prepared.run, compiled=True))
    per_model[key] = (state, prepared)
    while len(per_model) > COPIES_PER_MODEL:
        del per_model[next(iter(per_model))]
    return replace(
        prepared, autocast=autocast, run=replace(prepared.run, autocast=_dtype_name(autocast))
    )


def _first_line(err: BaseException, limit: int) -> str:
    """The first line of ``err``'s message (its type's name when empty), cut to ``limit``."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:limit]


class _CopyMismatchError(Exception):
    """The private copy could not be built, or does not match the model's output."""


def _build_copy(
    model: nn.Module,
    x: Tensor,
    dtype: torch.dtype,
    fold: bool,
    nhwc: bool,
    tune: bool,
    keep: frozenset[str],
) -> PreparedModel:
    """A private copy of ``model`` in ``dtype`` with the tricks asked for, checked."""
    try:
        private = copy.deepcopy(model).to(dtype)
    except Exception as err:  # any module that cannot be copied
        raise _CopyMismatchError(f"the model cannot be copied ({type(err).__name__})") from err
    run = ModelRun(copy=True, dtype=str(_dtype_name(dtype)))
    if not (fold or nhwc or tune):
        return PreparedModel(private, run, dtype)  # a plain cast: nothing to check
    try:
        folded: frozenset[str] = frozenset()
        if fold:
            pairs = [p for p in conv_bn_pairs(private) if not keep & set(p)]
            fold_batchnorm(private, pairs)
            folded = frozenset(name for pair in pairs for name in pair)
        if nhwc:
            private = private.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if tune:
            for module in private.modules():
                if isinstance(module, InferenceCopyHook):
                    module.prepare_inference_copy(x.device)
            activations_in_place(private, folded)
        _check_copy(model, private, x[:1], nhwc)
    except _CopyMismatchError:
        raise
    except Exception as err:  # a copy the tricks break: run the model as given
        raise _CopyMismatchError(
            f"the prepared copy failed to run ({_first_line(err, 160)})"
        ) from err
    run = replace(run, folded=len(folded) // 2, channels_last=nhwc, tuned=tune)
    return PreparedModel(private, run, dtype, folded)


def _output_tensors(output: Any) -> list[Tensor]:
    """Every floating tensor of a model output (a tensor, mapping, sequence or object)."""
    if isinstance(output, Tensor):
        return [output] if output.is_floating_point() else []
    if isinstance(output, Mapping):
        items: Iterable[Any] = output.values()
    elif isinstance(output, (tuple, list)):
        items = output
    elif hasattr(output, "to_tuple"):  # a Hugging Face ModelOutput
        items = output.to_tuple()
    else:
        return []
    return [t for item in items for t in _output_tensors(item)]


def _check_copy(model: nn.Module, private: nn.Module, x: Tensor, nhwc: bool) -> None:
    """Raise :class:`_CopyMismatchError` unless ``private`` gives ``model``'s output on ``x``."""
    with torch.no_grad(), LayerCapture(model):  # eval mode, restored after
        want = _output_tensors(model(x))
    points = x.contiguous(memory_format=torch.channels_last) if nhwc else x
    reached: list[str] = []

    def note(module: nn.Module, args: Any) -> None:
        reached.append(type(module).__name__)

    handles = [m.register_forward_pre_hook(note) for m in model.modules()]
    try:
        with torch.no_grad(), LayerCapture(private):
            got = _output_tensors(private(points))
    finally:
        for handle in handles:
            handle.remove()
    if reached:  # e.g. a wrapper whose forward calls the user's model, not its copy
        raise _CopyMismatchError(
            "the model's forward reaches modules outside the model (a copy would run them)"
        )
    if not want or [t.shape for t in got] != [t.shape for t in want]:
        raise _CopyMismatchError("the prepared copy's output differs in form from the model's")
    scale = max(float(t.abs().max()) if t.numel() else 0.0 for t in want)
    worst = max(
        (float((a.float() - b.float()).abs().max()) if a.numel() else 0.0)
        for a, b in zip(got, want, strict=True)
    )
    if not worst <= COPY_CHECK_TOLERANCE * max(scale, 1.0):
        raise _CopyMismatchError(
            f"the prepared copy's output differs from the model's by {worst:.2g}"
        )


_CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_NORMS = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    """Whether ``bn`` folds into ``conv``.

    ``bn`` must be an eval-statistics BatchNorm of the same dimensionality, after a
    convolution whose output is linear in its weight plus its bias.
    """
    if not isinstance(conv, nn.modules.conv._ConvNd) or isinstance(
        conv, nn.modules.conv._ConvTransposeNd
    ):
        return False
    dims = conv.weight.dim() - 2
    plain = type(conv).forward is _CONVS[dims].forward if dims in _CONVS else False
    return (
        (plain or getattr(conv, "folds_batchnorm", False) is True)
        and isinstance(bn, _NORMS.get(dims, ()))
        and isinstance(bn, nn.modules.batchnorm._BatchNorm)
        and type(bn).forward is _NORMS[dims].forward
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
        if isinstance(m, (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm)):
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
            assert isinstance(conv, nn.modules.conv._ConvNd)
            assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
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
                isinstance(conv, nn.modules.conv._ConvNd)
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
                raise RuntimeError(
                    "compile=True failed: torch.compile could not build the model "
                    f"({_first_line(err, 200)}); "
                    "on a CPU it needs a C++ compiler (gcc or clang) on the PATH, or run "
                    "without compile."
                ) from err
            prepared.warmed.add(key)
    return time.perf_counter() - start if ran else 0.0
