"""The explained score y(x_t) along a straight path, at any points t.

A path method's explanation records where it evaluated the model
(:attr:`~rsigradcam.explanation.Explanation.partition`) but not the score there. The score
along the path shows what the sum integrates: where it saturates (flat near 1 for a
confident softmax), where it changes fast, and where ``steps="auto"`` put its points.
:func:`path_scores` evaluates it with forward passes only (no gradient), on the same path
a path method integrates along: the straight line from the baseline to the input,
``x_t = x' + t (x - x')``.

Example:
    >>> from rsigradcam import RSIGradCAM
    >>> exp = RSIGradCAM(model, "head", steps="auto")(image)          # doctest: +SKIP
    >>> y = path_scores(model, image, exp.partition, exp.targets)     # doctest: +SKIP
    >>> y.shape, float(y[0, -1]) == float(exp.scores[0])              # doctest: +SKIP
    (torch.Size([1, 23]), True)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rsigradcam.baselines import (
    AutoBaseline,
    Normalize,
    SingleSpec,
    check_baseline_spec,
    make_baselines,
)
from rsigradcam.constants import IMAGENET_NORMALIZE
from rsigradcam.core.capture import LayerCapture, class_logits
from rsigradcam.core.checks import check_images
from rsigradcam.core.path import StraightLinePath, check_partition
from rsigradcam.core.targets import (
    Output,
    Rows,
    TargetSpec,
    check_output,
    check_scores,
    check_target_range,
    class_score,
    resolve_targets,
    target_scores,
)

__all__ = ["path_scores"]


def _points(partition: Tensor | Sequence[float], n_images: int) -> Tensor:
    """The t values as an (N, P) CPU float64 tensor, one row per image."""
    t = (
        partition.detach().to("cpu", torch.float64)
        if isinstance(partition, Tensor)
        else torch.as_tensor(partition, dtype=torch.float64)
    )
    if t.dim() == 1:
        return check_partition(t).expand(n_images, -1)
    if t.dim() != 2 or t.shape[0] != n_images or t.shape[1] < 2:
        raise ValueError(
            f"partition must be (P,) for every image or (N, P) with N = {n_images} rows of at "
            f"least 2 values, got shape {tuple(t.shape)}."
        )
    # Rows of an adaptive partition: increasing, padded by repeating t = 1.
    if not bool(((t >= 0) & (t <= 1)).all()) or not bool((t[:, 1:] >= t[:, :-1]).all()):
        raise ValueError("each partition row must be non-decreasing values in [0, 1].")
    return t


def path_scores(
    model: nn.Module,
    images: Tensor,
    partition: Tensor | Sequence[float],
    targets: TargetSpec = None,
    *,
    output: Output = "softmax",
    baseline: SingleSpec = "black",
    normalize: Normalize = IMAGENET_NORMALIZE,
    batch_size: int = 32,
) -> Tensor:
    """The explained score at the points ``x' + t (x - x')`` of each image's path.

    The model is borrowed as by the methods (eval mode during the call, everything
    restored after), and only run forward. With the arguments a path method was given
    (``output``, ``baseline``, ``normalize``) and an explanation's ``partition`` and
    ``targets``, the values at t = 0 and t = 1 are its ``baseline_scores`` and ``scores``.

    Args:
        model: The classifier, ``images (N, C, H, W) -> scores (N, classes)``.
        images: (N, C, H, W) inputs x, preprocessed for the model, on its device.
        partition: The t values: (P,) for every image, or (N, P), one row per image
            (as :attr:`Explanation.partition` with ``steps="auto"`` and several images;
            rows may repeat t = 1 at their end). Values in [0, 1], increasing.
        targets: The class of each image (``exp.targets``), an int, ``None`` for each
            image's top-1 class at the input, or a target that reads the model's raw output
            (a :class:`~rsigradcam.core.targets.Target` or a callable ``fn(output) ->
            scores``).
        output: ``"softmax"`` (the class probability), ``"logits"`` or ``"sigmoid"``.
        baseline: Where the path starts: one baseline as the path methods take it (a
            name, a tensor, a :class:`~rsigradcam.baselines.Baseline` or a callable). For
            ``"auto"``, pass the method's :class:`~rsigradcam.baselines.AutoBaseline`
            object, so that its fit is reused (the name fits a new one).
        normalize: ``(mean, std)`` of the images, for the ``"black"`` baseline; ``None``
            for images in [0, 1].
        batch_size: Path points per forward pass.

    Returns:
        (N, P) scores in the model's dtype, on its device.

    Raises:
        ValueError: Bad images, partition, targets, ``batch_size`` or baseline, or a
            model that gives non-finite scores.

    Example:
        >>> y = path_scores(model, image, torch.linspace(0, 1, 11), 285)  # doctest: +SKIP
        >>> y.shape                                                         # doctest: +SKIP
        torch.Size([1, 11])
    """
    images = check_images(images, model)
    output = check_output(output)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    specs = check_baseline_spec(baseline)
    if len(specs) != 1:
        raise ValueError(
            f"path_scores follows one path: give one baseline, not a list of {len(specs)}."
        )
    spec = specs[0]
    if isinstance(spec, str) and spec == "auto":
        spec = AutoBaseline(model)
    n_images = images.shape[0]
    t = _points(partition, n_images)
    target_values = resolve_targets(targets, n_images, images.device)
    score_fn = targets if callable(targets) and not isinstance(targets, Tensor) else None
    baselines = make_baselines(spec, images, normalize)  # an AutoBaseline fits with gradients
    path = StraightLinePath(images, baselines)
    rows = torch.arange(n_images).repeat_interleave(t.shape[1])
    values = t.reshape(-1)
    scores = images.new_empty(values.numel())
    with torch.no_grad(), LayerCapture(model) as capture:
        if target_values is None and score_fn is None:
            logits, _ = capture.forward(images)
            target_values = logits.argmax(dim=1)
        for start in range(0, values.numel(), batch_size):
            n = rows[start : start + batch_size].to(images.device)
            raw, _ = capture.run(path(n, values[start : start + batch_size]))
            if score_fn is not None:
                y = target_scores(score_fn, raw, Rows(n, tuple(images.shape[2:])))
            else:
                assert target_values is not None
                logits = class_logits(raw)
                check_target_range(target_values, logits.shape[1])
                y = check_scores(class_score(logits, target_values[n], output), n.numel())
            scores[start : start + batch_size] = y
    return scores.view(n_images, -1)
