"""Any output, any scalar score: sigmoid outputs, raw-output callables, ready-made targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from rsigradcam import (
    BoxTarget,
    ClassTarget,
    GradCAM,
    RegressionTarget,
    RSIGradCAM,
    SegmentationTarget,
)
from rsigradcam.baselines import ZerosBaseline
from rsigradcam.methods.path_scores import path_scores
from tests.helpers import Detector, DictSegmenter, make_case, make_cnn
from tests.reference.loop import compare_with_reference

F64 = torch.float64


def test_sigmoid_output_matches_the_reference_loop():
    model, images = make_case(3, n=2)
    exp = RSIGradCAM(
        model, "conv", output="sigmoid", steps=8, baseline="zeros", dtype=F64
    )(images, [1, 3])
    baselines = ZerosBaseline()(images)
    least = compare_with_reference(exp, model, "conv", images, baselines, 8, output="sigmoid")
    assert least >= 0.9999
    by_target = RSIGradCAM(model, "conv", steps=8, baseline="zeros", dtype=F64)(
        images, ClassTarget([1, 3], output="sigmoid")
    )
    torch.testing.assert_close(by_target.attributions, exp.attributions)
    with torch.no_grad():
        want = torch.sigmoid(model(images))[torch.arange(2), torch.tensor([1, 3])]
    torch.testing.assert_close(exp.scores.float(), want)


def test_regression_target_matches_the_reference_loop():
    torch.manual_seed(1)
    model, images = make_cnn(1, classes=2), torch.randn(2, 3, 12, 12)
    exp = RSIGradCAM(model, "conv", steps=8, baseline="zeros", dtype=F64)(
        images, RegressionTarget(1)
    )
    assert exp.targets.tolist() == [-1, -1]
    least = compare_with_reference(
        exp, model, "conv", images, ZerosBaseline()(images), 8,
        score=lambda n: lambda out: out[0, 1],
    )  # fmt: skip
    assert least >= 0.9999
    assert torch.isfinite(exp.completeness_error).all()


def test_a_callable_gets_the_raw_output_unchanged():
    torch.manual_seed(2)
    model, images = DictSegmenter(), torch.randn(2, 3, 8, 8)
    seen: list[object] = []

    def score(output: dict[str, Tensor]) -> Tensor:
        seen.append(output)
        return output["maps"][:, 2].flatten(1).mean(dim=1)

    for method in (GradCAM(model, "body.0"), RSIGradCAM(model, "body.0", steps=4)):
        seen.clear()
        exp = method(images, score)
        assert seen and all(isinstance(o, dict) and set(o) == {"maps", "features"} for o in seen)
        assert exp.heatmap.shape == (2, 8, 8)
    with torch.no_grad():
        want = model(images)["maps"][:, 2].flatten(1).mean(dim=1)
    torch.testing.assert_close(exp.scores, want)


def test_a_score_that_is_not_one_value_per_row_names_its_shape():
    torch.manual_seed(3)
    model, images = DictSegmenter(), torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"one score per row .* shape \(2,\), got shape \(2, 3\)"):
        GradCAM(model, "body.0")(images, lambda o: o["maps"].mean(dim=(2, 3)))
    with pytest.raises(ValueError, match=r"shape \(6,\), got shape \(\)"):  # 2 images x 3 points
        RSIGradCAM(model, "body.0", steps=2)(images, lambda o: o["maps"].sum())


def test_a_class_index_on_a_segmentation_output_says_what_to_pass():
    torch.manual_seed(4)
    with pytest.raises(ValueError, match=r"needs \(N, classes\) scores.*SegmentationTarget"):
        RSIGradCAM(nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU()), "0", steps=2)(
            torch.randn(1, 3, 8, 8), 1
        )


def test_segmentation_target_sums_the_class_over_the_mask():
    torch.manual_seed(5)
    model, images = DictSegmenter(), torch.randn(2, 3, 8, 8)
    mask = np.zeros((8, 8), dtype=bool)
    mask[2:6, 1:4] = True
    target = SegmentationTarget(1, mask)
    with torch.no_grad():
        maps = model(images)["maps"]
    # A dict without 'logits' holds no scores the target can find: a model returning the
    # map tensor works.
    plain = nn.Sequential(model.body, model.head)
    with torch.no_grad():
        torch.testing.assert_close(target(plain(images)), maps[:, 1, 2:6, 1:4].sum(dim=(1, 2)))
    exp = RSIGradCAM(plain, "0", steps=4)(images, target)
    torch.testing.assert_close(exp.scores, maps[:, 1, 2:6, 1:4].sum(dim=(1, 2)))
    # One mask and one class per image; with two noise baselines per image each row still
    # reads its own image's mask.
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, :4], masks[1, 4:] = True, True
    per_image = SegmentationTarget([0, 2], masks, output="softmax")
    exp = RSIGradCAM(plain, "0", steps=4, baseline="noise", n_samples=2)(images, per_image)
    probs = torch.softmax(maps, dim=1)
    want = torch.stack([probs[0, 0, :4].sum(), probs[1, 2, 4:].sum()])
    torch.testing.assert_close(exp.scores, want)


def test_a_mask_at_the_input_size_is_resized_and_a_mask_of_no_size_is_refused():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 2, stride=2))
    images = torch.randn(1, 3, 8, 8)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:4, :4] = True  # the top-left quarter: the output's top-left 2 x 2
    exp = RSIGradCAM(model, "0", steps=2)(images, SegmentationTarget(1, mask))
    with torch.no_grad():
        torch.testing.assert_close(exp.scores, model(images)[:, 1, :2, :2].sum(dim=(1, 2)))
    with pytest.raises(ValueError, match=r"mask of shape \(5, 5\) fits neither the input "
                                         r"\(8, 8\) nor the output \(4, 4\)"):
        RSIGradCAM(model, "0", steps=2)(images, SegmentationTarget(1, torch.ones(5, 5)))


def test_box_target_on_torchvision_style_detections():
    torch.manual_seed(7)
    model, images = Detector(), torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        scores = torch.stack([d["scores"] for d in model(images)])
    exp = RSIGradCAM(model, "body.0", steps=4)(images, BoxTarget([5.0, 5.0, 12.0, 12.0], 2))
    torch.testing.assert_close(exp.scores, scores[:, 1])
    # IoU 0.5 with the label's only box: below the threshold 0.6 nothing matches, score 0.
    low = BoxTarget([0.0, 0.0, 3.0, 6.0], 1, iou_threshold=0.6)
    with pytest.warns(RuntimeWarning):
        exp = RSIGradCAM(model, "body.0", steps=2)(images, low)
    assert exp.scores.tolist() == [0.0, 0.0]
    both = BoxTarget([[0.0, 0.0, 6.0, 6.0], [4.0, 4.0, 12.0, 12.0]], [1, 2], add_iou=True)
    exp = GradCAM(model, "body.0")(images, both)
    torch.testing.assert_close(exp.scores, torch.stack([scores[0, 0], scores[1, 1]]) + 1)


def test_box_target_on_an_output_without_boxes_says_so():
    model, images = make_case(8, n=1)
    with pytest.raises(ValueError, match=r"BoxTarget reads predicted boxes, but the model "
                                         r"returned a 2-D tensor of shape \(3, 5\) without"):
        RSIGradCAM(model, "conv", steps=2)(images, BoxTarget([0, 0, 4, 4], 1))


def test_path_scores_reads_targets_from_the_raw_output():
    torch.manual_seed(9)
    model, images = DictSegmenter(), torch.randn(1, 3, 8, 8)
    plain = nn.Sequential(model.body, model.head)
    target = SegmentationTarget(0, torch.ones(8, 8, dtype=torch.bool))
    exp = RSIGradCAM(plain, "0", steps=4, baseline="zeros")(images, target)
    along = path_scores(plain, images, exp.partition, target, baseline="zeros")
    torch.testing.assert_close(along[:, -1], exp.scores)
    torch.testing.assert_close(along[:, 0], exp.baseline_scores)


def test_targets_refuse_bad_parameters_in_one_line():
    with pytest.raises(ValueError, match="output must be 'softmax', 'logits' or 'sigmoid'"):
        ClassTarget(1, output="probability")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="BoxTarget's box must be"):
        BoxTarget([0, 0, 1], 1)
    with pytest.raises(ValueError, match="non-negative"):
        RegressionTarget(-1)
    with pytest.raises(ValueError, match=r"RegressionTarget's unit 4 is out of range"):
        RegressionTarget(4)(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"ClassTarget's category has 3 values \(one per image\)"):
        ClassTarget([0, 1, 2])(torch.zeros(2, 3))


def test_a_callable_gets_a_tuple_output_unchanged_and_an_int_reads_its_first_item():
    torch.manual_seed(10)
    body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))

    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.fc = body, nn.Linear(4, 3)

        def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
            features = self.body(x).flatten(1)
            return self.fc(features), features

    model, images = Pair(), torch.randn(2, 3, 8, 8)
    seen: list[object] = []

    def score(output: tuple[Tensor, Tensor]) -> Tensor:
        seen.append(output)
        return output[1][:, 0]

    exp = GradCAM(model, "body.0")(images, score)
    assert all(isinstance(o, tuple) and len(o) == 2 for o in seen)
    with torch.no_grad():
        logits, features = model(images)
    torch.testing.assert_close(exp.scores, features[:, 0])
    exp = GradCAM(model, "body.0", output="sigmoid")(images, 2)
    torch.testing.assert_close(exp.scores, torch.sigmoid(logits[:, 2]))
