"""The Python code of the documentation runs as written.

Every ```python block of a page under docs/ (and of what a page includes from README.md
with ``--8<-- "README.md:SECTION"``, as the site does) is one of:

- run here: a page's blocks run in order, in one namespace, in an empty folder that holds
  ``cat.jpg`` (scikit-image's chelsea), the file the examples name;
- ``<!-- run by tests/PATH.py -->`` on the line before it: that test runs it with the
  models and inputs the block names (the test must exist and name the page);
- ``<!-- not run: REASON -->`` on the line before it: it needs what a test cannot have
  (downloaded weights, a running server, your own model); the reason says what.
"""

from __future__ import annotations

import re
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(p for p in (ROOT / "docs").rglob("*.md") if "generated" not in p.parts)
_SNIPPET = re.compile(r'^--8<-- "(?P<file>[^":]+)(?::(?P<section>[\w-]+))?"$', re.M)
_BLOCK = re.compile(
    r"^(?P<indent> *)(?:<!-- (?P<kind>not run|run by)(?::)? (?P<why>.+?) -->\n(?P=indent))?"
    r"```python\n(?P<code>.*?)^(?P=indent)```",
    re.M | re.S,
)


@dataclass(frozen=True)
class Block:
    code: str
    kind: str | None  # None: run here; "run by" or "not run"
    why: str | None
    line: int


def expand_snippets(text: str) -> str:
    """The page as the site renders it: each ``--8<-- "FILE[:SECTION]"`` line replaced by
    that file (paths from the repository root), or by its section between the
    ``--8<-- [start:SECTION]`` and ``[end:SECTION]`` lines."""

    def include(match: re.Match[str]) -> str:
        included = (ROOT / match["file"]).read_text(encoding="utf-8")
        section = match["section"]
        if section is None:
            return included
        lines = included.splitlines()
        start = next(i for i, s in enumerate(lines) if f"--8<-- [start:{section}]" in s)
        end = next(i for i, s in enumerate(lines) if f"--8<-- [end:{section}]" in s)
        return "\n".join(lines[start + 1 : end])

    return _SNIPPET.sub(include, text)


def blocks(page: Path) -> list[Block]:
    text = expand_snippets(page.read_text(encoding="utf-8"))
    return [
        Block(
            textwrap.dedent(m["code"]) if m["indent"] else m["code"],
            m["kind"],
            m["why"],
            text.count("\n", 0, m.start("code")) + 1,
        )
        for m in _BLOCK.finditer(text)
    ]


def _name(page: Path) -> str:
    return page.relative_to(ROOT / "docs").as_posix()


RUN_HERE = [p for p in PAGES if any(b.kind is None for b in blocks(p))]


def test_the_pages_have_code_and_every_block_says_how_it_is_run() -> None:
    found = {_name(p): blocks(p) for p in PAGES}
    assert sum(map(len, found.values())) >= 20
    for name, page_blocks in found.items():
        text = (ROOT / "docs" / name).read_text(encoding="utf-8")
        assert len(page_blocks) >= text.count("```python"), f"{name}: a block not parsed"
        for block in page_blocks:
            if block.kind == "run by":
                test = ROOT / str(block.why)
                assert test.is_file(), f"{name}:{block.line}: no test {block.why}"
                assert Path(name).name in test.read_text(encoding="utf-8"), (name, block.why)
            elif block.kind == "not run":
                assert block.why and len(block.why) > 5, f"{name}:{block.line}: say why"
    # The README's example is a page's too (getting-started.md includes it).
    assert any("RSIGradCAM" in b.code and b.kind is None for b in found["getting-started.md"])
    assert {"getting-started.md", "guides/python-api.md"} <= {_name(p) for p in RUN_HERE}


@pytest.mark.slow
@pytest.mark.parametrize("page", RUN_HERE, ids=_name)
def test_the_page_runs_as_written(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image
    from skimage import data

    Image.fromarray(data.chelsea()).save(tmp_path / "cat.jpg")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"doc_{page.stem.replace('-', '_')}"}
    ran = 0
    # Warnings are errors: a map that is zero everywhere would make an example hollow.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for block in blocks(page):
            if block.kind is None:
                # Blank lines pad the code so that a traceback names the line in the page.
                exec(compile("\n" * (block.line - 1) + block.code, str(page), "exec"), namespace)
                ran += 1
    assert ran >= 1
