"""``explain-dataset --compile`` and ``--fold-batchnorm``: the same maps, to float rounding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from rsigradcam.app.cli import app

runner = CliRunner()
ARGS = [
    "--model", "tests.dataset_model:small_cnn", "--layer", "act", "--steps", "3",
    "--method", "rsi", "--shard-size", "4", "--batch-size", "4", "--threads", "1",
    "--workers", "0", "--dtype", "float16",
]  # fmt: skip


def _maps(out: Path) -> np.ndarray:
    with np.load(out / "shards" / "shard-00000.npz") as found:
        return np.asarray(found["heatmaps_0"], dtype=np.float32)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(["--compile"], marks=pytest.mark.slow),  # torch.compile: a C++ build
        ["--fold-batchnorm"],
        ["--no-fold-batchnorm"],
    ],
)
def test_speed_options_keep_the_maps(tmp_path: Path, extra: list[str]) -> None:
    rng = np.random.default_rng(0)
    for i in range(4):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"img{i}.png")
    plain = runner.invoke(app, ["explain-dataset", str(tmp_path), "--out",
                                str(tmp_path / "plain"), *ARGS])
    assert plain.exit_code == 0, plain.output
    fast = runner.invoke(app, ["explain-dataset", str(tmp_path), "--out",
                               str(tmp_path / "fast"), *ARGS, *extra])
    assert fast.exit_code == 0, fast.output
    np.testing.assert_allclose(_maps(tmp_path / "fast"), _maps(tmp_path / "plain"), atol=2e-3)
