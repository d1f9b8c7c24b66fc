"""Riemann–Stieltjes sums of gradients against activations, accumulated chunk by chunk.

For one image and a partition ``0 = t_0 < ... < t_m = 1`` with ``A_i = A(x_{t_i})`` and
``G_i = dy/dA (x_{t_i})``::

    trapezoid:  sum_i 1/2 (G_{i-1} + G_i) * (A_i - A_{i-1})
    left:       sum_i G_{i-1} * (A_i - A_{i-1})
    right:      sum_i G_i * (A_i - A_{i-1})

The accumulator sees the path points as a stream of chunks and carries only the last
point of the previous chunk, so its memory is O(chunk), not O(m).
:class:`GradientAtInput` is the accumulator of a one-point path (the Grad-CAM family).
"""

from __future__ import annotations

from typing import Literal, Protocol, get_args

import torch
from torch import Tensor

__all__ = [
    "RULES",
    "GradientAtInput",
    "PathAccumulator",
    "RiemannStieltjesSum",
    "Rule",
    "check_rule",
]

Rule = Literal["trapezoid", "left", "right"]
RULES: tuple[str, ...] = get_args(Rule)


def check_rule(rule: str) -> Rule:
    """Validate an integration rule name."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(map(repr, RULES))}, got {rule!r}.")
    return rule  # type: ignore[return-value]


class PathAccumulator(Protocol):
    """Receives the activations and gradients of path points, chunk by chunk."""

    def update(self, image_index: Tensor, activations: Tensor, gradients: Tensor) -> None:
        """Take one chunk of rows (in the order of :func:`rsigradcam.core.path.path_rows`)."""

    def result(self) -> Tensor:
        """The accumulated (N, K, h, w) tensor."""


class RiemannStieltjesSum:
    """Accumulate the Riemann–Stieltjes sum of gradients against activations.

    Rows must arrive image by image and, within an image, as consecutive path points
    (either direction of t; :func:`~rsigradcam.core.path.path_rows` visits t from 1 to 0).

    Args:
        n_images: N, the number of images (paths).
        rule: ``"trapezoid"``, ``"left"`` or ``"right"``.
        grad_relu: Apply ReLU to the gradients before integrating.
        descending: Whether t decreases from one row to the next (the default order).

    Example:
        >>> acc = RiemannStieltjesSum(n_images=1, rule="trapezoid")
        >>> A = torch.tensor([2.0, 1.0, 0.0]).view(3, 1, 1, 1)   # t = 1, 0.5, 0
        >>> G = torch.tensor([1.0, 1.0, 1.0]).view(3, 1, 1, 1)
        >>> acc.update(torch.zeros(3, dtype=torch.long), A, G)
        >>> acc.result().item()
        2.0
    """

    def __init__(
        self, n_images: int, rule: Rule, grad_relu: bool = False, descending: bool = True
    ) -> None:
        self.n_images = n_images
        self.rule = check_rule(rule)
        self.grad_relu = grad_relu
        self.descending = descending
        self._total: Tensor | None = None
        self._carry: tuple[Tensor, Tensor, Tensor] | None = None

    def update(self, image_index: Tensor, activations: Tensor, gradients: Tensor) -> None:
        """Add the intervals between consecutive rows of the same image."""
        if self.grad_relu:
            gradients = torch.relu(gradients)
        if self._total is None:
            self._total = activations.new_zeros((self.n_images, *activations.shape[1:]))
        if self._carry is not None and bool(self._carry[0][0] == image_index[0]):
            image_index = torch.cat([self._carry[0], image_index])
            activations = torch.cat([self._carry[1], activations])
            gradients = torch.cat([self._carry[2], gradients])
        self._carry = (image_index[-1:], activations[-1:], gradients[-1:])
        same = image_index[1:] == image_index[:-1]
        if not bool(same.any()):
            return
        first, rest = slice(None, -1), slice(1, None)
        hi, lo = (first, rest) if self.descending else (rest, first)
        a_hi, a_lo, g_hi, g_lo = activations[hi], activations[lo], gradients[hi], gradients[lo]
        if self.rule == "trapezoid":
            g = 0.5 * (g_lo + g_hi)
        elif self.rule == "left":
            g = g_lo
        else:
            g = g_hi
        terms = g * (a_hi - a_lo)
        self._total.index_add_(0, image_index[1:][same], terms[same])

    def result(self) -> Tensor:
        """The (N, K, *s) integrated gradients."""
        if self._total is None:
            raise RuntimeError("no path points were accumulated.")
        return self._total


class GradientAtInput:
    """Keep each image's gradient at t = 1, the only point a one-point method evaluates.

    Args:
        n_images: N, the number of images.
    """

    def __init__(self, n_images: int) -> None:
        self.n_images = n_images
        self._grad: Tensor | None = None

    def update(self, image_index: Tensor, activations: Tensor, gradients: Tensor) -> None:
        """Store the gradient of every row (each row is one image's input)."""
        if self._grad is None:
            self._grad = gradients.new_zeros((self.n_images, *gradients.shape[1:]))
        self._grad[image_index] = gradients

    def result(self) -> Tensor:
        """The (N, K, *s) gradients dy/dA at the inputs."""
        if self._grad is None:
            raise RuntimeError("no gradients were captured.")
        return self._grad
