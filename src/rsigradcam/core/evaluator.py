"""Rows of (image, t) -> activations A and gradients G = dy/dA per layer.

:class:`PathEvaluator` is the one place that runs the model on path points: it evaluates
rows in chunks (one forward and one backward pass each), scores each row's target,
keeps what the reduction needs (y(x), y(x'), A(x), A(x')) and yields A and G per layer to
the method's accumulator. :class:`PathResult` is what a method's path pass hands to the
CAM reduction.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rsigradcam.core.capture import LayerCapture, class_logits
from rsigradcam.core.inference import state_key
from rsigradcam.core.path import Path
from rsigradcam.core.targets import Rows, ScoreFn, check_scores, check_target_range, target_scores
from rsigradcam.explanation import ModelRun

__all__ = ["CUTS_PER_MODEL", "PathEvaluator", "PathResult", "reaches_input"]

#: Answers of :meth:`PathEvaluator.find_cuts` kept per model (layers, shapes, scores).
CUTS_PER_MODEL = 8
_CUTS: weakref.WeakKeyDictionary[nn.Module, dict[Hashable, dict[str, bool]]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True)
class PathResult:
    """What a method's path pass produced, per layer, before the CAM reduction."""

    accumulated: dict[str, Tensor]
    partition: Tensor
    n_evaluations: int


