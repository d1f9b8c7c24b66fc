"""RSI-Grad-CAM with pytorch-grad-cam's call shape: switch with one import.

pytorch-grad-cam (github ``jacobgil/pytorch-grad-cam``) explains with::

    with GradCAM(model=model, target_layers=[model.layer4[-1]]) as cam:
        grayscale = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)])

Here the same lines give RSI-Grad-CAM maps::

    from rsigradcam.integrations.pytorch_grad_cam import RSIGradCAM, ClassifierOutputTarget

    with RSIGradCAM(model=model, target_layers=[model.layer4[-1]], steps=50) as cam:
        grayscale = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)])

``grayscale`` is an (N, H, W) float32 NumPy array in [0, 1] at the input's size, as
pytorch-grad-cam returns. This module does not import ``pytorch_grad_cam``; its target
objects work here when it is installed.

**Targets.** One per image, or ``None`` for each image's top-1 class.

- :class:`ClassifierOutputTarget` (``c``), ours or pytorch-grad-cam's: class ``c``, scored
  with the CAM's ``output=`` setting: the softmax probability by default, as in the
  RSI-Grad-CAM paper, or the raw logit ``output[c]`` with ``output="logits"``, which is
  exactly what pytorch-grad-cam's ``ClassifierOutputTarget`` explains.
- :class:`ClassifierOutputSoftmaxTarget` (``c``), ours or theirs: the softmax probability of
  class ``c``, whatever ``output=`` says.
- A plain int ``c``: as ``ClassifierOutputTarget(c)``.
- :class:`SemanticSegmentationTarget` (``c, mask``), ours or pytorch-grad-cam's: class
  ``c``'s raw score summed over the boolean ``mask`` of a segmentation model's (N, K, H, W)
  output (or a Hugging Face ``logits``), the mask at the output's size or the input's
  (resized).
- :class:`FasterRCNNBoxScoreTarget` (``labels, bounding_boxes, iou_threshold=0.5``), ours
  or pytorch-grad-cam's: for each box, the detection of its label that best matches it by
  IoU, its score plus that IoU, summed; on a torchvision detector's list of dicts
  (``boxes``, ``labels``, ``scores``) or a DETR / YOLOS output.
- A ready-made :class:`rsigradcam.Target` (``ClassTarget``, ``SegmentationTarget``,
  ``BoxTarget``, ``RegressionTarget``): as the library's methods use it.
- Any other callable (pytorch-grad-cam's other targets, your own): called on one row of
  the model's raw output (a row of its tensor or ``logits``, or one dict of a list of
  dicts), it returns the score to explain, a 0-d tensor computed from that row. Its value
  is used as it is (``output=`` does not apply).
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Literal, TypedDict

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn
from typing_extensions import Unpack

from rsigradcam.baselines import AutoBaseline, BaselineSpec, Normalize
from rsigradcam.core.capture import logits_of, model_device, resolve_layer
from rsigradcam.core.inference import SpeedSpec
from rsigradcam.core.integrate import Rule
from rsigradcam.core.path import PathSpec
from rsigradcam.core.reshape import ReshapeSpec
from rsigradcam.core.targets import (
    BoxTarget,
    Output,
    Rows,
    SegmentationTarget,
    Target,
    check_output,
)
from rsigradcam.explanation import Explanation
from rsigradcam.methods import RSIGradCAM as _CoreRSIGradCAM

__all__ = [
    "AUG_SMOOTH_REFUSED",
    "EIGEN_SMOOTH_REFUSED",
    "ClassifierOutputSoftmaxTarget",
    "ClassifierOutputTarget",
    "FasterRCNNBoxScoreTarget",
    "FrontEndOptions",
    "RSIGradCAM",
    "SemanticSegmentationTarget",
]

#: Why ``aug_smooth=True`` is refused (the error's text).
AUG_SMOOTH_REFUSED = (
    "aug_smooth=True is not supported by rsigradcam's RSIGradCAM: the path integral already "
    "averages gradients along the path from the baseline, and test-time augmentation would "
    "multiply the cost by the number of augmentations; call it with aug_smooth=False."
)
#: Why ``eigen_smooth=True`` is refused (the error's text).
EIGEN_SMOOTH_REFUSED = (
    "eigen_smooth=True is not supported by rsigradcam's RSIGradCAM: the map is the paper's "
    "ReLU(sum_k w_k A^k(x)), not a principal component of the weighted activations; call it "
    "with eigen_smooth=False."
)

#: The module pytorch-grad-cam defines its target classes in (its names are recognised).
_FOREIGN_MODULE = "pytorch_grad_cam"
_CLASS_TARGET = "ClassifierOutputTarget"
_SOFTMAX_TARGET = "ClassifierOutputSoftmaxTarget"
_SEGMENTATION_TARGET = "SemanticSegmentationTarget"
_BOX_TARGET = "FasterRCNNBoxScoreTarget"


class FrontEndOptions(TypedDict, total=False):
    """The options of :class:`rsigradcam.RSIGradCAM` this front-end passes on."""

    rule: Rule
    grad_relu: bool
    guided: bool
    tolerance: float
    max_steps: int
    baseline: BaselineSpec
    normalize: Normalize
    partition: Tensor | Sequence[float] | None
    path: PathSpec
    n_samples: int
    batch_size: int | None
    dtype: torch.dtype | None
    memory_budget_mb: float | None
    speed: SpeedSpec


def _category(value: Any) -> int:
    """A class index from an int, a NumPy integer or a 0-d integer tensor."""
    if isinstance(value, bool):
        raise TypeError("a target category must be an int class index, not bool.")
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.dtype.is_floating_point or value.dtype == torch.bool:
            raise TypeError(
                f"a target category must be one int class index, got a tensor {value!r}."
            )
        value = value.item()
    try:
        category = operator.index(value)
    except TypeError as err:
        raise TypeError(
            f"a target category must be an int class index, not {type(value).__name__}."
        ) from err
    if category < 0:
        raise ValueError(f"a target category must be a non-negative class index, got {category}.")
    return category


def _class_column(scores: Tensor, category: int) -> Tensor:
    """``scores[category]`` of one row (1-D), or ``scores[:, category]`` of a batch (2-D)."""
    return scores[category] if scores.dim() == 1 else scores[:, category]


class ClassifierOutputTarget:
    """Explain class ``category`` (as pytorch-grad-cam's target of the same name).

    Called on a model output it returns the raw score ``output[category]`` (a 1-D row) or
    ``output[:, category]`` (a batch), as pytorch-grad-cam's does. Given to
    :class:`RSIGradCAM` it selects the class, scored with the CAM's ``output=`` setting:
    the softmax probability by default (the paper), the logit with ``output="logits"``.

    Args:
        category: The class index.
    """

    def __init__(self, category: int) -> None:
        self.category = _category(category)

    def __call__(self, model_output: Tensor) -> Tensor:
        """The raw score of the class in one output row (1-D) or each row of a batch (2-D)."""
        return _class_column(model_output, self.category)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.category})"


class ClassifierOutputSoftmaxTarget:
    """Explain the softmax probability of class ``category``, whatever ``output=`` says.

    Args:
        category: The class index.
    """

    def __init__(self, category: int) -> None:
        self.category = _category(category)

    def __call__(self, model_output: Tensor) -> Tensor:
        """The class's probability in one output row (1-D) or each row of a batch (2-D)."""
        return _class_column(torch.softmax(model_output, dim=-1), self.category)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.category})"


