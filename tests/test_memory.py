"""batch_size=None keeps a chunk within memory_budget_mb (measured, with slack)."""

from __future__ import annotations

import sys

import pytest
import torch

from rsigradcam import RSIGradCAM
from rsigradcam.bench import peak_memory
from rsigradcam.capture import LayerCapture
from rsigradcam.memory import chunk_size, point_bytes
from rsigradcam.models import efficientnet_lite0

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="peak RSS is read from /proc"
)


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


@linux_only
@pytest.mark.filterwarnings("ignore:.*zero everywhere:RuntimeWarning")
def test_sixteen_images_at_m50_stay_within_the_budget():
    torch.manual_seed(0)
    model = efficientnet_lite0(pretrained=False)
    images = torch.randn(16, 3, 64, 64)
    budget_mb = 48
    cam = RSIGradCAM(model, "blocks.10", steps=50, memory_budget_mb=budget_mb)
    cam(images[:1])  # warm-up: allocator pools, probe cache
    with peak_memory(torch.device("cpu")) as peak:
        exp = cam(images)
    assert exp.heatmap.shape == (16, 64, 64)
    # The budget covers the chunk's working memory; allow for the allocator's slack and
    # the results kept for 16 images.
    assert peak.bytes / 2**20 < 1.5 * budget_mb, peak.bytes / 2**20
