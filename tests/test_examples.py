"""The examples run (shortened) and produce their figures."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_latent_path_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "latent.png"
    argv = ["latent_path.py", "--out", str(out), "--train-steps", "3", "--steps", "4"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(EXAMPLES / "latent_path.py"), run_name="__main__")
    with Image.open(out) as image:
        assert image.size[0] > 500 and image.size[1] > 200
