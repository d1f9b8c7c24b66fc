"""Slow, obviously correct Grad-CAM, Grad-CAM++, LayerCAM, Integrated Grad-CAM and
Integrated Gradients.

One image at a time, one point at a time, a full backward pass through a copy of the
model (activations and gradients from hooks, see ``loop.py``), and the formulas of the
papers written as plain loops over channels and path points.
"""

from __future__ import annotations

import copy
import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tests.reference.loop import activations_and_gradients, upsample_and_normalise


def top1(model: nn.Module, image: Tensor) -> int:
    with torch.no_grad():
        return int(copy.deepcopy(model).eval()(image.unsqueeze(0)).argmax(dim=1).item())


def reference_gradcam(
    model: nn.Module, layer: str, image: Tensor, output: str = "logits", target: int | None = None
) -> dict[str, Tensor | float | int]:
    """Grad-CAM of one input (C, *S): each channel weighted by its mean gradient at the input."""
    target = top1(model, image) if target is None else target
    (act,), (grad,), (score,) = activations_and_gradients(model, layer, [image], target, output)
    weights = torch.stack([grad[k].mean() for k in range(act.shape[0])])
    cam = torch.relu(sum(weights[k] * act[k] for k in range(act.shape[0])))
    assert isinstance(cam, Tensor)
    return {
        "target": target,
        "weights": weights,
        "layer_map": cam,
        "heatmap": upsample_and_normalise(cam, tuple(image.shape[1:])),
        "score": score,
    }


def reference_gradcampp(
    model: nn.Module, layer: str, image: Tensor, output: str = "logits", target: int | None = None
) -> dict[str, Tensor | float | int]:
    """Grad-CAM++ of one input (C, *S): alpha from powers of the gradient at the input."""
    target = top1(model, image) if target is None else target
    (act,), (grad,), (score,) = activations_and_gradients(model, layer, [image], target, output)
    weights = torch.zeros(act.shape[0], dtype=act.dtype)
    alphas = torch.zeros_like(act)
    for k in range(act.shape[0]):
        g, total = grad[k], act[k].sum()
        for at in itertools.product(*(range(s) for s in g.shape)):  # every position
            denominator = 2 * g[at] ** 2 + total * g[at] ** 3
            if denominator != 0:
                alphas[(k, *at)] = g[at] ** 2 / denominator
        weights[k] = (alphas[k] * torch.relu(g)).sum()
    cam = torch.relu(sum(weights[k] * act[k] for k in range(act.shape[0])))
    assert isinstance(cam, Tensor)
    return {
        "target": target,
        "weights": weights,
        "layer_map": cam,
        "heatmap": upsample_and_normalise(cam, tuple(image.shape[1:])),
        "score": score,
    }


def reference_layercam(
    model: nn.Module, layer: str, image: Tensor, output: str = "logits", target: int | None = None
) -> dict[str, Tensor | float | int]:
    """LayerCAM of one image: every position weighted by its own positive gradient."""
    target = top1(model, image) if target is None else target
    (act,), (grad,), (score,) = activations_and_gradients(model, layer, [image], target, output)
    total = torch.zeros_like(act[0])
    for k in range(act.shape[0]):
        total = total + torch.relu(grad[k]) * act[k]
    cam = torch.relu(total)
    return {
        "target": target,
        "layer_map": cam,
        "heatmap": upsample_and_normalise(cam, tuple(image.shape[1:])),
        "score": score,
    }


def reference_integrated_gradcam(
    model: nn.Module,
    layer: str,
    image: Tensor,
    baseline: Tensor,
    steps: int,
    output: str = "logits",
    target: int | None = None,
    partition: list[float] | None = None,
) -> dict[str, Tensor | float | int]:
    """Integrated Grad-CAM: sum_i (t_i - t_(i-1)) Grad-CAM(x_{t_i}) against A(x')."""
    target = top1(model, image) if target is None else target
    ts = partition if partition is not None else [i / steps for i in range(steps + 1)]
    points = [baseline + t * (image - baseline) for t in ts]
    acts, grads, scores = activations_and_gradients(model, layer, points, target, output)
    cam = torch.zeros_like(acts[0][0])
    for i in range(1, len(ts)):
        point_map = torch.zeros_like(cam)
        for k in range(acts[i].shape[0]):
            point_map = point_map + grads[i][k].mean() * (acts[i][k] - acts[0][k])
        cam = cam + (ts[i] - ts[i - 1]) * torch.relu(point_map)
    return {
        "target": target,
        "layer_map": cam,
        "heatmap": upsample_and_normalise(cam, tuple(image.shape[1:])),
        "score": scores[-1],
        "baseline_score": scores[0],
    }


def input_gradients(
    model: nn.Module, points: list[Tensor], target: int, output: str
) -> tuple[list[Tensor], list[float]]:
    """dy/dx and y at each single point x (C, *S), by a full backward pass."""
    model = copy.deepcopy(model).eval()
    grads, scores = [], []
    for point in points:
        x = point.unsqueeze(0).clone().requires_grad_(True)
        out = model(x)
        if output == "softmax":
            out = F.softmax(out, dim=1)
        y = out[0, target]
        y.backward()
        assert x.grad is not None
        grads.append(x.grad[0].detach().clone())
        scores.append(float(y.item()))
    return grads, scores


def reference_integrated_gradients(
    model: nn.Module,
    image: Tensor,
    baseline: Tensor,
    steps: int,
    rule: str = "trapezoid",
    output: str = "softmax",
    target: int | None = None,
) -> dict[str, Tensor | float | int]:
    """Integrated Gradients of one image: a Riemann sum of input gradients on the path."""
    target = top1(model, image) if target is None else target
    ts = [i / steps for i in range(steps + 1)]
    points = [baseline + t * (image - baseline) for t in ts]
    grads, scores = input_gradients(model, points, target, output)
    integrated = torch.zeros_like(image)
    for i in range(1, len(ts)):
        if rule == "trapezoid":
            g = (grads[i - 1] + grads[i]) / 2
        elif rule == "left":
            g = grads[i - 1]
        else:
            g = grads[i]
        integrated = integrated + g * (points[i] - points[i - 1])
    pixel_map = torch.relu(integrated.sum(dim=0))
    return {
        "target": target,
        "attributions": integrated,
        "layer_map": pixel_map,
        "heatmap": upsample_and_normalise(pixel_map, tuple(image.shape[1:])),
        "score": scores[-1],
        "baseline_score": scores[0],
    }
