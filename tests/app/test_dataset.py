"""``rsigradcam explain-dataset``: shards, resuming after SIGKILL, torchrun with gloo, errors."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from rsigradcam import METHODS, Explanation, GradCAM, RSIGradCAM, load_heatmaps
from rsigradcam.app.cli import app
from rsigradcam.app.dataset import ImageFiles, collate_images, explanation_pairs
from rsigradcam.app.errors import InputError
from rsigradcam.app.images import list_images
from rsigradcam.app.loading.methods import parse_methods
from rsigradcam.app.runs.shards import rank_shards, shard_names
from rsigradcam.io import load_image
from tests.dataset_model import small_cnn

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
N_GOOD = 40
# 42 images (40 + 2 unreadable) in shards of 8: 6 shards, the last one with 2 images.
ARGS = [
    "--model", "tests.dataset_model:small_cnn", "--layer", "act", "--steps", "3",
    "--method", "rsi,gradcam", "--shard-size", "8", "--batch-size", "4", "--threads", "1",
]  # fmt: skip
N_SHARDS = 6
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 random 32x32 PNGs in nested folders, a truncated PNG, a text file named .png,
    and files that are not listed (a .txt, hidden files)."""
    folder = tmp_path_factory.mktemp("source")
    rng = np.random.default_rng(0)
    for i in range(N_GOOD):
        sub = folder / ("cats" if i % 3 == 0 else "dogs/small" if i % 3 == 1 else ".")
        sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(sub / f"img{i:02d}.png")
    png = (folder / "img02.png").read_bytes()
    (folder / "cats" / "broken.png").write_bytes(png[: len(png) // 3])
    (folder / "notes.png").write_text("not an image\n")
    (folder / "readme.txt").write_text("not listed\n")
    (folder / ".hidden").mkdir()
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / ".hidden/x.png")
    return folder


def _explain(*args: str) -> Result:
    return runner.invoke(app, ["explain-dataset", *args])


@pytest.fixture(scope="module")
def reference(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted single-process run, decoding in the main process."""
    out = tmp_path_factory.mktemp("reference") / "out"
    result = _explain(str(source), "--out", str(out), *ARGS, "--workers", "0")
    # Exit code 1: two of the images cannot be read (named on stderr and in errors.jsonl).
    assert result.exit_code == 1, result.output
    assert "2 images could not be read or explained" in result.stderr
    assert not (out / ".lock").exists()
    return out


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _TORCHRUN_VARS}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_results(expected: Path, actual: Path) -> None:
    """The manifests, the errors and every array of every shard are identical (bitwise)."""
    assert _lines(actual / "manifest.jsonl") == _lines(expected / "manifest.jsonl")
    assert _lines(actual / "errors.jsonl") == _lines(expected / "errors.jsonl")
    for name in shard_names(N_SHARDS):
        assert _lines(actual / f"shards/{name}.jsonl") == _lines(expected / f"shards/{name}.jsonl")
        with np.load(expected / f"shards/{name}.npz") as a, np.load(
            actual / f"shards/{name}.npz"
        ) as b:
            assert sorted(a.files) == sorted(b.files)
            for key in a.files:
                assert a[key].dtype == b[key].dtype, key
                nan_ok = a[key].dtype.kind == "f"
                assert np.array_equal(a[key], b[key], equal_nan=nan_ok), f"{name} {key}"


# --------------------------------------------------------------------------------------
# One process
# --------------------------------------------------------------------------------------


def test_every_image_once_and_errors_listed(reference: Path, source: Path) -> None:
    manifest = _lines(reference / "manifest.jsonl")
    ids = [line["id"] for line in manifest]
    assert len(ids) == len(set(ids)) == N_GOOD + 2
    assert ids == sorted(ids)  # sorted relative paths
    assert "readme.txt" not in ids and not any(i.startswith(".") for i in ids)
    assert {"cats/img00.png", "dogs/small/img01.png", "img02.png"} <= set(ids)
    errors = {line["id"]: line for line in _lines(reference / "errors.jsonl")}
    assert set(errors) == {"cats/broken.png", "notes.png"}
    assert "truncated" in errors["cats/broken.png"]["error"]
    assert "not a recognised image format" in errors["notes.png"]["error"]
    assert errors["notes.png"]["path"] == str(source / "notes.png")
    explained = [line for line in manifest if "error" not in line]
    assert len(explained) == N_GOOD
    assert {e["method"] for e in explained[0]["explanations"]} == {"rsi", "gradcam"}

    run = json.loads((reference / "run.json").read_text())
    params = run["parameters"]
    assert params["steps"] == 3 and params["shard_size"] == 8 and params["batch_size"] == 4
    assert params["layers"] == ["act"] and params["methods"] == ["rsi", "gradcam"]
    assert params["version"] == "0.1.0" and params["images"] == N_GOOD + 2
    assert run["shards"] == N_SHARDS
    with np.load(reference / "shards/shard-00000.npz") as shard:
        assert shard["heatmaps_0"].dtype == np.uint8
        n = len(shard["ids"])
        assert shard["heatmaps_0"].shape == shard["heatmaps_1"].shape == (n, 224, 224)
        assert shard["scores"].shape == shard["completeness"].shape == (n, 2)
        assert np.isnan(shard["completeness"][:, 1]).all()  # Grad-CAM has none
    assert not list(reference.rglob("*.tmp"))


def test_heatmaps_match_a_direct_computation(reference: Path, source: Path) -> None:
    """Each stored map is the library's map for that image alone, quantised to uint8."""
    model = small_cnn()
    for image_id in ("cats/img00.png", "dogs/small/img37.png"):
        x, _ = load_image(source / image_id)
        top1 = int(model(x).argmax())
        for method, cam in (
            ("rsi", RSIGradCAM(model, "act", steps=3)),
            ("gradcam", GradCAM(model, "act", output="softmax")),
        ):
            record = load_heatmaps(reference, method=method)[image_id]
            exp = cam(x, targets=top1)
            assert isinstance(exp, Explanation)
            expected = np.round(exp.heatmap[0].numpy() * 255) / 255
            assert record.heatmap.dtype == np.float32 and record.heatmap.shape == (224, 224)
            assert np.abs(record.heatmap - expected).max() <= 1.01 / 255
            assert (record.id, record.method, record.layer) == (image_id, method, "act")
            assert record.target == top1
            assert record.score == pytest.approx(float(exp.scores[0]), abs=1e-6)
            assert record.probability == pytest.approx(float(exp.scores[0]), abs=1e-6)
            if method == "rsi":
                error = float(exp.completeness_error[0])
                assert record.completeness == pytest.approx(error, rel=1e-4, abs=1e-6)
                assert record.baseline_score == pytest.approx(float(exp.baseline_scores[0]))
            else:
                assert np.isnan(record.completeness) and np.isnan(record.baseline_score)


def test_load_heatmaps_by_id_and_iterated(reference: Path) -> None:
    maps = load_heatmaps(reference, method="rsi", layer="act")
    manifest = [line for line in _lines(reference / "manifest.jsonl") if "error" not in line]
    assert len(maps) == N_GOOD and maps.ids == [line["id"] for line in manifest]
    records = list(maps)
    assert [r.id for r in records] == maps.ids
    with np.load(reference / "shards/shard-00001.npz") as shard:
        row = 2
        image_id = str(shard["ids"][row])
        stored = shard["heatmaps_0"][row]
        target = int(shard["targets"][row])
    record = maps[image_id]
    assert np.array_equal(record.heatmap, stored.astype(np.float32) / 255)
    assert record.target == target and records[maps.ids.index(image_id)].target == target
    assert "img02.png" in maps and "cats/broken.png" not in maps
    assert [e["id"] for e in maps.errors] == ["cats/broken.png", "notes.png"]
    with pytest.raises(KeyError, match=r"could not be explained.*truncated"):
        maps["cats/broken.png"]
    with pytest.raises(ValueError, match="several methods"):
        load_heatmaps(reference)
    with pytest.raises(ValueError, match="layer 'head' is not in the run"):
        load_heatmaps(reference, method="rsi", layer="head")


def test_list_file_with_targets_and_a_missing_file(source: Path, tmp_path: Path) -> None:
    listing = tmp_path / "images.csv"
    listing.write_text(
        "path,target\n"
        f"{source / 'cats/img00.png'},2\n"
        f"{source / 'img02.png'},\n"
        "# a comment\n"
        "missing.png,1\n"
    )
    out = tmp_path / "out"
    args = ["--model", "tests.dataset_model:small_cnn", "--steps", "2", "--workers", "1"]
    result = _explain(
        str(listing), "--out", str(out), *args, "--dtype", "float16", "-b", "2", "-m", "rsi,ig"
    )
    assert result.exit_code == 1, result.output
    manifest = _lines(out / "manifest.jsonl")
    assert [line["id"] for line in manifest] == [
        str(source / "cats/img00.png"),
        str(source / "img02.png"),
        "missing.png",
    ]
    top1 = int(small_cnn()(load_image(source / "img02.png")[0]).argmax())
    assert [line.get("target") for line in manifest] == [2, top1, None]
    assert _lines(out / "errors.jsonl") == [
        {"id": "missing.png", "path": str(tmp_path / "missing.png"), "error": "file not found"}
    ]
    with np.load(out / "shards/shard-00000.npz") as shard:
        assert shard["heatmaps_0"].dtype == np.float16
    record = load_heatmaps(out, method="rsi")[str(source / "cats/img00.png")]
    assert record.target == 2 and record.method == "rsi" and record.layer == "act"
    pixels = load_heatmaps(out, method="ig")
    assert pixels.layer == "input" and len(pixels) == 2
    assert pixels.explanations == [("rsi", "act"), ("ig", "input")]

    listing.write_text("a.png,tabby\n")
    result = _explain(str(listing), "--out", str(tmp_path / "other"), *args)
    assert result.exit_code == 2
    assert "images.csv:1: class 'tabby': this model's class names are unknown" in result.output


def test_mismatched_parameters_are_refused(
    reference: Path, source: Path, tmp_path: Path
) -> None:
    before = (reference / "manifest.jsonl").stat().st_mtime_ns
    changed = [a if a != "3" else "4" for a in ARGS]  # --steps 4
    result = _explain(str(source), "--out", str(reference), *changed, "--dtype", "float16")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --out")
    assert "heatmap_dtype 'uint8' -> 'float16'" in lines[0] and "steps 3 -> 4" in lines[0]
    assert (reference / "manifest.jsonl").stat().st_mtime_ns == before

    # Other images (one more in a copy of the folder) are refused as well.
    import shutil

    more = tmp_path / "more"
    shutil.copytree(source, more)
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(more / "extra.png")
    result = _explain(str(more), "--out", str(reference), *ARGS)
    assert result.exit_code == 2
    assert "images 42 -> 43" in result.output and "images_sha256" in result.output
    # So is another model (here: the same network with other weights).
    other = [a.replace(":small_cnn", ":other_small_cnn") for a in ARGS]
    result = _explain(str(source), "--out", str(reference), *other)
    assert result.exit_code == 2 and "model_sha256" in result.output, result.output

    # The same arguments (the decoding workers may change) find every shard finished.
    result = _explain(str(source), "--out", str(reference), *ARGS, "--workers", "2")
    assert result.exit_code == 1, result.output
    assert f"{N_SHARDS} already done" in result.output


def test_a_second_run_into_the_same_folder_is_refused(reference: Path, source: Path) -> None:
    """While a run holds OUT/.lock, another is refused (exit 2, naming the holder) and
    changes nothing; the lock dies with its holder, so the next run goes ahead."""
    import fcntl

    from rsigradcam.app.runs.lock import LOCK, run_lock

    before = (reference / "manifest.jsonl").stat().st_mtime_ns
    with run_lock(reference):
        assert f"pid {os.getpid()}" in (reference / LOCK).read_text()
        result = _explain(str(source), "--out", str(reference), *ARGS)
        assert result.exit_code == 2
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "another run is writing" in lines[0]
        assert f"pid {os.getpid()}" in lines[0] and "choose another --out" in lines[0]
        with pytest.raises(InputError, match="another run is writing"), run_lock(reference):
            pass
    assert (reference / "manifest.jsonl").stat().st_mtime_ns == before
    assert not (reference / LOCK).exists()  # a finished run keeps no lock file
    # Released: a plain flock succeeds, and the same run resumes with nothing to do.
    with (reference / LOCK).open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    result = _explain(str(source), "--out", str(reference), *ARGS)
    assert result.exit_code == 1, result.output
    assert f"{N_SHARDS} already done" in result.output
    assert not (reference / LOCK).exists()


def test_usage_errors(source: Path, tmp_path: Path) -> None:
    result = _explain(str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), *ARGS)
    assert result.exit_code == 2 and "source not found" in result.output
    result = _explain(str(source), "--out", str(tmp_path / "o"), "--method", "rsi,gradcamm")
    assert result.exit_code == 2 and "unknown method 'gradcamm'" in result.output
    result = _explain(str(source), "--out", str(tmp_path / "o"), *ARGS, "--layer", "fc")
    assert result.exit_code == 2 and "layer 'fc' cannot be explained" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _explain(str(empty), "--out", str(tmp_path / "o"), *ARGS)
    assert result.exit_code == 2 and "no images found" in result.output


# --------------------------------------------------------------------------------------
# Parts
# --------------------------------------------------------------------------------------


def test_parts(source: Path, tmp_path: Path) -> None:
    assert parse_methods(["gradcam", "rsi,gradcam"]) == ("gradcam", "rsi")
    assert parse_methods(["all"]) == tuple(METHODS)
    assert explanation_pairs(["ig", "rsi"], ["a", "b"]) == [
        ("ig", "input"), ("rsi", "a"), ("rsi", "b")
    ]
    with pytest.raises(InputError, match="unknown method"):
        parse_methods(["grad"])
    assert shard_names(2) == ["shard-00000", "shard-00001"]
    assert shard_names(100_001)[-1] == "shard-100000"
    assigned = [rank_shards(7, r, 3) for r in range(3)]
    assert assigned == [[0, 3, 6], [1, 4], [2, 5]]
    # The output folder inside the source is not listed.
    inside = source / "out-inside"
    try:
        inside.mkdir()
        Image.new("RGB", (4, 4)).save(inside / "x.png")
        ids = [e.id for e in list_images(source, exclude=inside)]
    finally:
        (inside / "x.png").unlink()
        inside.rmdir()
    assert len(ids) == N_GOOD + 2 and not any(i.startswith("out-inside") for i in ids)
    files = ImageFiles([str(source / "img02.png"), str(source / "notes.png")])
    batch = collate_images([files[0], files[1]])
    assert batch.indices == [0, 1] and batch.ok == [0]
    assert batch.images is not None and batch.images.shape == (1, 3, 224, 224)
    assert batch.failures[0][0] == 1 and "not a readable image" in batch.failures[0][1]


# --------------------------------------------------------------------------------------
# Several processes, and a process killed half-way
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process(
    reference: Path, source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "rsigradcam.app.cli", "explain-dataset", str(source), "--out", str(out), *ARGS,
        "--workers", "1",
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1, done.stderr
    assert "2 processes" in done.stdout and done.stdout.count("Explained 40 of 42") == 1
    # Rank 0 reports the shards it wrote: shard k goes to rank k % 2.
    reported = [line.split(":")[0] for line in done.stdout.splitlines() if ": " in line]
    assert reported == ["shard-00000", "shard-00002", "shard-00004"]
    assert_same_results(reference, out)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(
    reference: Path, source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "rsigradcam.app.cli", "explain-dataset", str(source), "--out",
        str(out), *ARGS, "--workers", "1",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=_env(RSIGRADCAM_TEST_DELAY="0.05"),  # slow forward passes, the same numbers
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    first = out / "shards/shard-00000.npz"
    deadline = time.monotonic() + 120
    while not first.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    with contextlib.suppress(ProcessLookupError):  # (it did not end on its own: see below)
        os.killpg(process.pid, signal.SIGKILL)  # the process and its decoding worker
    assert process.wait(timeout=30) == -signal.SIGKILL
    finished = sorted(p.name for p in (out / "shards").glob("*.npz"))
    assert first.name in finished and len(finished) < N_SHARDS
    assert not (out / "manifest.jsonl").exists()
    stamps = {name: (out / "shards" / name).stat().st_mtime_ns for name in finished}

    result = _explain(str(source), "--out", str(out), *ARGS, "--workers", "0")
    assert result.exit_code == 1, result.output
    assert f"{len(finished)} already done" in result.output
    assert {n: (out / "shards" / n).stat().st_mtime_ns for n in finished} == stamps  # skipped
    assert not list(out.rglob("*.tmp"))
    assert_same_results(reference, out)
