"""Grad-CAM and RSI-Grad-CAM with pytorch-grad-cam's call shape: switch with one import.

pytorch-grad-cam (github ``jacobgil/pytorch-grad-cam``) explains with::

    with GradCAM(model=model, target_layers=[model.layer4[-1]]) as cam:
        grayscale = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)])

Here the same lines give the same Grad-CAM maps, and with ``RSIGradCAM`` RSI-Grad-CAM's::

    from rsigradcam.integrations.pytorch_grad_cam import RSIGradCAM, ClassifierOutputTarget

    with RSIGradCAM(model=model, target_layers=[model.layer4[-1]], steps=50) as cam:
        grayscale = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)])

``grayscale`` is an (N, H, W) float32 NumPy array in [0, 1] at the input's size, scaled
as pytorch-grad-cam scales it (:func:`scale_cam`): each layer map (after the ReLU) scaled
and resized bilinearly to the input, then their mean (one layer: its map) scaled again.
For one layer that is the library's ``heatmap`` within float rounding. This module does
not import ``pytorch_grad_cam``; its target objects work here when it is installed.

**Targets**, as in pytorch-grad-cam: one per image, or ``None`` for each image's top-1
class.

- :class:`ClassifierOutputTarget` (``c``), ours or pytorch-grad-cam's: the logit
  ``output[c]``, as there. The RSI-Grad-CAM paper explains the softmax probability:
  pass ``output="softmax"`` to the constructor (the recommended choice for RSI-Grad-CAM;
  it then also scores plain ints and ``targets=None``), or give
  :class:`ClassifierOutputSoftmaxTarget` targets.
- :class:`ClassifierOutputSoftmaxTarget` (``c``), ours or theirs: the softmax probability
  of class ``c``, whatever ``output=`` says.
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

**Keywords of earlier pytorch-grad-cam releases** still work, with a DeprecationWarning
that says what to write instead: ``use_cuda`` (ignored: the CAM runs on the model's
device), ``target_layer=`` (one layer) and the call's ``target_category=``.
"""

from __future__ import annotations

import numbers
import operator
import warnings
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, ClassVar, Literal, TypedDict

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import Self, Unpack

from rsigradcam.baselines import AutoBaseline, BaselineSpec, Normalize
from rsigradcam.core.capture import logits_of, model_device, resolve_layer
from rsigradcam.core.checks import LIBRARY_FRAMES, caller_stacklevel
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
from rsigradcam.methods import BaseCAM
from rsigradcam.methods import GradCAM as _CoreGradCAM
from rsigradcam.methods import RSIGradCAM as _CoreRSIGradCAM

__all__ = [
    "AUG_SMOOTH_REFUSED",
    "EIGEN_SMOOTH_REFUSED",
    "ClassifierOutputSoftmaxTarget",
    "ClassifierOutputTarget",
    "FasterRCNNBoxScoreTarget",
    "FrontEndOptions",
    "GradCAM",
    "GradCAMOptions",
    "RSIGradCAM",
    "SemanticSegmentationTarget",
    "scale_cam",
]

#: Why ``aug_smooth=True`` is refused (the error's text).
AUG_SMOOTH_REFUSED = (
    "aug_smooth=True is not supported by rsigradcam's front-end: test-time augmentation "
    "would multiply the cost by the number of augmentations (RSI-Grad-CAM's path integral "
    "already averages gradients along the path from the baseline); call it with "
    "aug_smooth=False."
)
#: Why ``eigen_smooth=True`` is refused (the error's text).
EIGEN_SMOOTH_REFUSED = (
    "eigen_smooth=True is not supported by rsigradcam's front-end: the map is "
    "ReLU(sum_k w_k A^k(x)), not a principal component of the weighted activations; call it "
    "with eigen_smooth=False."
)

#: The module pytorch-grad-cam defines its target classes in (its names are recognised).
_FOREIGN_MODULE = "pytorch_grad_cam"
_SEGMENTATION_TARGET = "SemanticSegmentationTarget"
_BOX_TARGET = "FasterRCNNBoxScoreTarget"
#: Class targets by name, ours or pytorch-grad-cam's, and how each scores its class:
#: ``None`` under the CAM's ``output=``, else that score whatever ``output=`` says.
_CLASS_TARGETS: dict[str, Output | None] = {
    "ClassifierOutputTarget": None,
    "ClassifierOutputSoftmaxTarget": "softmax",
}
#: pytorch-grad-cam's own constant in ``scale_cam_image``: ``map / (1e-7 + max)``.
_SCALE_EPS = 1e-7
#: The frames a deprecation warning skips: it names the line that called the front-end.
_FRAMES = (*LIBRARY_FRAMES, "rsigradcam.integrations")


