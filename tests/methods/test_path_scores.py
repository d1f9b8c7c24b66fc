from __future__ import annotations

import pytest
import torch

from rsigradcam import IntegratedGradients, RSIGradCAM
from rsigradcam.methods import path_scores
from tests.helpers import assert_same_state, make_case, model_state


def test_ends_are_the_explanations_scores_and_the_middle_is_the_straight_path() -> None:
    model, images = make_case(0)
    exp = RSIGradCAM(model, "conv", steps=6, normalize=None)(images)
    assert not isinstance(exp, dict)
    y = path_scores(model, images, exp.partition, exp.targets, normalize=None)
    assert y.shape == (3, 7)
    torch.testing.assert_close(y[:, 0], exp.baseline_scores)
    torch.testing.assert_close(y[:, -1], exp.scores)
    # t = 0.5 by hand: the midpoint of the black (zero) baseline and the image.
    with torch.no_grad():
        probs = torch.softmax(model(0.5 * images), dim=1)
    expected = probs.gather(1, exp.targets.view(-1, 1)).squeeze(1)
    torch.testing.assert_close(y[:, 3], expected)


def test_adaptive_rows_logits_and_another_baseline() -> None:
    model, images = make_case(1, n=2)
    exp = RSIGradCAM(model, "conv", steps="auto", output="logits", baseline="blur")(images)
    assert not isinstance(exp, dict)
    assert exp.partition.dim() == 2  # one partition per image, padded with t = 1
    y = path_scores(model, images, exp.partition, exp.targets, output="logits", baseline="blur")
    torch.testing.assert_close(y[:, 0], exp.baseline_scores)
    torch.testing.assert_close(y[:, -1], exp.scores)


def test_ig_partition_top1_default_callable_target_and_batches() -> None:
    model, images = make_case(2, n=2)
    exp = IntegratedGradients(model, steps=5)(images)
    assert not isinstance(exp, dict)
    whole = path_scores(model, images, exp.partition, batch_size=100)
    torch.testing.assert_close(whole[:, -1], exp.scores)  # None: the top-1 class, like exp
    chunked = path_scores(model, images, exp.partition, exp.targets, batch_size=1)
    torch.testing.assert_close(chunked, whole)
    by_hand = path_scores(
        model, images, [0.0, 1.0], lambda out: out[:, 0], output="logits"
    )
    with torch.no_grad():
        torch.testing.assert_close(by_hand[:, 1], model(images)[:, 0])


def test_model_is_borrowed_and_given_back() -> None:
    model, images = make_case(3)
    model.train()
    before = model_state(model)
    path_scores(model, images, torch.linspace(0, 1, 4))
    assert_same_state(before, model_state(model))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"partition": [0.0, 0.7, 0.5, 1.0]}, "strictly increasing"),
        ({"partition": torch.zeros(2, 3, 1)}, r"partition must be \(P,\)"),
        ({"partition": torch.tensor([[0.0, 2.0], [0.0, 1.0], [0.0, 1.0]])}, "in \\[0, 1\\]"),
        ({"targets": 9}, "out of range"),
        ({"batch_size": 0}, "batch_size must be a positive int"),
        ({"baseline": ["black", "blur"]}, "one baseline, not a list of 2"),
        ({"output": "probs"}, "output must be"),
    ],
)
def test_bad_arguments_are_one_clear_line(kwargs: dict[str, object], message: str) -> None:
    model, images = make_case(0)
    arguments: dict[str, object] = {"partition": [0.0, 0.5, 1.0], **kwargs}
    partition = arguments.pop("partition")
    with pytest.raises(ValueError, match=message):
        path_scores(model, images, partition, **arguments)  # type: ignore[arg-type]
