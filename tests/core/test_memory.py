"""batch_size=None keeps a chunk within memory_budget_mb (measured, with slack)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from rsigradcam.core.capture import LayerCapture
from rsigradcam.core.memory import chunk_size, point_bytes
from rsigradcam.models import efficientnet_lite0

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="peak RSS is read from /proc"
)

# Run in a fresh process, so that the allocator's state left by other tests cannot blur
# the resident-set measurement.
_MEASURE = """
import json, sys, warnings
import torch
from rsigradcam import RSIGradCAM
from rsigradcam.app.bench import peak_memory
from rsigradcam.models import efficientnet_lite0
warnings.simplefilter("ignore")
torch.manual_seed(0)
budget = float(sys.argv[1])
model = efficientnet_lite0(pretrained=False)
images = torch.randn(16, 3, 64, 64)
cam = RSIGradCAM(model, "blocks.10", steps=50, memory_budget_mb=budget)
cam(images[:1])  # warm-up: allocator pools, probe cache
with peak_memory(torch.device("cpu")) as peak:
    exp = cam(images)
print(json.dumps({"peak_mb": peak.bytes / 2**20, "shape": list(exp.heatmap.shape)}))
"""


def test_chunk_size_follows_the_budget():
    model = efficientnet_lite0(pretrained=False)
    x = torch.randn(1, 3, 96, 96)
    with LayerCapture(model) as capture:
        records = capture.probe(x)
    per_point = point_bytes(records, ["blocks.10"], x.numel() * 4)
    assert per_point > 0
    assert chunk_size(per_point, 10 * per_point, 816) == 10
    assert chunk_size(per_point, per_point // 2, 816) == 1
    assert chunk_size(per_point, 10**12, 816) == 816
    largest = max(r.nbytes for r in records if r.is_leaf)
    assert chunk_size(per_point, 10**12, 816, largest) < 816  # the CPU cache cap


@linux_only
@pytest.mark.parametrize("budget_mb", [48, 160])
@pytest.mark.slow
def test_sixteen_images_at_m50_stay_within_the_budget(budget_mb):
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(budget_mb)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["shape"] == [16, 64, 64]
    # The budget covers a chunk's working memory; allow for the allocator's slack and the
    # results kept for 16 images.
    assert measured["peak_mb"] < 1.25 * budget_mb, measured
