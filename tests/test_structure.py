"""The package's structure: the library stays light and never imports the application,
module imports form no cycle, no private name crosses a module line, and modules stay small.

The import graph is read from the source (AST), not from a running interpreter, so that
every module counts, including the ones no test imports.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "rsigradcam"
APP = f"{PACKAGE}.app"
#: Modules the library must not load when imported.
HEAVY = ("typer", "rich", "matplotlib", "gradio")
MAX_LINES = 550


# --------------------------------------------------------------------------------------
# Reading the imports
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    """One imported module (or name of a module) as written in a source file."""

    module: str  # the module the statement names (``from X import ...``: X)
    names: tuple[str, ...]  # ``from X import a, b``: ("a", "b"); ``import X``: ()
    line: int
    top_level: bool  # runs when the module is imported (not in a function, not TYPE_CHECKING)


def module_files(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of ``package`` under ``root`` by its dotted name (packages by __init__)."""
    found: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(nodes: list[ast.stmt], top_level: bool) -> Iterator[tuple[ast.stmt, bool]]:
    """Every statement with whether it runs at import time (class bodies do; functions and
    ``if TYPE_CHECKING:`` bodies do not)."""
    for node in nodes:
        yield node, top_level
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _walk(node.body, False)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.body, False)
            yield from _walk(node.orelse, top_level)
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    yield from _walk([c for c in children if isinstance(c, ast.stmt)], top_level)
            for handler in getattr(node, "handlers", []):
                if isinstance(handler, ast.ExceptHandler):
                    yield from _walk(handler.body, top_level)


def imports_of(name: str, path: Path) -> list[Import]:
    """The imports of module ``name`` (relative imports resolved to absolute names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []
    for node, top_level in _walk(tree.body, True):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(alias.name, (), node.lineno, top_level))
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, module] if module else base)
            names = tuple(alias.name for alias in node.names)
            found.append(Import(module, names, node.lineno, top_level))
    return found


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(root: Path, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` that importing it runs first.

    An edge goes to each module named (``from pkg import sub`` where ``sub`` is a
    submodule counts as importing ``pkg.sub``), and to the packages above it whose
    ``__init__`` runs first, except the importer's own enclosing packages: those are
    already being imported when the importer runs, which is how a package ``__init__``
    re-exports its submodules without a cycle. ``from pkg import name`` (not a submodule)
    from inside ``pkg`` is an edge to ``pkg``'s ``__init__``: a real cycle with it.
    """
    files = module_files(root, package)
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        own = set(_ancestors(name))
        for found in imports_of(name, path):
            if not found.top_level:
                continue
            named = [f"{found.module}.{n}" for n in found.names]
            targets = [m for m in named if m in files]  # ``from pkg import submodule``
            if len(targets) < len(named) or not named:  # ``import X``, or names in X
                targets.append(found.module)
            for target in targets:
                above = [m for m in _ancestors(target) if m not in own]
                for module in [*above, target]:
                    if module in files and module != name:
                        graph[name].add(module)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or ``None`` when it is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def _is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def private_imports(root: Path, package: str = PACKAGE) -> list[str]:
    """Imports of a private name (``_x``) from another module, as ``file:line: what``.

    A private module (``pkg._common``) may be imported by modules inside ``pkg``; a
    private function, class or constant is private to its own module.
    """
    files = module_files(root, package)
    problems: list[str] = []
    for name, path in files.items():
        where = f"{path.relative_to(root)}"
        for found in imports_of(name, path):
            modules = [found.module]
            for item in found.names:
                if f"{found.module}.{item}" in files:
                    modules.append(f"{found.module}.{item}")
                elif _is_private(item):
                    problems.append(f"{where}:{found.line}: {item} from {found.module}")
            for module in modules:
                parts = module.split(".")
                for i, part in enumerate(parts):
                    owner = ".".join(parts[:i])  # the package the private module belongs to
                    if _is_private(part) and not (name == owner or name.startswith(owner + ".")):
                        problems.append(f"{where}:{found.line}: module {module}")
                        break
    return problems


# --------------------------------------------------------------------------------------
# (a) import rsigradcam stays light
# --------------------------------------------------------------------------------------

_LOADED = (
    "import sys, {modules}; print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy} "
    "or m == {app!r} or m.startswith({app!r} + '.')))"
)


def _loaded_after_import(*modules: str, heavy: tuple[str, ...] = HEAVY) -> str:
    code = _LOADED.format(modules=", ".join(modules), heavy=heavy, app=APP)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_rsigradcam_loads_no_cli_terminal_or_plotting_module() -> None:
    assert _loaded_after_import(PACKAGE) == "[]"