class SemanticSegmentationTarget(SegmentationTarget):
    """Class ``category``'s raw score summed over ``mask`` (as pytorch-grad-cam's target).

    Reads a segmentation model's (N, K, H, W) scores (a tensor, or a Hugging Face
    ``logits``); ``mask`` (H, W) is at the output's size or the input's (then resized).
    Called on an output it scores each row of a batch.

    Args:
        category: The class index.
        mask: A boolean (or 0/1) mask, a NumPy array or a tensor.
    """

    def __init__(self, category: int, mask: Any) -> None:
        found = mask.detach().cpu() if isinstance(mask, Tensor) else np.asarray(mask)
        super().__init__(_category(category), found, output="logits")


class FasterRCNNBoxScoreTarget(Target):
    """For each box, its label's best-matching detection's score plus IoU, summed.

    As pytorch-grad-cam's target of the same name: a box whose best IoU is below
    ``iou_threshold`` adds 0. One difference: the match is the best among the detections
    of the box's label (pytorch-grad-cam takes the best over all detections, then adds 0
    if its label differs). Reads a torchvision detector's list of dicts (``boxes``,
    ``labels``, ``scores``) or a DETR / YOLOS output (:class:`rsigradcam.BoxTarget`).

    Args:
        labels: One class per box.
        bounding_boxes: (B, 4) boxes (x0, y0, x1, y1) in input pixels.
        iou_threshold: The least IoU of a match.
    """

    def __init__(self, labels: Sequence[int], bounding_boxes: Any, iou_threshold: float = 0.5):
        boxes = torch.as_tensor(np.asarray(bounding_boxes, dtype=np.float64)).reshape(-1, 4)
        found = [_category(label) for label in labels]
        if len(found) != boxes.shape[0]:
            raise ValueError(
                f"FasterRCNNBoxScoreTarget has {len(found)} label(s) for {boxes.shape[0]} "
                "box(es); give one label per box."
            )
        self.labels, self.bounding_boxes, self.iou_threshold = found, boxes, float(iou_threshold)
        self._boxes = [
            BoxTarget(box, label, iou_threshold=self.iou_threshold, add_iou=True)
            for box, label in zip(boxes, found, strict=True)
        ]

    def score(self, output: Any, rows: Rows | None) -> Tensor:
        """Each row's sum over the boxes."""
        if not self._boxes:
            raise ValueError("FasterRCNNBoxScoreTarget has no boxes; give at least one.")
        return torch.stack([box.score(output, rows) for box in self._boxes]).sum(dim=0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.labels}, {self.bounding_boxes.tolist()})"


