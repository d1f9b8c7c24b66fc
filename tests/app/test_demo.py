"""The demo runs on the embedded model and writes real, decodable outputs."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from rsigradcam.app.demo import run_demo
from rsigradcam.app.samples import DEMO_LAYERS


def test_demo_writes_grids_overlays_heatmaps_and_summaries(tmp_path):
    empty = tmp_path / "no-samples"
    empty.mkdir()
    results = run_demo(tmp_path / "out", samples=empty, steps=3, progress=lambda line: None)
    assert [r.name for r in results] == ["chelsea", "coffee", "camera"]
    assert [r.label for r in results] == ["Egyptian cat", "espresso", "tripod"]
    for r in results:
        grid = np.asarray(Image.open(r.grid))
        assert grid.ndim == 3 and grid.shape[0] > 300 and grid.std() > 10
        summary = json.loads(r.summary.read_text())
        assert summary["explained_class"]["class"] == r.label
        assert len(summary["top5"]) == 5
        assert summary["grid"] == r.grid.name
        rsi = {e["layer"]: e for e in summary["explanations"] if e["method"] == "rsi"}
        gradcam = {e["layer"]: e for e in summary["explanations"] if e["method"] == "gradcam"}
        assert list(rsi) == list(gradcam) == list(DEMO_LAYERS)
        for layer in DEMO_LAYERS:
            heatmap = np.load(tmp_path / "out" / f"{r.name}_{layer}_rsi.npy")
            assert heatmap.shape == (224, 224)
            assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
            assert np.isfinite(rsi[layer]["completeness_error"])
            assert rsi[layer]["completeness_error"] == r.completeness_error[layer]
            assert gradcam[layer]["completeness_error"] is None
            overlay = np.asarray(Image.open(tmp_path / "out" / f"{r.name}_{layer}_rsi.png"))
            assert overlay.shape == (224, 224, 3) and overlay.std() > 5