class PathEvaluator:
    """Evaluate rows of (image index, t): forward, score, and the gradient at each layer.

    It resolves each image's top-1 target at its input (t = 1; callers evaluate that row
    first), keeps y(x), y(x'), A(x) and A(x') per image, and yields per chunk
    ``(image_index, t, activations, gradients)`` with one (B, K, h, w) tensor per layer.

    Args:
        capture: The borrowed model, its layers attached.
        path: The path the rows' points lie on.
        layers: Layer names, in the capture's order.
        target_values: One class per image, or ``None`` for each image's top-1 class.
        score_fn: A callable target ``fn(output) -> scores`` on the model's raw output (a
            :class:`~rsigradcam.core.targets.Target` is also told each row's image), or
            ``None``.
        class_score_fn: The score of given classes, ``fn(logits, classes) -> scores``.
        chunk: Rows per forward/backward pass.
        record_baseline: Keep y(x') and A(x') from the rows at t = 0.
        channels_last: Give the model its points in the NHWC memory format (activations
            and gradients are handed on in the usual contiguous layout).
        autocast: Run the passes under CUDA autocast in this dtype; activations,
            gradients and scores are handed on in the images' dtype.
        model_run: How the model runs (as given or a prepared copy), for the record.
        rows_per_image: Path images per image (J baselines: path image n is image n // J),
            for the image a :class:`~rsigradcam.core.targets.Target` is told.
        cuts_key: What fixes the graph from the input to the score besides the model and
            its weights (the layers, the input's shape, dtype and device, the score's
            kind, the reshape); with it, :meth:`find_cuts` is answered from a cache
            (weakly keyed on the model, :data:`CUTS_PER_MODEL` answers each) after its
            first call. ``None`` (e.g. a callable target, which may read any output):
            found anew on every call.
    """

    def __init__(
        self,
        capture: LayerCapture,
        path: Path,
        layers: list[str],
        target_values: Tensor | None,
        score_fn: ScoreFn | None,
        class_score_fn: Callable[[Tensor, Tensor], Tensor],
        chunk: int,
        record_baseline: bool,
        *,
        channels_last: bool = False,
        autocast: torch.dtype | None = None,
        model_run: ModelRun | None = None,
        rows_per_image: int = 1,
        cuts_key: Hashable | None = None,
    ) -> None:
        x = path.images
        self.cuts_key = cuts_key
        self.model_run = model_run if model_run is not None else ModelRun()
        self.capture, self.path, self.layers, self.chunk = capture, path, layers, chunk
        self.n_images = x.shape[0]
        self.target_values = target_values
        self.score_fn = score_fn
        self.class_score_fn = class_score_fn
        self.record_baseline = record_baseline
        self.rows_per_image = rows_per_image
        self.channels_last, self.autocast = channels_last, autocast
        nan = torch.full((self.n_images,), float("nan"), dtype=x.dtype, device=x.device)
        self.scores, self.baseline_scores = nan.clone(), nan.clone()
        self.explained = (
            target_values.clone()
            if target_values is not None
            else torch.full((self.n_images,), -1, dtype=torch.long, device=x.device)
        )
        self.activation: dict[str, Tensor] = {}
        self.baseline_activation: dict[str, Tensor] = {}
        self._checked = False
        self._cuts: dict[str, bool] | None = None

    def __call__(
        self, image_index: Tensor, t: Tensor
    ) -> Iterator[tuple[Tensor, Tensor, dict[str, Tensor], dict[str, Tensor], Tensor]]:
        """Evaluate the rows in order, ``chunk`` rows per forward/backward pass.

        Yields ``(rows, t, activations, gradients, scores)`` per chunk: the activations and
        gradients by layer, and the explained score y(x_t) of each row.
        """
        x = self.path.images
        image_index = image_index.to(x.device)
        t = t.to(device=x.device, dtype=torch.float64)
        for start in range(0, image_index.numel(), self.chunk):
            n = image_index[start : start + self.chunk]
            tc = t[start : start + self.chunk]
            output, acts = self._forward(self.path(n, tc.to(x.dtype)))
            at_input = tc == 1.0
            at_base = (tc == 0.0) & self.record_baseline
            y = self._score(output, n, at_input)
            grads = torch.autograd.grad(y.sum(), list(acts.values()), allow_unused=True)
            detached, gradients = {}, {}
            for (name, raw), grad in zip(acts.items(), grads, strict=True):
                act = self._plain(self.capture.view(name, raw.detach()))
                detached[name] = act
                gradients[name] = (
                    torch.zeros_like(act)
                    if grad is None
                    else self._plain(self.capture.view(name, grad))
                )
                self._keep(self.activation, name, act, n, at_input)
                if self.record_baseline:
                    self._keep(self.baseline_activation, name, act, n, at_base)
            y = y.detach()
            self.scores[n[at_input]] = y[at_input]
            self.baseline_scores[n[at_base]] = y[at_base]
            yield n, tc, detached, gradients, y

    def _forward(self, points: Tensor) -> tuple[Any, dict[str, Tensor]]:
        """The capture's run on ``points``, in the memory format and autocast asked for."""
        if self.channels_last and points.dim() == 4:
            points = points.contiguous(memory_format=torch.channels_last)
        if self.autocast is None:
            return self.capture.run(points)
        with torch.autocast(points.device.type, dtype=self.autocast):
            return self.capture.run(points)

    def _score(self, output: Any, n: Tensor, at_input: Tensor) -> Tensor:
        """The score of each row (path image ``n``) from the raw ``output``, in the images' dtype.

        A class target's top-1 class is recorded at the rows at the input (``at_input``).
        """
        dtype = self.path.images.dtype
        if self.score_fn is not None:
            rows = Rows(n // self.rows_per_image, tuple(self.path.images.shape[2:]))
            return target_scores(self.score_fn, output, rows).to(dtype)
        logits = class_logits(output).to(dtype)
        if self.target_values is not None:
            if not self._checked:
                check_target_range(self.target_values, logits.shape[1])
                self._checked = True
        else:
            self.explained[n[at_input]] = logits[at_input].detach().argmax(dim=1)
        return check_scores(self.class_score_fn(logits, self.explained[n]), n.numel())

    def _plain(self, tensor: Tensor) -> Tensor:
        """A contiguous tensor in the images' dtype, as the accumulators expect it."""
        return tensor.to(dtype=self.path.images.dtype, memory_format=torch.contiguous_format)

    def warm_up(self, points: Tensor) -> None:
        """One forward and backward pass on ``points``, results discarded (compiling)."""
        output, acts = self._forward(points)
        n = torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
        y = self._score(output, n, torch.ones_like(n, dtype=torch.bool))
        torch.autograd.grad(y.sum(), list(acts.values()), allow_unused=True)

    def find_cuts(self) -> dict[str, bool]:
        """Whether each layer cuts the graph from the input to the score, by layer.

        A layer cuts it when every path from the input to the score passes through it, so
        that completeness holds there; a layer that a residual stream or a skip connection
        bypasses does not. Found once per call (the answer is kept, and with ``cuts_key``
        reused by later calls on the same model and weights): one extra forward pass
        at the first image's input (t = 1; its row must have been evaluated, so that its
        class is known) with the input requiring grad, then per layer a walk of the autograd
        graph from the score that may not cross the layer's output
        (:func:`reaches_input`). No backward pass runs, and the test is exact for the graph:
        it does not depend on a gradient being numerically zero. A layer whose
        ``reshape_transform`` drops part of its output (a ViT's class token) does not cut
        it either: the score reaches the input through the dropped tokens. A model that
        cannot run so counts as not cut.
        """
        if self._cuts is not None:
            return dict(self._cuts)
        model = self.capture.model
        key = None if self.cuts_key is None else (self.cuts_key, state_key(model))
        known = _CUTS.get(model, {}).get(key) if key is not None else None
        if known is not None:
            self._cuts = dict(known)
            return dict(known)
        x = self.path.images
        n = torch.zeros(1, dtype=torch.long, device=x.device)
        t = torch.ones(1, dtype=x.dtype, device=x.device)
        leaf = self.path(n, t).detach().requires_grad_(True)
        try:
            output, acts = self.capture.run(leaf.clone(), grad_from_layer=False)
            y = self._score(output, n, torch.zeros_like(n, dtype=torch.bool))
            cuts = {
                name: not reaches_input(y, leaf, act) and not self._drops(name, act)
                for name, act in acts.items()
            }
        except RuntimeError:
            cuts = {name: False for name in self.layers}
        self._cuts = cuts
        if key is not None:
            per_model = _CUTS.setdefault(model, {})
            per_model[key] = dict(cuts)
            while len(per_model) > CUTS_PER_MODEL:
                del per_model[next(iter(per_model))]
        return dict(cuts)

    def _drops(self, name: str, act: Tensor) -> bool:
        """Whether the layer's map leaves out part of its output (tokens a reshape drops)."""
        return self.capture.view(name, act.detach()).numel() < act.numel()

    def _keep(
        self, store: dict[str, Tensor], name: str, act: Tensor, n: Tensor, mask: Tensor
    ) -> None:
        if name not in store:
            store[name] = act.new_zeros((self.n_images, *act.shape[1:]))
        store[name][n[mask]] = act[mask]


def reaches_input(score: Tensor, leaf: Tensor, layer_output: Tensor) -> bool:
    """Whether ``score`` reaches ``leaf`` by a path of the graph that avoids ``layer_output``.

    Such a path is a residual stream or a skip connection past the layer. The walk starts
    at ``score``'s node and goes towards the leaves without crossing the edge that produced
    ``layer_output`` (its node and output index, so that a node's other outputs stay
    open). ``True`` when ``leaf``'s gradient accumulator is reached: then ``score`` does
    not depend on ``leaf`` only through the layer, and the integrated gradients at the
    layer need not sum to ``y(x) - y(x')``. A ``layer_output`` that does not depend on
    ``leaf`` blocks nothing.

    Example:
        >>> x = torch.ones(2, requires_grad=True)
        >>> h = x * 2
        >>> reaches_input((h + x).sum(), x, h), reaches_input((h * 3).sum(), x, h)
        (True, False)
    """
    start = score.grad_fn
    if start is None:
        return False
    blocked = (layer_output.grad_fn, layer_output.output_nr)
    seen: dict[int, Any] = {}  # the nodes themselves: their ids stay theirs
    stack: list[Any] = [start]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        if getattr(node, "variable", None) is leaf:
            return True
        for child, index in node.next_functions:
            if child is None or (child is blocked[0] and index == blocked[1]):
                continue
            stack.append(child)
    return False