def _task_target(target: Any) -> Target | None:
    """A ready-made target, or ours for pytorch-grad-cam's segmentation and box targets.

    pytorch-grad-cam's are recognised by their module and name (never imported).
    """
    if isinstance(target, Target):
        return target
    kind = type(target)
    if kind.__module__.split(".")[0] != _FOREIGN_MODULE:
        return None
    if kind.__name__ == _SEGMENTATION_TARGET:
        return SemanticSegmentationTarget(target.category, target.mask)
    if kind.__name__ == _BOX_TARGET:
        return FasterRCNNBoxScoreTarget(
            target.labels, target.bounding_boxes, getattr(target, "iou_threshold", 0.5)
        )
    return None


def _class_target(target: Any) -> tuple[int, Output | None] | None:
    """``(class, score)`` of a class target, score ``None`` meaning the CAM's ``output=``.

    ``None`` for any other callable. pytorch-grad-cam's two classifier targets are
    recognised by their module and name, so that package is never imported.
    """
    if isinstance(target, ClassifierOutputSoftmaxTarget):
        return target.category, "softmax"
    if isinstance(target, ClassifierOutputTarget):
        return target.category, None
    kind = type(target)
    if kind.__module__.split(".")[0] == _FOREIGN_MODULE and hasattr(target, "category"):
        if kind.__name__ == _SOFTMAX_TARGET:
            return _category(target.category), "softmax"
        if kind.__name__ == _CLASS_TARGET:
            return _category(target.category), None
    if isinstance(target, (numbers.Integral, Tensor)) and not callable(target):
        return _category(target), None
    return None


class _RowTarget:
    """A pytorch-grad-cam-style target (one output row -> one score) on a batch of rows."""

    def __init__(self, target: Callable[[Tensor], Any]) -> None:
        self.target = target

    def __call__(self, outputs: Any) -> Tensor:
        scores: list[Tensor] = []
        rows = outputs if isinstance(outputs, list) else logits_of(outputs)
        for row in rows:
            score = self.target(row)
            if not isinstance(score, Tensor) or score.numel() != 1:
                what = (
                    f"shape {tuple(score.shape)}"
                    if isinstance(score, Tensor)
                    else type(score).__name__
                )
                raise ValueError(
                    f"target {self.target!r} returned {what} for one model-output row; a "
                    "target must return one score, a 0-d tensor computed from the row "
                    "(e.g. row[281])."
                )
            if not score.requires_grad:
                raise ValueError(
                    f"target {self.target!r} returned a score that does not depend on the "
                    "model's output (a constant or a detached tensor); compute it from the "
                    "row it is given."
                )
            scores.append(score.reshape(()))
        return torch.stack(scores)