def test_no_library_module_loads_the_cli_or_terminal_modules() -> None:
    """Every library module (all but rsigradcam.app), imported at once: no typer, rich,
    gradio or application module (matplotlib is imported inside the drawing functions)."""
    library = [
        name
        for name in module_files(SRC)
        if name != APP and not name.startswith(APP + ".") and not name.endswith("__main__")
    ]
    assert len(library) > 20
    heavy = tuple(h for h in HEAVY if h != "matplotlib")
    assert _loaded_after_import(*library, heavy=heavy) == "[]"
    assert _loaded_after_import(PACKAGE, heavy=HEAVY) == "[]"


# --------------------------------------------------------------------------------------
# (b) the library never imports the application
# --------------------------------------------------------------------------------------


def test_the_library_never_imports_the_application() -> None:
    files = module_files(SRC)
    offenders = [
        f"{path.relative_to(SRC)}:{found.line}: {found.module}"
        for name, path in files.items()
        if name != APP and not name.startswith(APP + ".")
        for found in imports_of(name, path)  # every import, lazy or not
        if any(
            module == APP or module.startswith(APP + ".")
            for module in [found.module, *(f"{found.module}.{n}" for n in found.names)]
        )
    ]
    assert APP in files and len(files) > 30
    assert offenders == []


# --------------------------------------------------------------------------------------
# (c) no import cycles
# --------------------------------------------------------------------------------------


def test_module_imports_form_no_cycle() -> None:
    graph = import_graph(SRC)
    # The graph is the real one: the methods package re-exports its methods, the registry
    # lists every method module, the application imports the library. (The top package
    # imports its exports on first use, so that the command line starts without torch.)
    assert "rsigradcam.methods.rsi" in graph["rsigradcam.methods"]
    assert "rsigradcam.methods.rsi" in graph["rsigradcam.methods.registry"]
    assert any(m.startswith(APP) for m in graph["rsigradcam.app.cli"])
    assert find_cycle(graph) is None


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_cycle_finder_tells_a_re_export_from_a_real_cycle(tmp_path: Path) -> None:
    """The rules of :func:`import_graph` on small packages."""
    base = {
        "pkg/__init__.py": "from pkg.a import A\nfrom pkg.sub import B\n",
        "pkg/a.py": "from pkg.sub.b import B\nA = B\n",
        "pkg/sub/__init__.py": "from .b import B\n",
        "pkg/sub/b.py": "import os\nB = 1\n",
    }
    ok = _write_package(tmp_path / "ok", base)
    assert find_cycle(import_graph(ok, "pkg")) is None  # __init__ re-exports: no cycle
    lazy = _write_package(
        tmp_path / "lazy",
        {
            **base,
            "pkg/sub/b.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import A\n"
                "def f():\n    from pkg import A\n    return A\nB = 1\n"
            ),
        },
    )
    assert find_cycle(import_graph(lazy, "pkg")) is None  # typing-only and lazy imports
    from_own_init = _write_package(
        tmp_path / "init", {**base, "pkg/sub/b.py": "from pkg import A\nB = 1\n"}
    )
    assert find_cycle(import_graph(from_own_init, "pkg")) is not None
    # b imports a module of another package whose __init__ leads back to b.
    via_init = _write_package(
        tmp_path / "via", {**base, "pkg/sub/b.py": "import pkg.c\nB = 1\n",
                           "pkg/c.py": "from pkg.a import A\n"}
    )
    assert find_cycle(import_graph(via_init, "pkg")) == [
        "pkg.a", "pkg.sub", "pkg.sub.b", "pkg.c", "pkg.a"
    ]


# --------------------------------------------------------------------------------------
# (d) no private name crosses a module line
# --------------------------------------------------------------------------------------


#: Private modules of other packages that the project uses on purpose, and why.
ALLOWED_PRIVATE_IMPORTS = {
    # Inductor's freezing switch for compile=True on a CPU; PyTorch's CPU inference
    # guides set it this way, and torch.compile(options=...) is read too late for it.
    "rsigradcam/core/inference.py: module torch._inductor.config",
}


def test_no_private_name_is_imported_across_modules() -> None:
    found = private_imports(SRC)
    assert [f for f in found if re.sub(r":\d+:", ":", f) not in ALLOWED_PRIVATE_IMPORTS] == []


def test_private_import_rules(tmp_path: Path) -> None:
    root = _write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/m/__init__.py": "from pkg.m import _util\n",
            "pkg/m/_util.py": "def helper(): ...\ndef _hidden(): ...\n",
            "pkg/m/user.py": "from pkg.m._util import helper\nfrom . import _util\n",
            "pkg/other.py": "from pkg.m._util import helper\nfrom pkg.m._util import _hidden\n",
        },
    )
    assert private_imports(root, "pkg") == [
        "pkg/other.py:1: module pkg.m._util",
        "pkg/other.py:2: _hidden from pkg.m._util",
        "pkg/other.py:2: module pkg.m._util",
    ]


# --------------------------------------------------------------------------------------
# (e) small modules
# --------------------------------------------------------------------------------------


def test_every_module_is_at_most_about_550_lines() -> None:
    long = {
        str(path.relative_to(SRC)): n
        for path in module_files(SRC).values()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"
