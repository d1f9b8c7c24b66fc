"""Segmentation and detection models of Hugging Face transformers, explained with targets.

SegFormer (segmentation target), DETR with a Hugging Face ResNet backbone and YOLOS (box
target) against the slow reference loop in float64; completeness and ``steps="auto"`` on
these scores where the layer cuts the graph; the pytorch-grad-cam front-end's targets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from rsigradcam import BoxTarget, RSIGradCAM, SegmentationTarget
from rsigradcam.baselines import ZerosBaseline
from rsigradcam.core.targets import Rows
from rsigradcam.integrations.pytorch_grad_cam import (
    FasterRCNNBoxScoreTarget,
    SemanticSegmentationTarget,
)
from rsigradcam.integrations.pytorch_grad_cam import RSIGradCAM as FrontEndRSIGradCAM
from tests.helpers import Detector
from tests.integrations.hf_task_models import (
    DETR_LAYER,
    DETR_SIZE,
    SEGFORMER_LAYER,
    SEGFORMER_SIZE,
    YOLOS_LAYER,
    YOLOS_SIZE,
    detr,
    segformer,
    yolos,
    yolos_grid,
)
from tests.reference.loop import compare_with_reference, correlation

F64 = torch.float64
#: Random weights: a map may be zero everywhere, which these tests allow.
pytestmark = pytest.mark.filterwarnings("ignore:.* map at layer .* is zero everywhere")


def _segformer_case() -> tuple[nn.Module, Tensor, Tensor]:
    torch.manual_seed(10)
    images = torch.randn(2, 3, SEGFORMER_SIZE, SEGFORMER_SIZE)
    mask = torch.zeros(SEGFORMER_SIZE, SEGFORMER_SIZE, dtype=torch.bool)
    mask[16:48, 8:40] = True
    return segformer(), images, mask


def _best_boxes(model: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    """Each image's most confident detection at the input: (N, 4) pixel boxes, (N,) labels."""
    with torch.no_grad():
        out = model(images)
    probs = out.logits.softmax(dim=-1)[..., :-1]
    best, labels = probs.max(dim=-1)
    query = best.argmax(dim=1)
    rows = torch.arange(images.shape[0])
    cx, cy, w, h = (out.pred_boxes[rows, query] * images.shape[-1]).unbind(-1)
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    return boxes, labels[rows, query]


@pytest.mark.slow
def test_segformer_segmentation_target_matches_the_reference_loop():
    model, images, mask = _segformer_case()
    exp = RSIGradCAM(model, SEGFORMER_LAYER, steps=6, baseline="zeros", dtype=F64)(
        images, SegmentationTarget(1, mask)
    )
    small = mask[2::4, 2::4]  # the input-size mask resized (nearest) to the 16 x 16 logits

    def score(n: int) -> Any:
        return lambda out: (out.logits[0, 1] * small).sum()

    least = compare_with_reference(
        exp, model, SEGFORMER_LAYER, images, ZerosBaseline()(images), 6, score=score
    )
    assert least >= 0.9999


@pytest.mark.slow
@pytest.mark.parametrize(
    ("factory", "layer", "size", "reshape"),
    [(detr, DETR_LAYER, DETR_SIZE, None), (yolos, YOLOS_LAYER, YOLOS_SIZE, yolos_grid)],
    ids=["detr", "yolos"],
)
def test_detector_box_target_matches_the_reference_loop(factory, layer, size, reshape):
    model = factory()
    torch.manual_seed(11)
    images = torch.randn(2, 3, size, size)
    boxes, labels = _best_boxes(model, images)
    target = BoxTarget(boxes, labels)  # one box and label per image
    exp = RSIGradCAM(
        model, layer, steps=6, baseline="zeros", dtype=F64, reshape_transform=reshape
    )(images, target)
    with torch.no_grad():
        probs = model(images).logits.softmax(dim=-1)[..., :-1]
    torch.testing.assert_close(exp.scores.float(), probs.amax(dim=(1, 2)))

    def score(n: int) -> Any:
        return lambda out: target.score(out, Rows(torch.tensor([n]), (size, size)))

    least = compare_with_reference(
        exp, model, layer, images, ZerosBaseline()(images), 6, score=score, reshape=reshape
    )
    assert least >= 0.9999