class RSIGradCAM:
    """RSI-Grad-CAM with the constructor and call of pytorch-grad-cam's CAM classes.

    The maps equal :class:`rsigradcam.RSIGradCAM`'s ``heatmap`` for the same options. With
    several ``target_layers`` the result is, as in pytorch-grad-cam, the mean of the
    per-layer maps (each in [0, 1] at the input's size), min-max scaled to [0, 1] again;
    all layers come from one set of forward and backward passes.

    Args:
        model: Any classifier ``images (N, C, H, W) -> logits (N, classes)`` (or a Hugging
            Face model returning ``.logits``).
        target_layers: The layers to explain: modules of ``model`` (or their names). A
            single module or name is one layer.
        reshape_transform: For token layers: a callable on the layer's output, ``(N, T, D)
            -> (N, D, h, w)``, as pytorch-grad-cam takes it (it must only select and
            rearrange), or ``"tokens"``.
        steps: m, the number of intervals of the path from the baseline to the input.
        output: How :class:`ClassifierOutputTarget` and ``targets=None`` score a class:
            ``"softmax"`` (the paper) or ``"logits"`` (pytorch-grad-cam's
            ``ClassifierOutputTarget``).
        **options: :class:`rsigradcam.RSIGradCAM`'s other options: ``rule``, ``baseline``,
            ``normalize``, ``batch_size``, ``grad_relu``, ``guided``, ``partition``,
            ``path``, ``n_samples``, ``dtype``, ``memory_budget_mb``, ``tolerance``,
            ``max_steps``.

    Example:
        >>> with RSIGradCAM(model=model, target_layers=[model.layer4[-1]]) as cam:  # doctest: +SKIP
        ...     grayscale = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)])
    """

    def __init__(
        self,
        model: nn.Module,
        target_layers: Sequence[nn.Module | str] | nn.Module | str,
        reshape_transform: ReshapeSpec = None,
        *,
        steps: int | Literal["auto"] = 50,
        output: Output = "softmax",
        **options: Unpack[FrontEndOptions],
    ) -> None:
        layers: list[nn.Module | str] = (
            [target_layers]
            if isinstance(target_layers, (nn.Module, str))
            else list(target_layers)
        )
        if not layers:
            raise ValueError(
                "target_layers is empty; pass a list of one or more layers, e.g. "
                "target_layers=[model.layer4[-1]]."
            )
        self.model = model
        self.target_layers = layers
        self.reshape_transform = reshape_transform
        self.output = check_output(output)
        if isinstance(options.get("baseline"), str) and options.get("baseline") == "auto":
            options["baseline"] = AutoBaseline(model)  # fitted once, shared by both scores
        self._steps = steps
        self._options = options
        self._cams: dict[Output, _CoreRSIGradCAM[dict[str, Explanation]]] = {}
        self._cam(self.output)  # checks every option now
        self._names = [resolve_layer(model, layer)[0] for layer in layers]

    def _cam(self, output: Output) -> _CoreRSIGradCAM[dict[str, Explanation]]:
        if output not in self._cams:
            self._cams[output] = _CoreRSIGradCAM(
                self.model,
                list(self.target_layers),
                steps=self._steps,
                output=output,
                reshape_transform=self.reshape_transform,
                **self._options,
            )
        return self._cams[output]

    def __enter__(self) -> RSIGradCAM:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Nothing to release: hooks live only during a call. Exceptions propagate."""

    def __call__(
        self,
        input_tensor: Tensor,
        targets: Sequence[Any] | npt.NDArray[Any] | Tensor | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> npt.NDArray[np.float32]:
        """Explain ``input_tensor`` for ``targets``.

        Args:
            input_tensor: (N, C, H, W) preprocessed images; moved to the model's device.
            targets: ``None`` for each image's top-1 class, or one target per image (see
                the module's docstring).
            aug_smooth: Refused when true (:data:`AUG_SMOOTH_REFUSED`).
            eigen_smooth: Refused when true (:data:`EIGEN_SMOOTH_REFUSED`).

        Returns:
            (N, H, W) float32 maps in [0, 1].
        """
        if aug_smooth:
            raise ValueError(AUG_SMOOTH_REFUSED)
        if eigen_smooth:
            raise ValueError(EIGEN_SMOOTH_REFUSED)
        if not isinstance(input_tensor, Tensor):
            raise TypeError(
                f"input_tensor must be a torch.Tensor (N, C, H, W), not "
                f"{type(input_tensor).__name__}."
            )
        x = input_tensor.to(model_device(self.model))
        if x.dim() != 4:
            raise ValueError(
                f"input_tensor must be a 4-D (N, C, H, W) tensor, got shape {tuple(x.shape)}."
            )
        n_images = x.shape[0]
        maps = torch.zeros((n_images, *x.shape[2:]), dtype=torch.float32)
        for output, rows, spec in self._groups(targets, n_images):
            whole = len(rows) == n_images
            result = self._cam(output)(x if whole else x[rows], spec)
            maps[rows] = self._combine(result).detach().float().cpu()
        return maps.numpy().astype(np.float32, copy=False)

    forward = __call__

    def _groups(
        self, targets: Sequence[Any] | npt.NDArray[Any] | Tensor | None, n_images: int
    ) -> list[tuple[Output, list[int], Any]]:
        """Images that one call explains together: ``(output, image indices, targets)``."""
        if targets is None:
            return [(self.output, list(range(n_images)), None)]
        if isinstance(targets, (np.ndarray, Tensor)) and targets.ndim == 1:
            targets = list(targets)  # one class index per image
        if isinstance(targets, (str, bytes)) or not isinstance(targets, Sequence):
            raise TypeError(
                "targets must be None (each image's top-1 class) or a list with one target per "
                f"image, e.g. [ClassifierOutputTarget(281)]; got {type(targets).__name__}."
            )
        if len(targets) != n_images:
            raise ValueError(
                f"targets has {len(targets)} item(s) but input_tensor has {n_images} image(s); "
                "give one target per image, or targets=None for each image's top-1 class."
            )
        classes: dict[Output, tuple[list[int], list[int]]] = {}
        callables: dict[int, tuple[list[int], Any]] = {}
        for i, target in enumerate(targets):
            task = _task_target(target)
            if task is not None:
                callables.setdefault(id(target), ([], task))[0].append(i)
                continue
            found = _class_target(target)
            if found is not None:
                category, score = found
                rows, values = classes.setdefault(score or self.output, ([], []))
                rows.append(i)
                values.append(category)
            elif callable(target):
                callables.setdefault(id(target), ([], _RowTarget(target)))[0].append(i)
            else:
                raise TypeError(
                    f"target {i} is {type(target).__name__}; a target is a class index, "
                    "ClassifierOutputTarget(c), ClassifierOutputSoftmaxTarget(c) or a "
                    "callable on one row of the model's outputs."
                )
        groups: list[tuple[Output, list[int], Any]] = [
            (output, rows, torch.tensor(values, dtype=torch.long))
            for output, (rows, values) in classes.items()
        ]
        groups += [(self.output, rows, fn) for rows, fn in callables.values()]
        return groups

    def _combine(self, explanations: dict[str, Explanation]) -> Tensor:
        """One layer's heatmap, or the min-max scaled mean of several layers' heatmaps."""
        if len(self._names) == 1:
            return explanations[self._names[0]].heatmap
        mean = torch.stack([explanations[name].heatmap for name in self._names]).mean(dim=0)
        flat = mean.flatten(1)
        low = flat.min(dim=1).values.view(-1, 1, 1)
        span = flat.max(dim=1).values.view(-1, 1, 1) - low
        scaled = (mean - low) / torch.where(span > 0, span, torch.ones_like(span))
        return torch.where(span > 0, scaled, torch.zeros_like(mean)).clamp(0.0, 1.0)
