"""The documentation site builds with --strict (no warnings, no broken links), runs its
tutorials, and its command-line reference is generated from the command itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_site_builds_strictly_with_its_tutorials_and_cli_reference(tmp_path: Path) -> None:
    if shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[dev]')")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    cli = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    for command in ("explain", "explain-dataset", "evaluate", "layers", "demo", "bench", "app"):
        assert f"rsigradcam {command}</code>" in cli, command
    assert "--steps" in cli and "--layer" in cli
    tutorial = site / "generated" / "tutorials" / "plot_01_first_explanation" / "index.html"
    assert "Egyptian" in tutorial.read_text(encoding="utf-8")  # the script ran and printed
    assert (site / "reference" / "methods" / "index.html").read_text().count("RSIGradCAM") > 5
