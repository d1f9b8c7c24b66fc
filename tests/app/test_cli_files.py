"""The CLI over a corpus of bad and unusual image files: one line per failure, no partial files."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from rsigradcam.app.cli import app

runner = CliRunner()

TINY = "tests.tiny_model:build"


def _png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + data + chunk(b"IEND", b"")


def _encoded(image: Image.Image, fmt: str, **kw: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def _noise(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


#: name -> (content, a fragment of its one-line error)
BAD: dict[str, tuple[bytes, str]] = {
    "empty.jpg": (b"", "empty"),
    "truncated.jpg": (_encoded(_noise(96, 64), "JPEG")[:700], "truncated"),
    "truncated.png": (_encoded(_noise(96, 64), "PNG")[:900], "truncated"),
    "text.jpg": (b"these are my notes, not a picture\n" * 4, "not a recognised image format"),
    "bomb.png": (_png_declaring(50_000, 50_000), "too large"),
}


def _good() -> dict[str, bytes]:
    frames = [Image.new("P", (40, 30), i) for i in range(3)]
    for i, frame in enumerate(frames):
        frame.putpalette([c for j in range(256) for c in ((j * 40 + i) % 256, j, 255 - j)])
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=50)
    deep = Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16))
    return {
        "cmyk.jpg": _encoded(_noise(64, 48).convert("CMYK"), "JPEG"),
        "deep16.png": _encoded(deep, "PNG"),
        "palette.png": _encoded(_noise(64, 48).convert("P"), "PNG"),
        "animated.gif": gif.getvalue(),
        "wide.png": _encoded(_noise(3000, 12), "PNG"),
        "tall.png": _encoded(_noise(9, 2000), "PNG"),
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for name, (content, _) in BAD.items():
        (folder / name).write_bytes(content)
    (folder / "directory.png").mkdir()
    for name, content in _good().items():
        (folder / name).write_bytes(content)
    return folder


def _explain(folder: Path, files: list[str], out: Path):
    args = ["explain", *files, "--model", TINY, "--steps", "2", "-l", "2"]
    return runner.invoke(app, [*args, "--out", str(out)])


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_file_gives_one_line_and_no_output(
    corpus: Path, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(corpus)
    out = tmp_path / "out"
    result = _explain(corpus, [name], out)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: ") and name in lines[0], lines
    assert BAD[name][1] in lines[0], lines
    assert lines[1] == "error: 1 of 1 image could not be explained"
    assert len(lines) == 2 and "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("missing.png", "image file not found: 'missing.png'"),
     # A folder stands for its image files; this one has none.
     ("directory.png", "folder 'directory.png' holds no image file (its subfolders are not "
      "searched); for a folder tree, use rsigradcam explain-dataset")],
)
def test_missing_file_or_directory_is_a_usage_error(
    corpus: Path, monkeypatch: pytest.MonkeyPatch, name: str, fragment: str
) -> None:
    """Checked before anything runs: exit 2, one line, nothing written."""
    monkeypatch.chdir(corpus)
    result = _explain(corpus, [name, "cmyk.jpg"], corpus / "never")
    assert result.exit_code == 2
    assert [line for line in result.stderr.splitlines() if line] == [f"error: {fragment}"]
    assert not (corpus / "never").exists()


@pytest.mark.parametrize("name", sorted(_good()))
def test_unusual_but_valid_files_are_explained(
    corpus: Path, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(corpus)
    result = _explain(corpus, [name], tmp_path)
    assert result.exit_code == 0, result.output
    stem = Path(name).stem
    heat = np.load(tmp_path / f"{stem}_2_rsi.npy")
    assert heat.shape == (224, 224) and np.isfinite(heat).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{stem}.json", f"{stem}_2_rsi.npy", f"{stem}_2_rsi.png"]
    )


def test_real_process_over_the_whole_corpus(corpus: Path, tmp_path: Path) -> None:
    """One subprocess of the console script: the good files are written, each bad one is
    one line on stderr, the exit code is 1, and nothing half-written is left behind."""
    files = sorted(BAD) + sorted(_good())
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [sys.executable, "-m", "rsigradcam.app.cli", "explain", *files]
    command += ["--model", TINY, "--steps", "2", "-l", "2", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=corpus, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == len(BAD) + 1 and "Traceback" not in done.stderr
    assert lines[-1] == f"error: {len(BAD)} of {len(files)} images could not be explained"
    written = sorted(p.name for p in tmp_path.iterdir())
    assert len(written) == 3 * len(_good())
    assert not [p for p in written if p.startswith(".") or p.endswith(".tmp")]
