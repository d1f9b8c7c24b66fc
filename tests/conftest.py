from __future__ import annotations

import os
from collections.abc import Iterator

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


@pytest.fixture(autouse=True)
def _threads_as_chosen(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Commands run with the threads torch has, as if chosen, and leave them as they were.

    A command sets torch's threads for its process and prints a note on a busy machine
    unless the threads were chosen: the tests that count stderr lines must not depend on
    the machine's load, nor a test on the threads an earlier command set.
    """
    before = torch.get_num_threads()
    if "OMP_NUM_THREADS" not in os.environ:
        monkeypatch.setenv("OMP_NUM_THREADS", str(before))
    yield
    torch.set_num_threads(before)
