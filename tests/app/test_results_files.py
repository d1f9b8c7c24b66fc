"""results.json on disk: the compact form (per-unit numbers in results-units.json.gz) and
the plain form of earlier versions, both read by one loader."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from rsigradcam.app.errors import InputError
from rsigradcam.app.evaluation import (
    load_results,
    markdown_summary,
    read_results,
    save_results,
)
from rsigradcam.app.evaluation.storage import PER_UNIT, RESULTS, UNITS

PLAIN = Path(__file__).parent / "data" / "evaluation-plain"


@pytest.fixture(scope="module")
def plain() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PLAIN / RESULTS).read_text(encoding="utf-8"))
    return data


def test_the_plain_form_of_earlier_versions_reads_back(plain: dict[str, Any]) -> None:
    """A results.json with every key (as 72686c8 wrote it) reads as it is, and its summary
    is the summary.md written beside it, byte for byte."""
    assert set(PER_UNIT) <= set(plain)
    assert json.dumps(read_results(PLAIN)) == json.dumps(plain)
    assert json.dumps(read_results(PLAIN / RESULTS)) == json.dumps(plain)
    summary = (PLAIN / "summary.md").read_text(encoding="utf-8")
    assert markdown_summary(load_results(PLAIN)) == summary


def test_the_compact_form_reads_back_the_same_values(plain: dict[str, Any],
                                                     tmp_path: Path) -> None:
    written = save_results(plain, tmp_path / "run")
    assert written == tmp_path / "run" / RESULTS
    assert sorted(p.name for p in written.parent.iterdir()) == sorted([RESULTS, UNITS])
    head = json.loads(written.read_text(encoding="utf-8"))
    assert not set(PER_UNIT) & set(head)
    assert head["claims"] == plain["claims"] and head["summary"] == plain["summary"]
    assert head["per_unit"]["file"] == UNITS and head["per_unit"]["keys"] == list(plain)
    inside = json.loads(gzip.decompress((tmp_path / "run" / UNITS).read_bytes()))
    assert list(inside) == list(PER_UNIT)
    assert json.dumps(read_results(tmp_path / "run")) == json.dumps(plain)  # order too
    summary = (PLAIN / "summary.md").read_text(encoding="utf-8")
    assert markdown_summary(load_results(written)) == summary
    indented = json.dumps({key: plain[key] for key in PER_UNIT}, indent=2)
    assert (tmp_path / "run" / UNITS).stat().st_size < len(indented) / 3


def test_the_same_values_give_the_same_bytes(plain: dict[str, Any], tmp_path: Path) -> None:
    """No time or name in the gzip header: a rerun rewrites identical files."""
    save_results(plain, tmp_path / "a")
    save_results(plain, tmp_path / "b")
    for name in (RESULTS, UNITS):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_the_plain_form_is_still_written_on_request(plain: dict[str, Any],
                                                    tmp_path: Path) -> None:
    """compact=False writes the earlier form, byte for byte, and removes a per-unit file
    left by an earlier compact write; a compact write over a plain one reads back."""
    save_results(plain, tmp_path)
    save_results(plain, tmp_path, compact=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [RESULTS]
    assert (tmp_path / RESULTS).read_bytes() == (PLAIN / RESULTS).read_bytes()
    save_results(read_results(tmp_path), tmp_path)
    assert json.dumps(read_results(tmp_path)) == json.dumps(plain)


def _one_line_naming(exc: pytest.ExceptionInfo[InputError], path: Path) -> None:
    message = str(exc.value)
    assert "\n" not in message and f"'{path}'" in message, message


@pytest.fixture
def compact(plain: dict[str, Any], tmp_path: Path) -> Path:
    save_results(plain, tmp_path / "run")
    return tmp_path / "run"


def test_a_missing_or_broken_results_json_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist") as exc:
        read_results(tmp_path / "nowhere")
    _one_line_naming(exc, tmp_path / "nowhere")
    (tmp_path / RESULTS).write_text('{"config": ', encoding="utf-8")
    with pytest.raises(InputError, match="not readable JSON") as exc:
        load_results(tmp_path)
    _one_line_naming(exc, tmp_path / RESULTS)
    (tmp_path / RESULTS).write_text('{"config": {}}', encoding="utf-8")
    with pytest.raises(InputError, match="not the results of `rsigradcam evaluate`") as exc:
        load_results(tmp_path)
    _one_line_naming(exc, tmp_path / RESULTS)


def test_a_missing_per_unit_file_is_one_line(compact: Path) -> None:
    (compact / UNITS).unlink()
    with pytest.raises(InputError, match="cannot be read") as exc:
        load_results(compact)
    _one_line_naming(exc, compact / UNITS)


def test_a_per_unit_file_of_another_run_is_refused(plain: dict[str, Any], compact: Path,
                                                   tmp_path: Path) -> None:
    other = {**plain, "images": plain["images"][:1]}
    save_results(other, tmp_path / "other")
    shutil.copy(tmp_path / "other" / UNITS, compact / UNITS)
    with pytest.raises(InputError, match="SHA-256 differs") as exc:
        read_results(compact)
    _one_line_naming(exc, compact / UNITS)


def test_a_corrupt_per_unit_file_is_one_line(compact: Path) -> None:
    """Bytes that match the recorded digest but are not gzip JSON (a truncated copy)."""
    import hashlib

    broken = (compact / UNITS).read_bytes()[:200]
    (compact / UNITS).write_bytes(broken)
    head = json.loads((compact / RESULTS).read_text(encoding="utf-8"))
    head["per_unit"]["sha256"] = hashlib.sha256(broken).hexdigest()
    (compact / RESULTS).write_text(json.dumps(head), encoding="utf-8")
    with pytest.raises(InputError, match="not gzip-compressed JSON") as exc:
        read_results(compact)
    _one_line_naming(exc, compact / UNITS)


def test_results_that_name_another_folder_are_refused(compact: Path) -> None:
    head = json.loads((compact / RESULTS).read_text(encoding="utf-8"))
    head["per_unit"]["file"] = "../elsewhere.json.gz"
    (compact / RESULTS).write_text(json.dumps(head), encoding="utf-8")
    with pytest.raises(InputError, match="not a file name") as exc:
        read_results(compact)
    _one_line_naming(exc, compact / RESULTS)


def test_the_committed_evidence_reads_back_to_its_summary() -> None:
    """docs/evidence/imagenet-500 is in the compact form, and its summary.md is the one made
    from the results read back."""
    folder = Path(__file__).resolve().parents[2] / "docs" / "evidence" / "imagenet-500"
    results = load_results(folder)
    assert results.accuracy is not None and results.accuracy.top1 == 362
    assert len(results.images) == 500
    summary = (folder / "summary.md").read_text(encoding="utf-8")
    assert markdown_summary(results) == summary
