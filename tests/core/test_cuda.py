"""On a CUDA device: the maps equal the CPU's, and the dataset and evaluation commands run.

Skipped where no CUDA device is found (CI has none); run on a GPU machine with
``pytest tests/core/test_cuda.py``. The float64 maps are the reference check: a GPU
changes the order of the sums, not the arithmetic, so they agree to float64 rounding.
float32 runs without TF32 whatever PyTorch's global flag says (see
:func:`rsigradcam.core.inference.float32_arithmetic`); the float32 test checks it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from rsigradcam import RSIGradCAM, SpeedOptions, load_heatmaps
from rsigradcam.app.bench import heatmap_correlation
from rsigradcam.app.cli import app
from rsigradcam.app.evaluation import EvaluationOptions, evaluate
from rsigradcam.io import load_image
from rsigradcam.models import efficientnet_lite0

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]

DEVICE = "cuda"
STEPS = 16
LAYERS = ["blocks.5", "blocks.10", "head"]
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    from skimage import data

    return torch.cat([load_image(getattr(data, name)())[0] for name in PHOTOS])


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        Image.fromarray(getattr(data, name)()).convert("RGB").save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def cpu_float64(photos: torch.Tensor) -> dict[str, torch.Tensor]:
    model = efficientnet_lite0().eval()
    exps = RSIGradCAM(model, LAYERS, steps=STEPS, dtype=torch.float64)(photos)
    return {name: exp.heatmap for name, exp in exps.items()}


def _cuda_maps(photos: torch.Tensor, **options: object) -> dict[str, torch.Tensor]:
    model = efficientnet_lite0().eval().to(DEVICE)
    exps = RSIGradCAM(model, LAYERS, steps=STEPS, **options)(photos.to(DEVICE))  # type: ignore[arg-type]
    return {name: exp.heatmap.cpu() for name, exp in exps.items()}


def _agreement(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(max |a - b|, the lowest per-image heatmap correlation)."""
    diff = float((a.double() - b.double()).abs().max())
    return diff, min(heatmap_correlation(x, y) for x, y in zip(a, b, strict=True))


def test_float64_maps_on_cuda_equal_the_cpu_maps(photos, cpu_float64):
    found = _cuda_maps(photos, dtype=torch.float64)
    for name in LAYERS:
        diff, corr = _agreement(found[name], cpu_float64[name])
        print(f"float64 cuda vs cpu {name}: max |diff| {diff:.2e}, corr {corr:.8f}")
        assert diff <= 1e-6, name


@pytest.mark.parametrize("tf32", [False, True])
def test_float32_maps_on_cuda_do_not_use_tf32(photos, cpu_float64, tf32):
    """Whatever the global TF32 flag says, the passes run in float32: the maps are as far
    from float64's as on a CPU (TF32 moved them by up to 2.9e-2, see float32_arithmetic).
    """
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        found = _cuda_maps(photos)
        assert torch.backends.cudnn.allow_tf32 is tf32  # restored after the call
    finally:
        torch.backends.cudnn.allow_tf32 = before
    for name in LAYERS:
        diff, corr = _agreement(found[name], cpu_float64[name])
        print(f"float32 cuda (allow_tf32={tf32}) vs float64 cpu {name}: max |diff| {diff:.2e}, "
              f"corr {corr:.6f}")
        assert diff < 3e-3 and corr > 0.9999, name


def test_autocast_maps_stay_close_to_float32(photos):
    plain = _cuda_maps(photos)
    for dtype in (torch.bfloat16, torch.float16):
        found = _cuda_maps(photos, speed=SpeedOptions(autocast=dtype))
        for name in LAYERS:
            diff, corr = _agreement(found[name], plain[name])
            print(f"autocast {dtype} vs float32 {name}: max |diff| {diff:.2e}, corr {corr:.5f}")
            assert corr > 0.95, (dtype, name)


def test_explain_dataset_on_cuda_matches_the_cpu(tmp_path: Path, photo_folder: Path):
    folder = photo_folder
    found = {}
    for run, device in (("cpu", "cpu"), ("gpu", DEVICE)):
        out = tmp_path / run
        result = CliRunner().invoke(app, [
            "explain-dataset", str(folder), "--out", str(out), "--layer", "head",
            "--steps", str(STEPS), "--device", device, "--workers", "0",
        ])
        assert result.exit_code == 0, result.output
        found[run] = {record.id: record for record in load_heatmaps(out)}
    assert sorted(found["cpu"]) == sorted(found["gpu"]) and len(found["cpu"]) == len(PHOTOS)
    for exp_id, cpu in found["cpu"].items():
        gpu = found["gpu"][exp_id]
        assert gpu.target == cpu.target, exp_id
        gap = np.abs(gpu.heatmap.astype(np.float64) - cpu.heatmap).max()
        assert gap <= 2 / 255 + 1e-6, exp_id  # stored as uint8 round(255 h)
        assert abs(gpu.probability - cpu.probability) < 1e-4, exp_id


def test_evaluate_on_cuda_gives_the_cpu_numbers(photo_folder: Path):
    folder = photo_folder
    runs = {}
    for run, device in (("cpu", "cpu"), ("gpu", DEVICE)):
        options = EvaluationOptions(
            images=folder, layers=("head",), methods=("rsi", "gradcam"), steps=8,
            device=device, curve_points=4, sanity_images=1, sanity_stages=2,
            stability_steps=(), noise_samples=1, bootstrap=100, max_grids=1, min_grids=1,
        )
        runs[run] = evaluate(options, echo=lambda line: None).results.metrics
    for metric in ("deletion_auc", "insertion_auc", "average_drop"):
        for method in ("rsi", "gradcam"):
            cpu = np.asarray(runs["cpu"][metric][method]["head"], np.float64)
            gpu = np.asarray(runs["gpu"][metric][method]["head"], np.float64)
            np.testing.assert_allclose(gpu, cpu, atol=2e-2, err_msg=f"{metric} {method}")


def test_dataset_batches_are_pinned_for_a_copy_without_a_host_wait():
    """explain-dataset's DataLoader pins its batches on a GPU run (ImageBatch.pin_memory),
    and the explainer copies them with non_blocking=True."""
    from rsigradcam.app.dataset.loader import collate_images

    images = torch.rand(2, 3, 8, 8)
    batch = collate_images([(0, images[0], None), (1, None, "unreadable"), (2, images[1], None)])
    pinned = batch.pin_memory()
    assert pinned.images is not None and pinned.images.is_pinned()
    assert torch.equal(pinned.images, torch.stack([images[0], images[1]]))
    assert (pinned.indices, pinned.ok, pinned.failures) == ([0, 1, 2], [0, 2], [(1, "unreadable")])
