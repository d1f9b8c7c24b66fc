from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn


class SmallCNN(nn.Module):
    """A small classifier with named layers, like the ones users explain."""

    def __init__(self, classes: int = 5, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            act(),
            nn.Conv2d(6, 8, 3, stride=2, padding=1),
            nn.BatchNorm2d(8),
            act(),
        )
        self.conv = nn.Conv2d(8, 12, 3, padding=1)
        self.act = act()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv(self.features(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def make_cnn(seed: int = 0, dtype: torch.dtype = torch.float32, **kwargs: object) -> SmallCNN:
    torch.manual_seed(seed)
    model = SmallCNN(**kwargs)  # type: ignore[arg-type]
    # Non-trivial BatchNorm statistics, so eval mode matters.
    bn = model.features[3]
    bn.running_mean.uniform_(-0.2, 0.2)
    bn.running_var.uniform_(0.5, 1.5)
    return model.to(dtype).eval()


@pytest.fixture
def cnn() -> SmallCNN:
    return make_cnn()


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(3, 3, 12, 12)


def model_state(model: nn.Module) -> dict[str, object]:
    """Everything a call could leave changed on a model."""
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "hooks": [
            (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for m in model.modules()
        ],
        "params": [p.detach().clone() for p in model.parameters()],
        "buffers": [b.detach().clone() for b in model.buffers()],
    }


def assert_same_state(before: dict[str, object], after: dict[str, object]) -> None:
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["hooks"] == after["hooks"]
    for a, b in zip(before["grads"], after["grads"], strict=True):  # type: ignore[call-overload]
        assert (a is None and b is None) or torch.equal(a, b)
    for key in ("params", "buffers"):
        for a, b in zip(before[key], after[key], strict=True):  # type: ignore[call-overload]
            assert torch.equal(a, b)


def make_case(seed: int, n: int = 3, size: int = 12) -> tuple[SmallCNN, torch.Tensor]:
    """A model and images whose maps are not all zero (checked for these seeds)."""
    model = make_cnn(seed=seed)
    torch.manual_seed(seed + 1)
    return model, torch.randn(n, 3, size, size)


def load_module(path: Path, name: str) -> ModuleType:
    """The Python file ``path`` as a module named ``name`` (not added to ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_benchmark(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` as a module (benchmarks are not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    return load_module(path, f"benchmark_{name}")
