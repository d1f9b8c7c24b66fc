"""A slow, obviously correct RSI-Grad-CAM, written the way the authors' PyTorch code works.

One image and one path point at a time, a full backward pass to the input through a
copy of the model whose parameters require grad, the layer's activation and gradient
taken with a forward hook and a tensor hook. Then the Riemann-Stieltjes sum is a plain
Python loop over the intervals. Inputs are single points (C, *S) with 1, 2 or 3 spatial
dimensions (signals, images, volumes or video); maps are upsampled linearly, bilinearly or
trilinearly to S.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: ``F.interpolate``'s mode by the number of spatial dimensions.
MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def upsample_and_normalise(layer_map: Tensor, size: tuple[int, ...]) -> Tensor:
    """A (*s) map upsampled to ``size`` (no corner alignment), min-max normalised."""
    mode = MODES[len(size)]
    up = F.interpolate(layer_map[None, None], size=size, mode=mode, align_corners=False)[0, 0]
    span = up.max() - up.min()
    return (up - up.min()) / span if span > 0 else torch.zeros_like(up)


def activations_and_gradients(
    model: nn.Module,
    layer_name: str,
    points: list[Tensor],
    target: int,
    output: str,
    reshape: Callable[[Tensor], Tensor] | None = None,
    score: Callable[[Any], Tensor] | None = None,
) -> tuple[list[Tensor], list[Tensor], list[float]]:
    """A(x_i), dy/dA(x_i) and y(x_i) for each single point x_i (C, *S).

    ``reshape`` turns a token layer's (1, T, D) output and gradient into (1, D, h, w).
    ``score`` maps the model's raw output on one point to y (one value); without it y is
    the class ``target``'s ``output`` ("softmax", "logits" or "sigmoid").
    """
    view = reshape if reshape is not None else (lambda t: t)
    model = copy.deepcopy(model).eval()
    for p in model.parameters():
        p.requires_grad_(True)
    layer = model.get_submodule(layer_name)
    store: dict[str, Tensor] = {}

    def save_grad(grad: Tensor) -> None:
        store["grad"] = grad.detach().clone()

    def forward_hook(module: nn.Module, args: object, out: Tensor) -> None:
        store["act"] = out.detach().clone()
        out.register_hook(save_grad)

    handle = layer.register_forward_hook(forward_hook)
    acts, grads, scores = [], [], []
    try:
        for point in points:
            x = point.unsqueeze(0).clone().requires_grad_(True)
            out = model(x)
            if score is not None:
                y = score(out).reshape(())
            else:
                if output == "softmax":
                    out = F.softmax(out, dim=1)
                y = out[0, target]
                if output == "sigmoid":
                    y = torch.sigmoid(y)
            model.zero_grad()
            y.backward()
            acts.append(view(store["act"])[0])
            grads.append(view(store["grad"])[0])
            scores.append(float(y.item()))
    finally:
        handle.remove()
    return acts, grads, scores


def reference_rsi(
    model: nn.Module,
    layer_name: str,
    image: Tensor,
    baseline: Tensor,
    steps: int,
    rule: str = "trapezoid",
    output: str = "softmax",
    grad_relu: bool = False,
    guided: bool = False,
    target: int | None = None,
    partition: list[float] | None = None,
    points: list[Tensor] | None = None,
    reshape: Callable[[Tensor], Tensor] | None = None,
    score: Callable[[Any], Tensor] | None = None,
) -> dict[str, Tensor | float | int]:
    """RSI-Grad-CAM of one input (C, *S) against one baseline (C, *S).

    ``points`` replaces the straight-line path by explicit path points (the first is the
    baseline, the last the point explained). ``score`` explains any scalar of the model's
    raw output on one point instead of a class (``target`` is then -1).
    """
    if points is None:
        ts = partition if partition is not None else [i / steps for i in range(steps + 1)]
        points = [baseline + t * (image - baseline) for t in ts]
    if score is not None:
        target = -1
    elif target is None:
        with torch.no_grad():
            target = int(model.eval()(points[-1].unsqueeze(0)).argmax(dim=1).item())
    acts, grads, scores = activations_and_gradients(
        model, layer_name, points, target, output, reshape, score
    )
    if grad_relu:
        grads = [torch.relu(g) for g in grads]
    integrated = torch.zeros_like(acts[0])
    for i in range(1, len(points)):
        d_act = acts[i] - acts[i - 1]
        if rule == "trapezoid":
            g = (grads[i - 1] + grads[i]) / 2
        elif rule == "left":
            g = grads[i - 1]
        else:
            g = grads[i]
        integrated = integrated + g * d_act
    if guided:
        keep = (acts[-1] > 0) & (integrated > 0) & (acts[-1] - acts[0] > 0)
        integrated = integrated * keep
    weights = integrated.mean(dim=tuple(range(1, integrated.dim())))
    cam = torch.relu((weights.view(-1, *[1] * (acts[-1].dim() - 1)) * acts[-1]).sum(dim=0))
    heatmap = upsample_and_normalise(cam, tuple(points[-1].shape[1:]))
    return {
        "attributions": integrated,
        "weights": weights,
        "layer_map": cam,
        "heatmap": heatmap,
        "target": target,
        "score": scores[-1],
        "baseline_score": scores[0],
    }


def correlation(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two tensors' values (1.0 for two equal constants)."""
    a, b = a.flatten().double(), b.flatten().double()
    if bool((a.std() == 0) | (b.std() == 0)):
        return 1.0 if torch.allclose(a, b) else 0.0
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def compare_with_reference(
    explanation: Any,
    model: nn.Module,
    layer_name: str,
    images: Tensor,
    baselines: Tensor,
    steps: int,
    score: Callable[[int], Callable[[Any], Tensor]] | None = None,
    output: str = "softmax",
    reshape: Callable[[Tensor], Tensor] | None = None,
) -> float:
    """The least correlation, over images, of an explanation's maps with the reference's.

    The reference runs in float64 on a copy of ``model``; ``score(n)`` is image n's score
    function of the model's raw output on one point (else its class as ``output`` says).
    Heatmaps and attributions are compared; the scores at the input and the baseline too.
    """
    model = copy.deepcopy(model).double()
    images, baselines = images.double(), baselines.double()
    least = 1.0
    for n in range(images.shape[0]):
        ref = reference_rsi(
            model, layer_name, images[n], baselines[n], steps, output=output,
            target=None if score is not None else int(explanation.targets[n]),
            reshape=reshape, score=score(n) if score is not None else None,
        )  # fmt: skip
        assert float(explanation.scores[n]) == pytest.approx(ref["score"], rel=1e-6, abs=1e-9)
        assert float(explanation.baseline_scores[n]) == pytest.approx(
            ref["baseline_score"], rel=1e-6, abs=1e-9
        )
        for mine, theirs in (
            (explanation.heatmap[n], ref["heatmap"]),
            (explanation.attributions[n], ref["attributions"]),
        ):
            assert isinstance(theirs, Tensor)
            least = min(least, correlation(mine, theirs))
    return least
