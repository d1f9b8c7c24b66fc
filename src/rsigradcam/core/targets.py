"""Which score y is explained: the softmax probability or the logit of a class, or a callable.

The target specification accepted by a CAM call is one of

- ``None``: each image's top-1 class at the input;
- an ``int``: the same class for every image;
- a sequence or 1-D tensor of ints: one class per image;
- a callable ``fn(outputs) -> scores``: ``outputs`` are the model's raw (B, classes)
  outputs for a chunk of path points, and ``scores`` the (B,) values to explain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, get_args

import torch
from torch import Tensor

__all__ = ["Output", "ScoreFn", "TargetSpec", "check_output", "class_score", "resolve_targets"]

Output = Literal["softmax", "logits"]
ScoreFn = Callable[[Tensor], Tensor]
TargetSpec = int | Sequence[int] | Tensor | ScoreFn | None


def check_output(output: str) -> Output:
    """Validate the ``output`` argument."""
    if output not in get_args(Output):
        raise ValueError(f"output must be 'softmax' or 'logits', got {output!r}.")
    return output  # type: ignore[return-value]


def class_score(outputs: Tensor, targets: Tensor, output: Output) -> Tensor:
    """The score of class ``targets[b]`` in row ``b`` of ``outputs`` (B, classes).

    Example:
        >>> class_score(torch.tensor([[0.0, 0.0]]), torch.tensor([1]), "softmax")
        tensor([0.5000])
    """
    if output == "softmax":
        outputs = torch.softmax(outputs, dim=1)
    return outputs.gather(1, targets.view(-1, 1)).squeeze(1)


def resolve_targets(spec: TargetSpec, n_images: int, device: torch.device) -> Tensor | None:
    """Turn an explicit class specification into an (N,) long tensor.

    Returns ``None`` for ``None`` (top-1, decided at the input) and for callables. The
    range of the classes is checked later, once the number of classes is known.

    Raises:
        ValueError: Wrong length, negative classes, or non-integer values.
        TypeError: An unsupported type.
    """
    if spec is None or (callable(spec) and not isinstance(spec, Tensor)):
        return None
    if isinstance(spec, bool):
        raise TypeError("targets must be None, an int, a sequence of ints or a callable, not bool.")
    if isinstance(spec, int):
        values = torch.full((n_images,), spec, dtype=torch.long)
    else:
        if not isinstance(spec, Tensor):
            try:
                spec = torch.as_tensor(list(spec))
            except (TypeError, ValueError, RuntimeError) as err:
                raise TypeError(
                    "targets must be None, an int, a sequence of ints (one per image) or a "
                    f"callable(outputs) -> scores; got {type(spec).__name__}."
                ) from err
        if spec.dtype.is_floating_point or spec.dtype.is_complex or spec.dtype == torch.bool:
            raise ValueError(f"targets must be integer class indices, got dtype {spec.dtype}.")
        if spec.dim() == 0:
            spec = spec.expand(n_images)
        if spec.dim() != 1 or spec.numel() != n_images:
            raise ValueError(
                f"targets has {spec.numel()} values but there are {n_images} images; give "
                "one class per image, a single int, or None for each image's top-1 class."
            )
        values = spec.to(torch.long)
    if bool((values < 0).any()):
        raise ValueError(f"targets must be non-negative class indices, got {values.tolist()}.")
    return values.to(device)


def check_target_range(targets: Tensor, n_classes: int) -> None:
    """Raise a clear error when a class index is not below ``n_classes``."""
    bad = targets[targets >= n_classes]
    if bad.numel():
        raise ValueError(
            f"target class {int(bad[0])} is out of range: the model has {n_classes} classes "
            f"(valid indices 0..{n_classes - 1})."
        )