class GradCAMOptions(TypedDict, total=False):
    """The options of :class:`rsigradcam.GradCAM` the front-ends pass on."""

    batch_size: int | None
    dtype: torch.dtype | None
    memory_budget_mb: float | None
    speed: SpeedSpec


class FrontEndOptions(GradCAMOptions, total=False):
    """The options of :class:`rsigradcam.RSIGradCAM` the RSI front-end passes on."""

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


def _deprecated(message: str) -> None:
    warnings.warn(message, DeprecationWarning, stacklevel=caller_stacklevel(_FRAMES))


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
    """Explain the logit of class ``category``, as pytorch-grad-cam's target of this name.

    Called on a model output it returns the raw score ``output[category]`` (a 1-D row) or
    ``output[:, category]`` (a batch), as pytorch-grad-cam's does. Given to a front-end it
    selects the class, scored with the CAM's ``output=`` setting: the logit by default, as
    in pytorch-grad-cam, the softmax probability with ``output="softmax"``.

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


class ClassifierOutputSoftmaxTarget(ClassifierOutputTarget):
    """Explain the softmax probability of class ``category``, whatever ``output=`` says.

    Args:
        category: The class index.
    """

    def __call__(self, model_output: Tensor) -> Tensor:
        """The class's probability in one output row (1-D) or each row of a batch (2-D)."""
        return _class_column(torch.softmax(model_output, dim=-1), self.category)


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

    ``None`` for any other callable. Ours and pytorch-grad-cam's classifier targets are
    recognised by name (theirs also by module), so that package is never imported.
    """
    kind = type(target)
    ours = isinstance(target, ClassifierOutputTarget)
    theirs = kind.__module__.split(".")[0] == _FOREIGN_MODULE and hasattr(target, "category")
    if (ours or theirs) and kind.__name__ in _CLASS_TARGETS:
        return _category(target.category), _CLASS_TARGETS[kind.__name__]
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


def scale_cam(maps: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """pytorch-grad-cam's ``scale_cam_image`` on (N, h, w) maps, in torch.

    Each map minus its minimum, divided by ``1e-7`` plus the new maximum, then, with
    ``size`` (height, width), resized bilinearly (half-pixel centres, as OpenCV's
    ``INTER_LINEAR``). A constant map becomes zeros.
    """
    maps = maps.float()
    shifted = maps - maps.flatten(1).min(dim=1).values.view(-1, 1, 1)
    scaled = shifted / (_SCALE_EPS + shifted.flatten(1).max(dim=1).values.view(-1, 1, 1))
    if size is None or tuple(scaled.shape[-2:]) == size:
        return scaled
    up = F.interpolate(scaled.unsqueeze(1), size=size, mode="bilinear", align_corners=False)
    return up.squeeze(1)


def _legacy_layers(
    cls: str,
    target_layers: Sequence[nn.Module | str] | nn.Module | str | None,
    target_layer: nn.Module | str | None,
) -> list[nn.Module | str]:
    """The layers to explain, from ``target_layers`` or the deprecated ``target_layer``."""
    if target_layer is not None:
        if target_layers is not None:
            raise TypeError(
                f"{cls}() got both target_layers and target_layer; pass only "
                "target_layers=[layer]."
            )
        _deprecated(
            f"{cls}: target_layer= is deprecated (later pytorch-grad-cam releases replaced it "
            "with a list); pass target_layers=[layer]."
        )
        target_layers = [target_layer]
    if target_layers is None:
        raise TypeError(
            f"{cls}() missing target_layers; pass the layers to explain, e.g. "
            "target_layers=[model.layer4[-1]]."
        )
    layers: list[nn.Module | str] = (
        [target_layers] if isinstance(target_layers, (nn.Module, str)) else list(target_layers)
    )
    if not layers:
        raise ValueError(
            "target_layers is empty; pass a list of one or more layers, e.g. "
            "target_layers=[model.layer4[-1]]."
        )
    return layers


def _warn_use_cuda(cls: str, use_cuda: bool) -> None:
    where = "model.to('cuda')" if use_cuda else "model.to('cpu')"
    _deprecated(
        f"{cls}: use_cuda is deprecated and ignored (pytorch-grad-cam 1.5 removed it): the "
        f"CAM runs on the model's device and moves input_tensor there; move the model "
        f"first ({where}) and drop use_cuda."
    )


class _FrontEnd:
    """pytorch-grad-cam's CAM constructor and call around one of rsigradcam's methods."""

    #: The rsigradcam method this front-end runs.
    method: ClassVar[type[BaseCAM[Any]]]

    def __init__(
        self,
        model: nn.Module,
        target_layers: Sequence[nn.Module | str] | nn.Module | str | None,
        reshape_transform: ReshapeSpec | bool,
        output: Output,
        use_cuda: bool | None,
        target_layer: nn.Module | str | None,
        options: dict[str, Any],
    ) -> None:
        cls = type(self).__name__
        if isinstance(reshape_transform, bool):  # GradCAM(model, layers, use_cuda) before 1.5
            use_cuda, reshape_transform = reshape_transform, None
        if use_cuda is not None:
            _warn_use_cuda(cls, use_cuda)
        layers = _legacy_layers(cls, target_layers, target_layer)
        self.model = model
        self.target_layers = layers
        self.reshape_transform: ReshapeSpec = reshape_transform
        self.output = check_output(output)
        self._options = options
        self._cams: dict[Output, BaseCAM[dict[str, Explanation]]] = {}
        self._cam(self.output)  # checks every option now
        self._names = [resolve_layer(model, layer)[0] for layer in layers]

    def _cam(self, output: Output) -> BaseCAM[dict[str, Explanation]]:
        if output not in self._cams:
            self._cams[output] = self.method(
                self.model,
                list(self.target_layers),
                output=output,
                reshape_transform=self.reshape_transform,
                **self._options,
            )
        return self._cams[output]

    def __enter__(self) -> Self:
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
        *,
        target_category: int | Sequence[int] | npt.NDArray[Any] | Tensor | None = None,
    ) -> npt.NDArray[np.float32]:
        """Explain ``input_tensor`` for ``targets``.

        Args:
            input_tensor: (N, C, H, W) preprocessed images; moved to the model's device.
            targets: ``None`` for each image's top-1 class, or one target per image (see
                the module's docstring).
            aug_smooth: Refused when true (:data:`AUG_SMOOTH_REFUSED`).
            eigen_smooth: Refused when true (:data:`EIGEN_SMOOTH_REFUSED`).
            target_category: Deprecated (early pytorch-grad-cam releases): one class for every
                image, or one per image; pass ``targets=[ClassifierOutputTarget(c)]``. A
                single int given as ``targets`` (that release's second argument) is taken
                as it, with the same warning.

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
        if isinstance(targets, numbers.Integral) and not isinstance(targets, bool):
            if target_category is not None:
                raise TypeError("got a class as targets and target_category; pass only targets.")
            targets, target_category = None, int(targets)
        if target_category is not None:
            targets = self._legacy_targets(targets, target_category, n_images)
        maps = torch.zeros((n_images, *x.shape[2:]), dtype=torch.float32)
        for output, rows, spec in self._groups(targets, n_images):
            whole = len(rows) == n_images
            result = self._cam(output)(x if whole else x[rows], spec)
            maps[rows] = self._combine(result, (x.shape[2], x.shape[3])).detach().cpu()
        return maps.numpy().astype(np.float32, copy=False)

    forward = __call__

    def _legacy_targets(
        self,
        targets: Any,
        target_category: int | Sequence[int] | npt.NDArray[Any] | Tensor,
        n_images: int,
    ) -> list[ClassifierOutputTarget]:
        cls = type(self).__name__
        if targets is not None:
            raise TypeError(
                f"{cls}() got both targets and target_category; pass only "
                "targets=[ClassifierOutputTarget(c), ...]."
            )
        _deprecated(
            f"{cls}: target_category= is deprecated (later pytorch-grad-cam releases replaced "
            "it); pass targets=[ClassifierOutputTarget(c), ...], one per image."
        )
        if isinstance(target_category, (np.ndarray, Tensor)) and target_category.ndim == 1:
            target_category = list(target_category)
        if isinstance(target_category, Sequence):
            return [ClassifierOutputTarget(c) for c in target_category]
        return [ClassifierOutputTarget(_category(target_category))] * n_images

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

    def _combine(self, explanations: dict[str, Explanation], size: tuple[int, int]) -> Tensor:
        """Each layer's map scaled and resized, then their mean (one: that map) scaled.

        As pytorch-grad-cam's ``compute_cam_per_layer`` and ``aggregate_multi_layers``.
        """
        scaled = [scale_cam(explanations[name].layer_map, size) for name in self._names]
        return scale_cam(torch.stack(scaled).clamp(min=0.0).mean(dim=0))


class GradCAM(_FrontEnd):
    """Grad-CAM with pytorch-grad-cam's ``GradCAM`` constructor, call and maps.

    The maps are :class:`rsigradcam.GradCAM`'s layer maps, scaled as pytorch-grad-cam
    scales them (see the module's docstring; one layer: the ``heatmap``): the same maps as
    pytorch-grad-cam's ``GradCAM`` for the same targets, so code can switch and be checked
    before it moves to :class:`RSIGradCAM`.

    Args:
        model: Any classifier ``images (N, C, H, W) -> logits (N, classes)`` (or a Hugging
            Face model returning ``.logits``).
        target_layers: The layers to explain: modules of ``model`` (or their names). A
            single module or name is one layer. Several give the mean of their scaled
            maps, scaled again, as in pytorch-grad-cam (from one set of passes).
        reshape_transform: For token layers: a callable on the layer's output, ``(N, T, D)
            -> (N, D, h, w)``, as pytorch-grad-cam takes it (it must only select and
            rearrange), or ``"tokens"``.
        output: How :class:`ClassifierOutputTarget`, ints and ``targets=None`` score a
            class: ``"logits"`` (pytorch-grad-cam's) or ``"softmax"``.
        use_cuda: Deprecated and ignored (pytorch-grad-cam before 1.5): the CAM runs on the
            model's device.
        target_layer: Deprecated (early pytorch-grad-cam releases): one layer; pass
            ``target_layers=[layer]``.
        **options: :class:`rsigradcam.GradCAM`'s ``batch_size``, ``dtype``,
            ``memory_budget_mb`` and ``speed``.

    Example:
        >>> with GradCAM(model=model, target_layers=[model.layer4[-1]]) as cam:  # doctest: +SKIP
        ...     grayscale = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)])
    """

    method = _CoreGradCAM

    def __init__(
        self,
        model: nn.Module,
        target_layers: Sequence[nn.Module | str] | nn.Module | str | None = None,
        reshape_transform: ReshapeSpec | bool = None,
        *,
        output: Output = "logits",
        use_cuda: bool | None = None,
        target_layer: nn.Module | str | None = None,
        **options: Unpack[GradCAMOptions],
    ) -> None:
        super().__init__(
            model, target_layers, reshape_transform, output, use_cuda, target_layer,
            dict(options),
        )


class RSIGradCAM(_FrontEnd):
    """RSI-Grad-CAM with the constructor and call of pytorch-grad-cam's CAM classes.

    The maps are :class:`rsigradcam.RSIGradCAM`'s layer maps for the same options, scaled
    as pytorch-grad-cam scales them (see the module's docstring; one layer: the
    ``heatmap``).

    Args:
        model: Any classifier ``images (N, C, H, W) -> logits (N, classes)`` (or a Hugging
            Face model returning ``.logits``).
        target_layers: The layers to explain: modules of ``model`` (or their names). A
            single module or name is one layer. Several give the mean of their scaled
            maps, scaled again, as in pytorch-grad-cam (from one set of passes).
        reshape_transform: For token layers: a callable on the layer's output, ``(N, T, D)
            -> (N, D, h, w)``, as pytorch-grad-cam takes it (it must only select and
            rearrange), or ``"tokens"``.
        steps: m, the number of intervals of the path from the baseline to the input.
        output: How :class:`ClassifierOutputTarget`, ints and ``targets=None`` score a
            class: ``"logits"`` (the default: pytorch-grad-cam's ``ClassifierOutputTarget``)
            or ``"softmax"``, the probability that the RSI-Grad-CAM paper explains and the
            recommended choice.
        use_cuda: Deprecated and ignored (pytorch-grad-cam before 1.5): the CAM runs on the
            model's device.
        target_layer: Deprecated (early pytorch-grad-cam releases): one layer; pass
            ``target_layers=[layer]``.
        **options: :class:`rsigradcam.RSIGradCAM`'s other options: ``rule``, ``baseline``,
            ``normalize``, ``batch_size``, ``grad_relu``, ``guided``, ``partition``,
            ``path``, ``n_samples``, ``dtype``, ``memory_budget_mb``, ``tolerance``,
            ``max_steps``, ``speed``.

    Example:
        >>> with RSIGradCAM(model=model, target_layers=[model.layer4[-1]],  # doctest: +SKIP
        ...                 output="softmax") as cam:
        ...     grayscale = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)])
    """

    method = _CoreRSIGradCAM

    def __init__(
        self,
        model: nn.Module,
        target_layers: Sequence[nn.Module | str] | nn.Module | str | None = None,
        reshape_transform: ReshapeSpec | bool = None,
        *,
        steps: int | Literal["auto"] = 50,
        output: Output = "logits",
        use_cuda: bool | None = None,
        target_layer: nn.Module | str | None = None,
        **options: Unpack[FrontEndOptions],
    ) -> None:
        settings: dict[str, Any] = {"steps": steps, **options}
        if isinstance(settings.get("baseline"), str) and settings.get("baseline") == "auto":
            settings["baseline"] = AutoBaseline(model)  # fitted once, shared by both scores
        super().__init__(
            model, target_layers, reshape_transform, output, use_cuda, target_layer, settings
        )
