"""Small seeded models for arrays on the command line: ``--model tests.array_models:NAME``.

``volume`` takes (N, 1, D, H, W) volumes, ``signal`` (N, 2, L) signals, both to 3 classes;
``multilabel`` (N, 3, H, W) images to 4 independent labels; ``segmenter`` (N, 3, H, W)
images to (N, 2, H/2, W/2) per-position class scores.
"""

from __future__ import annotations

import torch
from torch import nn


def volume() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 3),
    )


def signal() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(2, 6, 5, padding=2), nn.ReLU(),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(6, 3),
    )


def multilabel() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )


def segmenter() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1),
    )