@pytest.mark.slow
def test_completeness_and_auto_steps_hold_for_a_segmentation_score():
    # The black baseline: at an all-zero input the zero-initialised patch embeddings meet
    # LayerNorm's eps, and the activations jump within the first 1e-3 of the path.
    model, images, mask = _segformer_case()
    target = SegmentationTarget(1, mask)
    errors = [
        RSIGradCAM(model, SEGFORMER_LAYER, steps=m)(images, target).completeness_error.abs().max()
        for m in (4, 64)
    ]
    assert errors[1] < errors[0] / 4 and errors[1] < 0.02
    auto = RSIGradCAM(model, SEGFORMER_LAYER, steps="auto")(images, target)
    fine = RSIGradCAM(model, SEGFORMER_LAYER, steps=256)(images, target)
    assert auto.completeness_error.abs().max() < 5e-3 and auto.n_evaluations < 100
    assert min(correlation(auto.heatmap[n], fine.heatmap[n]) for n in range(2)) >= 0.999


class _TheirSemanticSegmentationTarget:
    """pytorch-grad-cam's SemanticSegmentationTarget: one image's (K, H, W) output."""

    def __init__(self, category: int, mask: np.ndarray) -> None:
        self.category, self.mask = category, torch.from_numpy(mask)

    def __call__(self, model_output: Tensor) -> Tensor:
        return (model_output[self.category, :, :] * self.mask).sum()


class _TheirFasterRCNNBoxScoreTarget:
    """pytorch-grad-cam's FasterRCNNBoxScoreTarget: one image's dict of detections."""

    def __init__(self, labels: list[int], bounding_boxes: np.ndarray, iou_threshold=0.5):
        self.labels, self.bounding_boxes = labels, bounding_boxes
        self.iou_threshold = iou_threshold

    def __call__(self, model_outputs: dict[str, Tensor]) -> Tensor:
        raise AssertionError("recognised by name, never called")


for _kind in (_TheirSemanticSegmentationTarget, _TheirFasterRCNNBoxScoreTarget):
    _kind.__module__ = "pytorch_grad_cam.utils.model_targets"
    _kind.__name__ = _kind.__qualname__ = _kind.__name__.removeprefix("_Their")


def test_front_end_takes_segmentation_targets_ours_and_theirs():
    model, images, mask = _segformer_case()
    small = mask[2::4, 2::4].numpy().astype(np.float32)  # theirs: at the output's size
    want = RSIGradCAM(model, SEGFORMER_LAYER, steps=4, baseline="zeros")(
        images, SegmentationTarget(1, mask)
    ).heatmap.numpy()
    with FrontEndRSIGradCAM(
        model=model, target_layers=[model.decode_head.linear_fuse], steps=4, baseline="zeros"
    ) as cam:
        theirs = cam(input_tensor=images, targets=[_TheirSemanticSegmentationTarget(1, small)] * 2)
        ours = cam(input_tensor=images, targets=[SemanticSegmentationTarget(1, mask)] * 2)
    np.testing.assert_allclose(theirs, want, atol=1e-5)
    np.testing.assert_allclose(ours, want, atol=1e-5)


def test_front_end_takes_box_targets_ours_and_theirs():
    torch.manual_seed(12)
    model, images = Detector(), torch.randn(2, 3, 12, 12)
    box = np.array([[4.0, 4.0, 12.0, 12.0]])
    want = RSIGradCAM(model, "body.0", steps=4, baseline="zeros")(
        images, BoxTarget(box[0], 2)
    ).heatmap.numpy()
    with FrontEndRSIGradCAM(
        model=model, target_layers=["body.0"], steps=4, baseline="zeros"
    ) as cam:
        theirs = cam(input_tensor=images, targets=[_TheirFasterRCNNBoxScoreTarget([2], box)] * 2)
        ours = cam(input_tensor=images, targets=[FasterRCNNBoxScoreTarget([2], box)] * 2)
    np.testing.assert_allclose(theirs, want, atol=1e-5)
    np.testing.assert_allclose(ours, want, atol=1e-5)


def test_which_layer_names_the_layers_explained_here():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "which-layer.md").read_text("utf-8")
    section = doc[doc.index("## Segmentation and detection") :]
    for layer in (SEGFORMER_LAYER, DETR_LAYER, "vit.encoder.layer.N"):
        assert f"`{layer}`" in section
    assert YOLOS_LAYER.startswith("vit.encoder.layer.")
