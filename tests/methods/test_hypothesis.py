"""Property-based tests of the core: random small CNNs, shapes, batches, targets, partitions."""

from __future__ import annotations

import warnings

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from rsigradcam import GradCAM, RSIGradCAM
from tests.helpers import assert_same_state, model_state

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


class RandomCNN(nn.Module):
    def __init__(self, width: int, kernel: int, stride: int, act: str, classes: int) -> None:
        super().__init__()
        make = nn.ReLU if act == "relu" else nn.SiLU
        self.stem = nn.Sequential(nn.Conv2d(3, width, kernel, padding=kernel // 2), make())
        self.block = nn.Sequential(
            nn.Conv2d(width, width + 2, 3, stride=stride, padding=1), nn.BatchNorm2d(width + 2)
        )
        self.act = make()
        self.fc = nn.Linear(width + 2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.block(self.stem(x))).mean(dim=(2, 3)))


@st.composite
def cases(draw: st.DrawFn):
    seed = draw(st.integers(0, 10_000))
    classes = draw(st.integers(2, 6))
    torch.manual_seed(seed)
    model = RandomCNN(
        draw(st.integers(2, 5)),
        draw(st.sampled_from([1, 3])),
        draw(st.sampled_from([1, 2])),
        draw(st.sampled_from(["relu", "silu"])),
        classes,
    ).double()
    bn = model.block[1]
    bn.running_mean.uniform_(-0.3, 0.3)
    bn.running_var.uniform_(0.5, 1.5)
    model.eval()
    if draw(st.booleans()):
        model.train()  # a model left in train mode must give eval results and stay in it
    n = draw(st.integers(1, 4))
    size = draw(st.integers(6, 13))
    images = torch.randn(n, 3, size, size, dtype=torch.float64) * draw(st.floats(0.1, 3.0))
    targets = draw(
        st.one_of(st.none(), st.lists(st.integers(0, classes - 1), min_size=n, max_size=n))
    )
    inner = draw(st.lists(st.floats(0.01, 0.99), min_size=0, max_size=6, unique=True))
    partition = torch.tensor([0.0, *sorted(inner), 1.0], dtype=torch.float64)
    unique = torch.cat([partition[:1], partition[1:][partition[1:] > partition[:-1]]])
    layer = draw(st.sampled_from(["stem", "block", ["stem", "block"]]))
    chunk = draw(st.integers(1, 9))
    return model, images, targets, unique, layer, chunk


def _maps(result):
    return result if isinstance(result, dict) else {"": result}


def _quiet(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-zero maps are allowed here
        return call()


@SETTINGS
@given(cases())
def test_batch_chunks_range_and_state(case):
    model, images, targets, partition, layer, chunk = case
    before = model_state(model)
    full = _quiet(
        lambda: RSIGradCAM(model, layer, partition=partition, batch_size=chunk)(images, targets)
    )
    assert_same_state(before, model_state(model))
    auto = _quiet(
        lambda: RSIGradCAM(model, layer, partition=partition, batch_size=None)(images, targets)
    )
    for name, exp in _maps(full).items():
        assert torch.isfinite(exp.heatmap).all()
        assert exp.heatmap.min() >= 0 and exp.heatmap.max() <= 1
        other = _maps(auto)[name]
        assert torch.allclose(exp.attributions, other.attributions, rtol=1e-9, atol=1e-12)
    for i in range(images.shape[0]):
        target = None if targets is None else targets[i]
        single = _quiet(
            lambda i=i, target=target: RSIGradCAM(
                model, layer, partition=partition, batch_size=chunk
            )(images[i : i + 1], target)
        )
        for name, exp in _maps(single).items():
            batched = _maps(full)[name]
            assert int(exp.targets[0]) == int(batched.targets[i])
            assert torch.allclose(
                exp.attributions[0], batched.attributions[i], rtol=1e-9, atol=1e-12
            )
            assert torch.allclose(exp.heatmap[0], batched.heatmap[i], atol=1e-6)
    assert_same_state(before, model_state(model))


@SETTINGS
@given(cases())
def test_gradcam_batch_equals_single_and_state(case):
    model, images, targets, _, layer, chunk = case
    before = model_state(model)
    full = _quiet(lambda: GradCAM(model, layer, batch_size=chunk)(images, targets))
    first = _quiet(
        lambda: GradCAM(model, layer)(images[:1], None if targets is None else targets[0])
    )
    for name, exp in _maps(first).items():
        assert torch.allclose(exp.weights[0], _maps(full)[name].weights[0], rtol=1e-9, atol=1e-12)
        assert exp.heatmap.min() >= 0 and exp.heatmap.max() <= 1
    assert_same_state(before, model_state(model))
