"""Which score y is explained: a class's probability, logit or sigmoid, or any scalar per row.

The target specification accepted by a CAM call is one of

- ``None``: each image's top-1 class at the input;
- an ``int``: the same class for every image;
- a sequence or 1-D tensor of ints: one class per image;
- a ready-made :class:`Target` (:class:`ClassTarget`, :class:`SegmentationTarget`,
  :class:`BoxTarget`, :class:`RegressionTarget`), told which image each row belongs to;
- a callable ``fn(output) -> scores``: ``output`` is the model's raw output for a chunk of
  path points, unchanged (a tensor of any shape, a dict, a ``ModelOutput``, a tuple, a list
  of dicts), and ``scores`` the (B,) values to explain, one per row of the chunk.

Class indices score the (N, classes) scores of the output (:func:`class_logits`): a
tensor, a ``ModelOutput``'s or dict's ``logits``, or a tuple's first item, through
``output=``: ``"softmax"`` (the class probability), ``"logits"`` or ``"sigmoid"`` (the
sigmoid of the class logit, for multi-label classifiers).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from rsigradcam.core.capture import class_logits, describe, logits_of

__all__ = [
    "BoxTarget",
    "ClassTarget",
    "Output",
    "RegressionTarget",
    "Rows",
    "ScoreFn",
    "SegmentationTarget",
    "Target",
    "TargetSpec",
    "check_output",
    "check_scores",
    "check_target_range",
    "class_score",
    "resolve_targets",
    "target_scores",
]

Output = Literal["softmax", "logits", "sigmoid"]
#: A callable target: the model's raw output on a chunk -> one score per row.
ScoreFn = Callable[[Any], Tensor]
TargetSpec = int | Sequence[int] | Tensor | ScoreFn | None


def check_output(output: str) -> Output:
    """Validate the ``output`` argument."""
    if output not in get_args(Output):
        raise ValueError(
            f"output must be 'softmax', 'logits' or 'sigmoid', got {output!r}."
        )
    return output  # type: ignore[return-value]


def _scored(scores: Tensor, output: Output, dim: int) -> Tensor:
    """``scores`` as ``output`` says: softmax over ``dim``, the sigmoid, or as they are."""
    if output == "softmax":
        return torch.softmax(scores, dim=dim)
    if output == "sigmoid":
        return torch.sigmoid(scores)
    return scores


def class_score(outputs: Tensor, targets: Tensor, output: Output) -> Tensor:
    """The score of class ``targets[b]`` in row ``b`` of ``outputs`` (B, classes).

    Example:
        >>> class_score(torch.tensor([[0.0, 0.0]]), torch.tensor([1]), "softmax")
        tensor([0.5000])
        >>> class_score(torch.tensor([[0.0, 0.0]]), torch.tensor([1]), "sigmoid")
        tensor([0.5000])
    """
    if output == "softmax":
        outputs = torch.softmax(outputs, dim=1)
    picked = outputs.gather(1, targets.view(-1, 1)).squeeze(1)
    return torch.sigmoid(picked) if output == "sigmoid" else picked


def check_scores(y: Any, n_rows: int) -> Tensor:
    """Check that a target gave one finite score per row of a chunk of ``n_rows`` rows.

    Raises:
        ValueError: Another shape (named), or a score is NaN or Inf.
    """
    if not isinstance(y, Tensor) or y.shape != (n_rows,):
        got = f"shape {tuple(y.shape)}" if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(
            f"the target must return one score per row of the chunk, a tensor of shape "
            f"({n_rows},), got {got}; reduce each row's output to one value."
        )
    if not bool(torch.isfinite(y).all()):
        raise ValueError(
            "the model produced non-finite (NaN or Inf) scores on the integration path; "
            "check the model and the input's normalisation."
        )
    return y


@dataclass(frozen=True)
class Rows:
    """What a target may know of a chunk's rows besides the model's output.

    Attributes:
        images: (B,) the index of the image each row belongs to (a target with one value
            per image picks its row's).
        size: The inputs' spatial size, e.g. (H, W); ``None`` when unknown.
    """

    images: Tensor
    size: tuple[int, ...] | None = None


class Target(ABC):
    """A ready-made score: the model's raw output on a chunk -> one score per row.

    A method gives it :class:`Rows` (each row's image, the input size); called on an
    output alone, row b is image b. Parameters may be one value for every image or one
    per image.
    """

    def __call__(self, output: Any) -> Tensor:
        """The (B,) scores of ``output``, row b being image b."""
        return self.score(output, None)

    @abstractmethod
    def score(self, output: Any, rows: Rows | None) -> Tensor:
        """The (B,) scores of the model's raw ``output`` on a chunk of rows."""


def target_scores(fn: ScoreFn, output: Any, rows: Rows) -> Tensor:
    """A callable target's checked (B,) scores: a :class:`Target` is also told ``rows``."""
    y = fn.score(output, rows) if isinstance(fn, Target) else fn(output)
    return check_scores(y, rows.images.numel())


def _per_image(
    values: Tensor, rows: Rows | None, n_rows: int, what: str, device: torch.device
) -> Tensor:
    """``values`` (P, ...), one for every image (P = 1) or one per image, by row."""
    values = values.to(device)
    if values.shape[0] == 1:
        return values.expand(n_rows, *values.shape[1:])
    if rows is None:
        if values.shape[0] != n_rows:
            raise ValueError(
                f"{what} has {values.shape[0]} values (one per image) but the output has "
                f"{n_rows} rows; give one value, or one per image."
            )
        return values
    if int(rows.images.max()) >= values.shape[0]:
        raise ValueError(
            f"{what} has {values.shape[0]} values (one per image) but there are more "
            "images; give one value, or one per image."
        )
    return values[rows.images.to(device)]


def _indices(value: int | Sequence[int] | Tensor, what: str) -> Tensor:
    """One non-negative index, or one per image, as a (P,) long tensor."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an int or one int per image, not bool.")
    found = torch.as_tensor(value).reshape(-1)
    if found.dtype.is_floating_point or found.dtype == torch.bool or found.numel() == 0:
        raise ValueError(f"{what} must be an int or one int per image, got {value!r}.")
    if bool((found < 0).any()):
        raise ValueError(f"{what} must be non-negative, got {found.tolist()}.")
    return found.long()


class ClassTarget(Target):
    """A class's score: its softmax probability, logit or sigmoid.

    Reads (N, classes) scores: a tensor, the ``logits`` of a ``ModelOutput`` or dict
    (Hugging Face ``...ForImageClassification``), or a tuple's first item.

    Args:
        category: The class, or one class per image.
        output: ``"softmax"`` (the probability), ``"logits"`` or ``"sigmoid"`` (the sigmoid
            of the class logit, for multi-label classifiers).

    Example:
        >>> ClassTarget(1, output="sigmoid")(torch.zeros(2, 3))
        tensor([0.5000, 0.5000])
    """

    def __init__(self, category: int | Sequence[int] | Tensor, *, output: Output = "softmax"):
        self.category = _indices(category, "ClassTarget's category")
        self.output = check_output(output)

    def score(self, output: Any, rows: Rows | None) -> Tensor:
        """The class's score in each row, of its image's class."""
        logits = class_logits(output)
        classes = _per_image(
            self.category, rows, logits.shape[0], "ClassTarget's category", logits.device
        )
        check_target_range(classes, logits.shape[1])
        return class_score(logits, classes, self.output)

    def __repr__(self) -> str:
        return f"ClassTarget({self.category.tolist()}, output={self.output!r})"


class RegressionTarget(Target):
    """One output unit of a regression head, as it is.

    Reads a tensor (N, *units) (or a ``ModelOutput``'s or dict's ``logits``, or a tuple's
    first item); the unit indexes each row's flattened values.

    Args:
        unit: The unit, or one unit per image.

    Example:
        >>> RegressionTarget(1)(torch.tensor([[0.5, 2.0]]))
        tensor([2.])
    """

    def __init__(self, unit: int | Sequence[int] | Tensor = 0):
        self.unit = _indices(unit, "RegressionTarget's unit")

    def score(self, output: Any, rows: Rows | None) -> Tensor:
        """The unit's value in each row."""
        values = logits_of(output)
        flat = values.reshape(values.shape[0], -1)
        units = _per_image(self.unit, rows, flat.shape[0], "RegressionTarget's unit", flat.device)
        if bool((units >= flat.shape[1]).any()):
            raise ValueError(
                f"RegressionTarget's unit {int(units.max())} is out of range: the model "
                f"returned {describe(values)}, {flat.shape[1]} unit(s) per row."
            )
        return flat.gather(1, units.view(-1, 1)).squeeze(1)

    def __repr__(self) -> str:
        return f"RegressionTarget({self.unit.tolist()})"


class SegmentationTarget(Target):
    """A class's score summed over a boolean mask (pytorch-grad-cam's SemanticSegmentationTarget).

    Reads (N, K, *S) per-position class scores: a tensor, or the ``logits`` of a
    ``ModelOutput`` or dict (Hugging Face ``...ForSemanticSegmentation``, whose logits are
    at a fraction of the input's size). A mask at the input's size is resized (nearest) to
    the output's; a mask at the output's size is used as it is.

    Args:
        category: The class, or one class per image.
        mask: A boolean mask (*S) for every image, or (N, *S) one per image.
        output: How each position's class scores are read: ``"logits"`` (as they are,
            as pytorch-grad-cam does), ``"softmax"`` over the classes, or ``"sigmoid"``.

    Example:
        >>> mask = torch.zeros(4, 4, dtype=torch.bool)
        >>> mask[:2] = True
        >>> SegmentationTarget(1, mask)(torch.ones(1, 2, 4, 4))
        tensor([8.])
    """

    def __init__(
        self,
        category: int | Sequence[int] | Tensor,
        mask: Any,
        *,
        output: Output = "logits",
    ):
        self.category = _indices(category, "SegmentationTarget's category")
        found = torch.as_tensor(mask)
        if found.dim() < 1 or found.numel() == 0:
            raise ValueError(
                f"SegmentationTarget's mask must be a boolean (*S) or (N, *S) mask, got shape "
                f"{tuple(found.shape)}."
            )
        self.mask = found.bool()
        self.output = check_output(output)

    def _masks(self, spatial: tuple[int, ...], rows: Rows | None) -> Tensor:
        """The masks (P, *spatial) at the output's size."""
        mask = self.mask
        if mask.dim() == len(spatial):
            mask = mask.unsqueeze(0)
        shape = tuple(mask.shape[1:])
        size = rows.size if rows is not None else None
        if mask.dim() != len(spatial) + 1 or (
            shape != spatial and size is not None and shape != tuple(size)
        ):
            where = f"the input {tuple(size)} nor " if size is not None else ""
            raise ValueError(
                f"SegmentationTarget's mask of shape {tuple(self.mask.shape)} fits neither "
                f"{where}the output {spatial}; give a mask (*S) or (N, *S) at either size."
            )
        if shape == spatial:
            return mask
        resized = F.interpolate(mask[:, None].float(), size=spatial, mode="nearest-exact")
        return resized[:, 0] > 0.5

    def score(self, output: Any, rows: Rows | None) -> Tensor:
        """The class's score summed over each row's mask."""
        scores = logits_of(output)
        if scores.dim() < 3:
            raise ValueError(
                f"SegmentationTarget reads (N, classes, *spatial) scores, but the model "
                f"returned {describe(scores)}; use ClassTarget for a classifier."
            )
        n, spatial = scores.shape[0], tuple(scores.shape[2:])
        classes = _per_image(
            self.category, rows, n, "SegmentationTarget's category", scores.device
        )
        check_target_range(classes, scores.shape[1])
        masks = _per_image(
            self._masks(spatial, rows), rows, n, "SegmentationTarget's mask", scores.device
        )
        picked = _scored(scores, self.output, 1)[torch.arange(n, device=scores.device), classes]
        return (picked * masks.to(picked.dtype)).flatten(1).sum(dim=1)

    def __repr__(self) -> str:
        return (
            f"SegmentationTarget({self.category.tolist()}, mask {tuple(self.mask.shape)}, "
            f"output={self.output!r})"
        )


def box_iou(boxes: Tensor, box: Tensor) -> Tensor:
    """IoU of each (x0, y0, x1, y1) row of ``boxes`` (Q, 4) with ``box`` (4,).

    Example:
        >>> box_iou(torch.tensor([[0.0, 0, 2, 2], [4, 4, 5, 5]]), torch.tensor([1.0, 0, 3, 2]))
        tensor([0.3333, 0.0000])
    """

    def area(b: Tensor) -> Tensor:
        return (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)

    low = torch.maximum(boxes[:, :2], box[:2])
    high = torch.minimum(boxes[:, 2:], box[2:])
    inter = (high - low).clamp(min=0).prod(dim=1)
    return inter / (area(boxes) + area(box) - inter).clamp(min=1e-12)


@dataclass(frozen=True)
class _Detections:
    """One image's predicted boxes (D, 4) in input pixels, labels (D,) and scores (D,)."""

    boxes: Tensor
    labels: Tensor
    scores: Tensor


class BoxTarget(Target):
    """The score of the predicted box that best matches a given box and label by IoU.

    As pytorch-grad-cam's ``FasterRCNNBoxScoreTarget``: among the predictions of the
    label, the one with the largest IoU with ``box``; its score is explained, or 0 (no
    gradient) when that IoU is below ``iou_threshold``. The match is chosen anew at each
    path point. Reads either

    - DETR / YOLOS-style outputs (a ``ModelOutput`` or dict with ``logits`` (N, Q,
      classes + 1), the last class "no object", and ``pred_boxes`` (N, Q, 4), (cx, cy, w,
      h) relative to the input): a query's label is its best class but "no object", its
      score that class's softmax probability (``output=``); or
    - torchvision-style detections, a list of one dict per image with ``boxes`` (D, 4)
      (x0, y0, x1, y1) in pixels, ``labels`` and ``scores`` (used as they are).

    Args:
        box: (x0, y0, x1, y1) in input pixels, or (N, 4) one box per image.
        label: The class, or one class per image.
        iou_threshold: The least IoU of a match.
        output: How a DETR-style query's class score is read: ``"softmax"``,
            ``"logits"`` or ``"sigmoid"``.
        add_iou: Explain score + IoU of the match (pytorch-grad-cam's sum) instead of the
            score alone.
    """

    def __init__(
        self,
        box: Sequence[float] | Tensor,
        label: int | Sequence[int] | Tensor,
        *,
        iou_threshold: float = 0.5,
        output: Output = "softmax",
        add_iou: bool = False,
    ):
        found = torch.as_tensor(box, dtype=torch.float64)
        if found.dim() == 1:
            found = found.unsqueeze(0)
        if found.dim() != 2 or found.shape[1] != 4:
            raise ValueError(
                f"BoxTarget's box must be (x0, y0, x1, y1) or (N, 4), got shape "
                f"{tuple(torch.as_tensor(box).shape)}."
            )
        self.box = found
        self.label = _indices(label, "BoxTarget's label")
        self.iou_threshold = float(iou_threshold)
        self.output = check_output(output)
        self.add_iou = bool(add_iou)

    def _detections(self, output: Any, rows: Rows | None) -> list[_Detections]:
        """Each row's detections, whatever form the model returned them in."""
        if isinstance(output, (list, tuple)) and output and all(
            isinstance(item, Mapping) and "boxes" in item for item in output
        ):
            return [_Detections(d["boxes"], d["labels"], d["scores"]) for d in output]
        found = output.get("pred_boxes") if isinstance(output, Mapping) else getattr(
            output, "pred_boxes", None
        )
        if not isinstance(found, Tensor):
            raise ValueError(
                f"BoxTarget reads predicted boxes, but the model returned {describe(output)} "
                "without any: give a detector that returns 'logits' and 'pred_boxes' (DETR, "
                "YOLOS) or a list of dicts with 'boxes', 'labels' and 'scores' (torchvision)."
            )
        if rows is None or rows.size is None or len(rows.size) != 2:
            raise ValueError(
                "BoxTarget needs the input's (H, W) to compare pixel boxes with relative "
                "'pred_boxes'; call it through a method, or with score(output, Rows(images, "
                "(H, W)))."
            )
        height, width = rows.size
        cx, cy, w, h = found.unbind(-1)
        boxes = torch.stack(
            [(cx - w / 2) * width, (cy - h / 2) * height,
             (cx + w / 2) * width, (cy + h / 2) * height], dim=-1,
        )  # fmt: skip
        scores = _scored(logits_of(output), self.output, -1)
        labels = scores.detach()[..., :-1].argmax(dim=-1)
        picked = scores.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        return [_Detections(b, lab, s) for b, lab, s in zip(boxes, labels, picked, strict=True)]

    def score(self, output: Any, rows: Rows | None) -> Tensor:
        """The matched box's score in each row (0 without a match)."""
        found = self._detections(output, rows)
        device = found[0].scores.device if found else torch.device("cpu")
        boxes = _per_image(self.box, rows, len(found), "BoxTarget's box", device)
        labels = _per_image(self.label, rows, len(found), "BoxTarget's label", device)
        values: list[Tensor] = []
        for det, box, label in zip(found, boxes, labels, strict=True):
            iou = box_iou(det.boxes, box.to(det.boxes.dtype))
            fits = (det.labels.to(device) == label) & (iou.detach() >= self.iou_threshold)
            if not bool(fits.any()):
                values.append(det.scores.sum() * 0)  # no match: 0, still on the graph
                continue
            best = int(torch.where(fits, iou.detach(), -1.0).argmax())
            value = det.scores[best]
            values.append(value + iou[best].to(value.dtype) if self.add_iou else value)
        return torch.stack(values)

    def __repr__(self) -> str:
        return (
            f"BoxTarget({self.box.tolist()}, {self.label.tolist()}, "
            f"iou_threshold={self.iou_threshold}, output={self.output!r})"
        )


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
