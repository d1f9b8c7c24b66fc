"""The segmentation, detection, multi-label and regression examples of
docs/guides/volumes-and-tasks.md run as written.

Each block runs in one namespace that holds the models and inputs it names, built small
(random weights, nothing downloaded): ``segformer`` and ``x`` at 64 x 64, ``detr`` at
128 x 128, ``yolos`` and ``y`` at 32 x 32, ``multilabel`` and ``regressor`` CNNs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.helpers import make_cnn
from tests.integrations.hf_task_models import (
    DETR_SIZE,
    SEGFORMER_SIZE,
    YOLOS_SIZE,
    detr,
    segformer,
    yolos,
)

PAGE = Path(__file__).resolve().parents[1] / "docs" / "guides" / "volumes-and-tasks.md"
SECTION = "## Segmentation, detection, multi-label and regression"
#: Random weights: a map may be zero everywhere.
pytestmark = pytest.mark.filterwarnings("ignore:.* map at layer .* is zero everywhere")


def _blocks() -> list[tuple[int, str]]:
    """The section's Python blocks and the page's line each starts at."""
    text = PAGE.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else len(text)]
    return [
        (text.count("\n", 0, start + m.start(1)), m[1])
        for m in re.finditer(r"```python\n(.*?)```", section, re.S)
    ]


@pytest.mark.slow
def test_the_task_examples_run():
    blocks = _blocks()
    assert len(blocks) == 4
    torch.manual_seed(0)
    images = torch.randn(2, 3, 12, 12)
    namespace: dict[str, Any] = {
        "segformer": segformer(),
        "x": torch.randn(2, 3, SEGFORMER_SIZE, SEGFORMER_SIZE),
        "multilabel": make_cnn(1, classes=4),
        "regressor": make_cnn(2, classes=1),
        "images": images,
    }
    results = []
    for n, (line, code) in enumerate(blocks):
        if n == 1:  # the detection block: DETR on x, YOLOS on y
            namespace.update(
                detr=detr(), x=torch.randn(2, 3, DETR_SIZE, DETR_SIZE),
                yolos=yolos(), y=torch.randn(2, 3, YOLOS_SIZE, YOLOS_SIZE),
            )  # fmt: skip
        # Blank lines pad the code so that a traceback names the line in the page.
        exec(compile("\n" * line + code, str(PAGE), "exec"), namespace)
        results.append(namespace["exp"])
    assert all(exp.heatmap.shape[0] == 2 for exp in results)
    assert torch.isfinite(results[0].completeness_error).all()
    with torch.no_grad():
        want = torch.sigmoid(namespace["multilabel"](images))[[0, 1], [3, 0]]
    torch.testing.assert_close(results[2].scores, want)
    torch.testing.assert_close(namespace["grad"].scores, want)
    assert results[3].targets.tolist() == [-1, -1]
