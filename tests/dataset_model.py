"""Small seeded classifiers for the command-line tests: ``tests.dataset_model:small_cnn``,
and ``tests.dataset_model:cifar_cnn``, which takes 32x32 images only.

With ``RSIGRADCAM_TEST_DELAY`` set (seconds), every forward pass sleeps that long, so that
a run can be killed half-way; the numbers do not change.
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn


class SmallNet(nn.Module):
    """Strided convolutions, cheap on 224x224 inputs; the layer ``conv`` is 16x28x28."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.ReLU())
        self.conv = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delay = float(os.environ.get("RSIGRADCAM_TEST_DELAY", "0"))
        if delay:
            time.sleep(delay)
        x = self.act(self.conv(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def small_cnn(seed: int = 0) -> nn.Module:
    """The model, with weights seeded so that every process builds the same one."""
    generator = torch.Generator().manual_seed(seed)
    model = SmallNet()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model.eval()


def other_small_cnn() -> nn.Module:
    """The same network with other weights: ``tests.dataset_model:other_small_cnn``."""
    return small_cnn(seed=1)


class Cifar(nn.Module):
    """A CIFAR-style classifier whose flatten + linear head takes 32x32 images only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.AvgPool2d(4)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.act(self.conv(x))), 1))


def cifar_cnn() -> nn.Module:
    """The model with seeded weights: ``tests.dataset_model:cifar_cnn``."""
    generator = torch.Generator().manual_seed(0)
    model = Cifar()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model.eval()
