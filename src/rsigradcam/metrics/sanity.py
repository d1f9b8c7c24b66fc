"""Model-parameter randomisation test (Adebayo et al., NeurIPS 2018).

Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim, "Sanity Checks for Saliency Maps".
The layers' parameters are replaced by random values from the output layer down, and the
map after each stage is compared with the map of the trained model by Spearman rank
correlation. A map that depends on what the model learned falls toward 0; a map that
stays similar behaves like an edge detector, blind to the model.

The user's model is never changed: the test works on a deep copy.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from rsigradcam.core.targets import TargetSpec
from rsigradcam.metrics._common import check_batch_size, check_images, class_targets, predict
from rsigradcam.metrics.correlation import spearman
from rsigradcam.progress import progress_bar
from rsigradcam.serialization import JsonKeys

__all__ = [
    "ORIGINAL",
    "SanityExplainer",
    "SanityResult",
    "parameterised_layers",
    "randomization_sanity",
    "randomize_module",
    "stage_modules",
]

SanityExplainer = Callable[[nn.Module, Tensor, Tensor], Tensor]
"""``explain(model, images, targets) -> maps`` (N, ...), run on the randomised copy."""

ORIGINAL = "original"
"""The name of stage 0: the trained model, explained a second time."""


@dataclass(frozen=True)
class SanityResult:
    """Rank correlations of the maps with the trained model's maps.

    Attributes:
        stages: Stage names: ``"original"`` (the trained model explained again, which
            checks that the explainer is deterministic), then the layer randomised at
            each stage, from the output down.
        correlations: (S, N) float64 Spearman correlation per stage and image.
        targets: (N,) the explained classes (fixed across the stages).
        cascading: Whether the randomisations accumulate (else one layer at a time).
        randomized: Per stage, the parameterised modules whose parameters are random at
            that stage (empty for ``"original"``).
    """

    stages: list[str]
    correlations: Tensor
    targets: Tensor
    cascading: bool
    randomized: list[list[str]] = field(default_factory=list)

    @property
    def mean(self) -> Tensor:
        """(S,) the mean correlation over the images at each stage."""
        return self.correlations.mean(dim=1)

    # The JSON form (rsigradcam.serialization.encode): these keys, in this order.
    __json_keys__: ClassVar[JsonKeys] = (
        "cascading", "stages", "mean", "correlations", "targets", "randomized",
    )


def parameterised_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters directly, from the output down.

    This is the reverse of ``model.named_modules()`` order, which follows the definition
    order (for most models, the order of the forward pass).

    Example:
        >>> parameterised_layers(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)))
        ['2', '0']
    """
    names = [
        name
        for name, module in model.named_modules()
        if next(module.parameters(recurse=False), None) is not None
    ]
    return names[::-1]


def randomize_module(module: nn.Module, generator: torch.Generator) -> None:
    """Redraw the module's own parameters (not its children's) in place.

    Each parameter gets ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, PyTorch's default for
    convolutions and linear layers: fan_in is that of the module's first parameter with two
    or more dimensions, or 1 for modules without one (e.g. normalisation layers: U(-1, 1)).
    Buffers (e.g. BatchNorm's running statistics) are kept. Values are drawn on the CPU,
    so a seed gives the same values on every device.
    """
    params = list(module.parameters(recurse=False))
    fan_in = next((p[0].numel() for p in params if p.dim() >= 2), 1)
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        for p in params:
            values = torch.rand(p.shape, generator=generator, dtype=torch.float64)
            p.copy_((values * 2.0 - 1.0) * bound)


