"""Issue 29, points 1-4 and 8: threads on every command, progress in a log file, one
exit-code rule and no lock left behind, list files' paths, ``heatmaps[0]`` and folders
given to ``explain``."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from rsigradcam import load_heatmaps
from rsigradcam.app import threads
from rsigradcam.app.cli import app
from rsigradcam.app.errors import InputError
from rsigradcam.app.images import list_images
from rsigradcam.app.runs.progress import RunProgress
from rsigradcam.app.threads import busy_line, busy_note, cgroup_cpu_limit
from rsigradcam.heatmaps import SHARD_DIR

runner = CliRunner()
SMALL = ["--model", "tests.dataset_model:small_cnn"]
TINY = [*SMALL, "--layer", "act"]
COMMANDS = ["explain", "layers", "explain-dataset", "demo", "evaluate", "app"]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Two 32x32 photos and a text file named .png."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
    (folder / "notes.png").write_text("not an image\n")
    return folder


# --------------------------------------------------------------------------------------
# Point 1: threads
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_threads(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "--threads" in text and "OMP_NUM_THREADS" in text and "CPU quota" in text


def test_a_bad_threads_value_is_one_line() -> None:
    result = runner.invoke(app, ["layers", "--threads", "0"])
    assert result.exit_code == 2
    assert result.stderr == "error: --threads must be at least 1, got '0' (see --help)\n"


def test_the_cgroup_cpu_quota_is_read(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    (v2 / "job").mkdir(parents=True)
    own = tmp_path / "self-cgroup"
    own.write_text("0::/job\n")
    (v2 / "job" / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(v2, own) == 1.5
    (v2 / "job" / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(v2, own) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(v1, tmp_path / "none") == 0.5
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(v1, tmp_path / "none") is None


def test_the_usable_cpus_follow_the_affinity_and_the_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    mask = len(os.sched_getaffinity(0))
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
    assert threads.usable_cpus() == mask
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 0.5)
    assert threads.usable_cpus() == 1
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 1.5)
    assert threads.usable_cpus() == min(mask, 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.torch_threads(None, 1) == min(mask, 2)


def test_the_busy_note(monkeypatch: pytest.MonkeyPatch) -> None:
    assert busy_note(2, load=3.5, cpus=2) == (
        "note: the machine is busy (load 3.5 on 2 usable CPUs); --threads 1 often runs much "
        "faster here"
    )
    assert busy_note(1, load=9.0, cpus=2) is None  # one thread already
    assert busy_note(2, load=1.5, cpus=2) is None  # not busy
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert (busy_line(None) or "").startswith("note: the machine is busy (load 9.0 on 2")
    assert busy_line(2) is None  # chosen with --threads
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert busy_line(None) is None  # chosen with OMP_NUM_THREADS


def test_a_command_on_a_busy_machine_says_so_once_and_takes_its_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    result = runner.invoke(app, ["layers", *SMALL])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("--threads 1") == 1 and torch.get_num_threads() == 2
    result = runner.invoke(app, ["layers", *SMALL, "--threads", "1"])
    assert result.exit_code == 0 and result.stderr == ""
    assert torch.get_num_threads() == 1


# --------------------------------------------------------------------------------------
# Point 2: progress lines without a terminal; --quick; a stopped start leaves nothing
# --------------------------------------------------------------------------------------


def test_progress_lines_while_a_shard_runs_without_a_terminal(tmp_path: Path) -> None:
    (tmp_path / SHARD_DIR).mkdir()
    lines: list[str] = []
    sizes = {"shard-00000": 4}
    with RunProgress(tmp_path, sizes, bar=False, echo=lines.append, heartbeat=0.05) as view:
        time.sleep(0.3)
        view.update(0, finished="shard-00000")
    assert lines[0].startswith("explaining: 0/4 images, 0.00 images/s, ETA -, ")
    assert any(line.startswith("shard-00000: 4/4 images, ") for line in lines)


@pytest.mark.parametrize(
    ("flags", "stability"),
    [(["--quick"], False), (["--quick", "--stability"], True), ([], True)],
)
def test_quick_skips_the_stability_measures_unless_asked(
    flags: list[str], stability: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rsigradcam.app.evaluation as evaluation

    seen: list[Any] = []

    def stop(options: Any, **_: Any) -> None:
        seen.append(options)
        raise RuntimeError("stopped before the work")

    monkeypatch.setattr(evaluation, "evaluate", stop)
    runner.invoke(app, ["evaluate", *flags, "--out", str(tmp_path / "out")])
    assert seen[0].stability is stability


def _evaluate(photos: Path, out: Path, *extra: str) -> Any:
    return runner.invoke(app, [
        "evaluate", "--images", str(photos), *TINY, "-m", "gradcam", "--quick",
        "--curve-points", "2", "--bootstrap", "20", "--max-grids", "0", "--out", str(out),
        *extra,
    ])  # fmt: skip


def test_evaluate_into_a_log_prints_progress_and_leaves_no_lock(
    photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = _evaluate(photos, out)
    # Exit code 1: notes.png cannot be read (named in a note); the others are evaluated.
    assert result.exit_code == 1, result.output
    assert "note: skipped notes.png: " in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: 1 image could not be read; the others were evaluated"
    )
    assert "2 images, layers act, arms gradcam" in result.stdout
    assert "shard-00000: 2/2 units" in result.stdout  # not a terminal: plain lines
    assert (out / "results.json").is_file() and not (out / ".lock").exists()


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_interrupted_or_terminated_evaluate_start_leaves_nothing(
    how: str, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rsigradcam.app.evaluation import run

    def interrupt(*args: object) -> None:
        if how == "sigterm":  # as `kill PID` or a job's time limit sends it
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "run_shard", interrupt)
    out = tmp_path / "runs" / "out"
    result = _evaluate(photos, out)
    assert result.exit_code == 130, result.output
    assert not (tmp_path / "runs").exists()  # no run.json, no shards/, no .lock


# --------------------------------------------------------------------------------------
# Points 3 and 8: exit codes, no lock, heatmaps[0]
# --------------------------------------------------------------------------------------


def test_explain_dataset_exits_1_when_an_image_cannot_be_read(
    photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["explain-dataset", str(photos), "--out", str(out), *TINY,
                                 "-m", "gradcam", "--workers", "0"])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: 1 image could not be read or explained; see {out.resolve() / 'errors.jsonl'}"
    )
    assert not (out / ".lock").exists()
    maps = load_heatmaps(out)
    assert maps.ids == ["a.png", "b.png"]
    assert maps[0].id == "a.png" and maps[-1].id == "b.png" and maps[1].id == "b.png"
    with pytest.raises(IndexError, match=r"position 2 is out of range: .* \(positions 0 to 1\)"):
        maps[2]
    with pytest.raises(TypeError, match=r"by image id \(str, see \.ids\) or position \(int\)"):
        maps[1.0]  # type: ignore[index]


# --------------------------------------------------------------------------------------
# Point 4: list files
# --------------------------------------------------------------------------------------


def test_a_list_of_relative_paths_elsewhere_names_the_missing_paths_and_the_rule(
    photos: Path, tmp_path: Path
) -> None:
    good = photos / "labels.csv"
    good.write_text("path\na.png\nb.png\n")
    assert [Path(e.path) for e in list_images(good)] == [photos / "a.png", photos / "b.png"]
    moved = tmp_path / "elsewhere" / "labels.csv"
    moved.parent.mkdir()
    moved.write_text(good.read_text())
    with pytest.raises(InputError) as info:
        list_images(moved)
    assert str(info.value) == (
        f"none of the 2 files listed in '{moved}' exists: '{moved.parent / 'a.png'}', "
        f"'{moved.parent / 'b.png'}' (relative paths in a list start at the list file's "
        f"folder, '{moved.parent}'; absolute paths are used as given); fix the paths or move "
        "the list"
    )
    result = runner.invoke(app, ["explain-dataset", str(moved), "--out", str(tmp_path / "o"),
                                 *TINY])
    assert result.exit_code == 2
    assert result.stderr == f"error: {info.value}\n"
    absolute = tmp_path / "absolute.csv"
    absolute.write_text(f"{photos / 'a.png'}\n")
    assert [e.path for e in list_images(absolute)] == [str(photos / "a.png")]


# --------------------------------------------------------------------------------------
# Point 8: a folder given to explain
# --------------------------------------------------------------------------------------


def test_explain_of_a_folder_explains_its_images(photos: Path, tmp_path: Path) -> None:
    (photos / "notes.png").unlink()
    (photos / "sub").mkdir()
    out = tmp_path / "out"
    result = runner.invoke(app, ["explain", str(photos), "--out", str(out), *TINY,
                                 "-m", "gradcam"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.json")) == ["a.json", "b.json"]
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["explain", str(empty), *TINY])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: folder '{empty}' holds no image file (its subfolders are not searched); for "
        "a folder tree, use rsigradcam explain-dataset\n"
    )
