"""``rsigradcam explain`` on arrays: .npy signals, images and volumes, NIfTI, --output sigmoid."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from rsigradcam.app.cli import app

runner = CliRunner()

ROOT = Path(__file__).resolve().parents[2]
VOLUME = "tests.array_models:volume"
SIGNAL = "tests.array_models:signal"


@pytest.fixture
def arrays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder (the working one) with a volume, a signal, an image array and a NIfTI file."""
    import nibabel

    rng = np.random.default_rng(0)
    np.save(tmp_path / "volume.npy", rng.standard_normal((1, 8, 16, 16)).astype(np.float32))
    np.save(tmp_path / "signal.npy", rng.standard_normal((2, 120)))
    np.save(tmp_path / "rgb.npy", rng.standard_normal((3, 8, 16, 16)).astype(np.float32))
    volume = rng.standard_normal((8, 16, 12)).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), tmp_path / "scan.nii.gz")
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["explain", *args])
    return result.exit_code, result.output


def test_a_volume_is_explained_at_its_own_shape(arrays: Path) -> None:
    code, output = _run("volume.npy", "--model", VOLUME, "-m", "rsi,gradcam", "-s", "8",
                        "--out", "out")
    assert code == 0, output
    out = arrays / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "volume.json", "volume_1_gradcam.npy", "volume_1_gradcam.png",
        "volume_1_rsi.npy", "volume_1_rsi.png",
    ]  # one figure per map, no grid
    heatmap = np.load(out / "volume_1_rsi.npy")
    assert heatmap.shape == (8, 16, 16) and heatmap.dtype == np.float32
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    summary = json.loads((out / "volume.json").read_text())
    assert summary["input_size"] == [8, 16, 16] and summary["channels"] == 1
    assert summary["mean"] is None and summary["std"] is None
    rsi = next(e for e in summary["explanations"] if e["method"] == "rsi")
    assert rsi["layer_shape"] == [4, 4, 8, 8] and rsi["completeness_error"] < 0.05
    with Image.open(out / "volume_1_rsi.png") as figure:  # three rows of slices
        assert figure.width > 800 and figure.height > 500


def test_a_nifti_volume_and_a_signal(arrays: Path) -> None:
    code, output = _run("scan.nii.gz", "--model", VOLUME, "-s", "4", "--out", "out")
    assert code == 0, output
    assert np.load(arrays / "out" / "scan_1_rsi.npy").shape == (8, 16, 12)  # (X, Y, Z)
    code, output = _run("signal.npy", "--model", SIGNAL, "-s", "4", "--out", "sig")
    assert code == 0, output
    assert np.load(arrays / "sig" / "signal_1_rsi.npy").shape == (120,)
    assert (arrays / "sig" / "signal_1_rsi.png").stat().st_size > 10_000


def test_output_sigmoid_explains_the_sigmoid_of_the_logit(arrays: Path) -> None:
    code, output = _run("photo.png", "--model", "tests.array_models:multilabel", "--size", "32",
                        "--output", "sigmoid", "--target", "3", "-s", "4", "--out", "out")
    assert code == 0, output
    summary = json.loads((arrays / "out" / "photo.json").read_text())
    assert summary["output"] == "sigmoid"
    score = summary["explanations"][0]["score"]
    assert 0.0 < score < 1.0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["rgb.npy", "--model", VOLUME],
         "array 'rgb.npy' has 3 channels (shape (3, 8, 16, 16)), but model "
         "'tests.array_models:volume' takes 1"),
        (["volume.npy", "photo.png", "--model", VOLUME], "image files or arrays"),
        (["volume.npy", "--model", VOLUME, "--size", "32"], "--size, --mean and --std apply"),
    ],
)
def test_bad_arrays_are_one_line_and_leave_nothing(
    arrays: Path, args: list[str], words: str
) -> None:
    code, output = _run(*args, "--out", "out")
    assert code == 2
    lines = output.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], output
    assert not (arrays / "out").exists()


def test_a_nifti_file_without_nibabel_names_the_extra(
    arrays: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "nibabel", None)  # find_spec: not installed
    code, output = _run("scan.nii.gz", "--model", VOLUME, "--out", "out")
    assert code == 2
    assert output.strip() == (
        "error: reading the NIfTI file 'scan.nii.gz' needs nibabel, in the 'medical' extra: "
        "pip install 'rsigradcam[medical]'"
    )
    assert not (arrays / "out").exists()


def test_the_guide_s_array_commands_run(arrays: Path) -> None:
    """docs/guides/command-line.md, "Arrays, volumes and signals": every command runs."""
    page = (ROOT / "docs" / "guides" / "command-line.md").read_text(encoding="utf-8")
    section = page.split("## Arrays, volumes and signals", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    (arrays / "mymodels.py").write_text(
        "from tests.array_models import multilabel, segmenter\n"
        "from tests.array_models import signal as net1d, volume as net3d\n"
    )
    Image.fromarray(np.full((224, 224), 255, np.uint8)).save(arrays / "mask.png")
    commands = [line.split("#")[0].split() for line in block[1].splitlines() if line.strip()]
    assert len(commands) >= 3
    for words in commands:
        assert words[:2] == ["rsigradcam", "explain"]
        result = runner.invoke(app, [*words[1:], "--steps", "4"])
        assert result.exit_code == 0, (words, result.output)


SEGMENTER = "tests.array_models:segmenter"


def _mask(path: Path, size: int) -> Path:
    mask = np.zeros((size, size), np.uint8)
    mask[:, : size // 2] = 255  # the left half
    Image.fromarray(mask).save(path)
    return path


def test_target_mask_explains_a_segmentation_class_over_the_mask(arrays: Path) -> None:
    _mask(arrays / "mask.png", 32)  # at the output's size (the input is 64x64)
    code, output = _run("photo.png", "--model", SEGMENTER, "--size", "64", "--target", "1",
                        "--target-mask", "mask.png", "--output", "logits", "-s", "8",
                        "--out", "out")
    assert code == 0, output
    summary = json.loads((arrays / "out" / "photo.json").read_text())
    entry = summary["explanations"][0]
    assert summary["explained_class"]["class_id"] == 1
    assert entry["completeness_error"] < 0.01  # a summed logit, explained at the last conv
    assert np.load(arrays / "out" / f"photo_{entry['layer']}_rsi.npy").shape == (64, 64)


def test_a_mask_that_fits_neither_size_is_one_line_and_leaves_nothing(arrays: Path) -> None:
    _mask(arrays / "mask.png", 20)
    code, output = _run("photo.png", "--model", SEGMENTER, "--size", "64", "--target", "1",
                        "--target-mask", "mask.png", "--out", "out")
    assert code == 1
    assert "mask of shape (20, 20) fits neither the input (64, 64) nor the output (32, 32)" in (
        output.splitlines()[0]
    )
    assert not (arrays / "out").exists()
    code, output = _run("photo.png", "--model", SEGMENTER, "--target-mask", "mask.png")
    assert code == 2 and "--target-mask needs --target CLASS" in output