def randomization_sanity(
    model: nn.Module,
    images: Tensor,
    explain: SanityExplainer,
    targets: TargetSpec = None,
    *,
    seed: int = 0,
    cascading: bool = True,
    layers: Sequence[str] | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> SanityResult:
    """The cascading (or independent) model-parameter randomisation test.

    Args:
        model: The trained classifier; it is deep-copied, never changed.
        images: (N, C, H, W) preprocessed images on the model's device.
        explain: ``explain(model, images, targets) -> maps`` (N, ...); it receives the
            randomised copy, e.g. ``lambda m, x, t: RSIGradCAM(m, "head")(x, t).heatmap``.
        targets: Class per image (``None``: each image's top-1 class under the trained
            model); the same classes are explained at every stage.
        seed: Seed of the random parameters.
        cascading: Randomise cumulatively from the output down (default): the stage of
            layer L randomises every module owning parameters from the output down to L,
            those between the listed layers included. ``False`` randomises each layer
            alone (the module and its children), restoring it afterwards.
        layers: Stages, named by module (a leaf such as ``"fc"`` or a container such as
            ``"blocks.10"``, which stands for every parameterised module inside it), from
            the output down. Default: every module owning parameters, from the output down
            (see :func:`parameterised_layers`).
        batch_size: Images per forward pass when finding the top-1 classes.
        progress: Show a progress bar on a terminal.

    Returns:
        A :class:`SanityResult`; stage 0 is 1 for a deterministic explainer.

    Example:
        >>> r = randomization_sanity(model, images, explain, seed=0)  # doctest: +SKIP
        >>> dict(zip(r.stages, r.mean.tolist()))                      # doctest: +SKIP
    """
    images = check_images(images, model)
    batch_size = check_batch_size(batch_size)
    if not callable(explain):
        raise TypeError(
            "explain must be a callable(model, images, targets) -> maps, e.g. "
            "lambda m, x, t: RSIGradCAM(m, 'head')(x, t).heatmap."
        )
    names = parameterised_layers(model) if layers is None else list(layers)
    plan = stage_modules(model, names, cascading)
    found = class_targets(targets, predict(model, images, batch_size))
    generator = torch.Generator().manual_seed(seed)
    work = copy.deepcopy(model)
    n = images.shape[0]
    rows = []
    with progress_bar("sanity", len(names) + 2, progress) as advance:
        reference = _maps(explain, work, images, found, n)
        rows.append(spearman(reference, _maps(explain, work, images, found, n)))
        advance(2)
        for members in plan:
            modules = [work.get_submodule(member) for member in members]
            saved = (
                []
                if cascading
                else [[p.detach().clone() for p in m.parameters(recurse=False)] for m in modules]
            )
            for module in modules:
                randomize_module(module, generator)
            rows.append(spearman(reference, _maps(explain, work, images, found, n)))
            if not cascading:
                with torch.no_grad():
                    for module, values in zip(modules, saved, strict=True):
                        for p, value in zip(module.parameters(recurse=False), values, strict=True):
                            p.copy_(value)
            advance(1)
    return SanityResult(
        stages=[ORIGINAL, *names],
        correlations=torch.stack(rows).cpu(),
        targets=found.cpu(),
        cascading=cascading,
        randomized=[[], *(itertools.accumulate(plan) if cascading else plan)],
    )


def stage_modules(model: nn.Module, layers: Sequence[str], cascading: bool) -> list[list[str]]:
    """The parameterised modules each stage newly randomises, in the order of the draws.

    A stage names a module; it stands for every module owning parameters at or inside it.
    Cascading stages must run from the output down, and each also takes the modules
    between it and the previous stage, so that everything above a stage is random.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2), nn.Linear(2, 1))
        >>> stage_modules(net, ["3", "0"], cascading=True)
        [['3'], ['2', '0']]
        >>> stage_modules(net, ["3", "0"], cascading=False)
        [['3'], ['0']]
    """
    order = parameterised_layers(model)
    owners = dict(model.named_modules())
    unknown = [name for name in layers if name not in owners]
    if unknown:
        raise ValueError(
            f"layers {unknown} are not modules of {type(model).__name__}; use names from "
            "model.named_modules(), e.g. parameterised_layers(model)."
        )
    plan: list[list[str]] = []
    done = 0
    for name in layers:
        inside = [i for i, m in enumerate(order) if name in ("", m) or m.startswith(name + ".")]
        if not inside:
            raise ValueError(
                f"layer {name!r} owns no parameters, so randomising it changes nothing; "
                "name a module from parameterised_layers(model) or a block containing one."
            )
        if not cascading:
            plan.append([order[i] for i in inside])
            continue
        if inside[-1] < done:
            raise ValueError(
                f"cascading stages must run from the output down, but {name!r} comes after "
                "a stage below it; list them in the order of parameterised_layers(model), "
                "or pass cascading=False."
            )
        plan.append(order[done : inside[-1] + 1])
        done = inside[-1] + 1
    return plan


def _maps(
    explain: SanityExplainer, model: nn.Module, images: Tensor, targets: Tensor, n: int
) -> Tensor:
    maps = explain(model, images, targets)
    if not isinstance(maps, Tensor) or maps.dim() < 2 or maps.shape[0] != n:
        got = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"explain must return a tensor of N = {n} maps (N, ...), got {got}.")
    return maps.detach()
