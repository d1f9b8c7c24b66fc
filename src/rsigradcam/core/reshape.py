"""Token layers as feature maps: ``reshape_transform=`` for vision transformers.

A transformer block outputs (N, T, D) tokens: maybe a class token and register tokens,
then one token per image patch in row-major order. A CAM needs (N, K, h, w). A *reshape
transform* drops the leading non-patch tokens and lays the patch tokens out on their
grid, channels first.

The transform is applied to the captured activations and, identically, to their
gradients, so it must only select and rearrange elements (slicing, reshape, permute),
never mix them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from torch import Tensor, nn

from rsigradcam.core.capture import ModuleOutput

__all__ = ["ReshapeFn", "ReshapeSpec", "TokenGrid", "resolve_reshape", "token_layer_example"]

ReshapeFn = Callable[[Tensor], Tensor]
#: What ``reshape_transform=`` accepts: ``None``, ``"tokens"`` (a :class:`TokenGrid` that
#: infers everything) or a callable ``(N, T, D) -> (N, D, h, w)``.
ReshapeSpec = str | ReshapeFn | None

_MAX_PREFIX = 16


class TokenGrid:
    """Drop the class and register tokens and arrange the patch tokens on their grid.

    Args:
        prefix_tokens: Number of leading non-patch tokens (class token plus registers);
            ``None`` infers the smallest count that leaves a square number of patches.
        grid: ``(h, w)`` of the patch grid; ``None`` requires a square grid.

    Example:
        >>> TokenGrid()(torch.zeros(2, 197, 64)).shape   # class token + 14 x 14 patches
        torch.Size([2, 64, 14, 14])
    """

    def __init__(self, prefix_tokens: int | None = None, grid: tuple[int, int] | None = None):
        if prefix_tokens is not None and (not isinstance(prefix_tokens, int) or prefix_tokens < 0):
            raise ValueError(f"prefix_tokens must be a non-negative int, got {prefix_tokens!r}.")
        if grid is not None and (len(grid) != 2 or min(grid) < 1):
            raise ValueError(f"grid must be (h, w) with positive sizes, got {grid!r}.")
        self.prefix_tokens = prefix_tokens
        self.grid = grid

    def layout(self, n_tokens: int) -> tuple[int, int, int]:
        """``(prefix, h, w)`` for a layer with ``n_tokens`` tokens.

        Raises:
            ValueError: No layout fits (the message says what to pass).
        """
        if self.grid is not None:
            h, w = self.grid
            prefix = n_tokens - h * w if self.prefix_tokens is None else self.prefix_tokens
            if prefix < 0 or prefix + h * w != n_tokens:
                raise ValueError(
                    f"{n_tokens} tokens do not fit grid {self.grid} with "
                    f"{self.prefix_tokens} prefix token(s)."
                )
            return prefix, h, w
        candidates = (
            [self.prefix_tokens]
            if self.prefix_tokens is not None
            else range(min(_MAX_PREFIX, n_tokens - 1) + 1)
        )
        for prefix in candidates:
            side = math.isqrt(n_tokens - prefix)
            if side >= 2 and side * side == n_tokens - prefix:
                return prefix, side, side
        raise ValueError(
            f"cannot lay out {n_tokens} tokens on a square grid; pass "
            "reshape_transform=TokenGrid(prefix_tokens=..., grid=(h, w))."
        )

    def __call__(self, tokens: Tensor) -> Tensor:
        """(N, T, D) tokens -> (N, D, h, w) patch map."""
        if tokens.dim() != 3:
            raise ValueError(
                f"TokenGrid expects (N, tokens, D) outputs, got shape {tuple(tokens.shape)}."
            )
        prefix, h, w = self.layout(tokens.shape[1])
        n, _, d = tokens.shape
        return tokens[:, prefix:].reshape(n, h, w, d).permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return f"TokenGrid(prefix_tokens={self.prefix_tokens}, grid={self.grid})"


def resolve_reshape(spec: ReshapeSpec) -> ReshapeFn | None:
    """Turn ``reshape_transform=`` into a callable (or ``None``).

    Raises:
        ValueError: An unknown string.
        TypeError: Neither ``None``, a string nor a callable.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec == "tokens":
            return TokenGrid()
        raise ValueError(
            f"reshape_transform {spec!r} is unknown; use 'tokens' (drop class/register "
            "tokens, square grid), TokenGrid(...), or a callable (N, T, D) -> (N, D, h, w)."
        )
    if callable(spec):
        return spec
    raise TypeError(
        f"reshape_transform must be None, 'tokens' or a callable, not {type(spec).__name__}."
    )


def token_layer_example(model: nn.Module, records: Sequence[ModuleOutput]) -> str | None:
    """The model's own name for the usual ViT layer: the last block's first norm.

    A block is the parent of two or more ``LayerNorm`` modules with (N, T, D) outputs
    (timm's ``blocks.11.norm1`` / ``norm2``, Hugging Face's ``layernorm_before`` /
    ``layernorm_after``); its first norm to run is the example. ``None`` when the model
    has no such block.

    Args:
        model: The model the records come from.
        records: Its modules' outputs, in completion order
            (:meth:`~rsigradcam.core.capture.LayerCapture.probe`).

    Example:
        >>> token_layer_example(vit, capture.probe(x))  # doctest: +SKIP
        'vit.encoder.layer.11.layernorm_before'
    """
    blocks: dict[str, list[str]] = {}
    for record in records:
        if record.shape is None or len(record.shape) != 3:
            continue
        try:
            module = model.get_submodule(record.name)
        except AttributeError:
            continue
        if isinstance(module, nn.LayerNorm):
            parent = record.name.rpartition(".")[0]
            blocks.setdefault(parent, []).append(record.name)
    for block, norms in reversed(blocks.items()):
        if block and len(norms) >= 2:
            return norms[0]
    return None
