from __future__ import annotations

import pytest
import torch

from tests.helpers import SmallCNN, make_cnn


@pytest.fixture
def cnn() -> SmallCNN:
    return make_cnn()


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(3, 3, 12, 12)
