"""The explorer under load, at a small scale: ``benchmarks/app_load.py`` with 6 calls.

The server (``--max-queue 2``, a small model whose forward passes sleep, so that the calls
overlap) answers or refuses every call in one line, refuses a 100-megapixel PNG and a file
over the byte limit without decoding them, keeps its memory bounded and stays up.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import load_benchmark

pytest.importorskip("gradio_client", reason="the app extra: pip install 'rsigradcam[app]'")
pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_six_calls_at_once_are_answered_or_refused_and_the_server_stays_up(
    tmp_path: Path,
) -> None:
    bench = load_benchmark("app_load")
    report = bench.run_load(
        "tests.dataset_model:small_cnn",
        folder=tmp_path,
        calls=6,
        max_queue=2,
        layer="conv",
        method="rsi",
        steps=4,
        env={"RSIGRADCAM_TEST_DELAY": "0.5", "OMP_NUM_THREADS": "1"},
    )
    assert report.failed == []
    assert report.answered + report.refused == 6
    assert report.answered >= 3 and report.refused >= 1  # one runs, two wait, the rest: busy
    assert report.distinct_answers == 1
    assert report.big_png.startswith(
        "'big.png' is 10000x10000 = 100,000,000 pixels; the app takes images up to"
    )
    assert report.big_png_seconds < 30  # the header only: no 300 MB decode
    assert report.big_file != "answered (not refused)" and "\n" not in report.big_file
    assert report.up_after
    assert report.peak_rss_mb < 1500, report  # a decoded 100 MP image alone would add 300 MB
    markdown = bench.markdown(report)
    assert "| answered (distinct" in markdown and "| server peak memory" in markdown
