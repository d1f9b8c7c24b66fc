"""What the import contracts cannot say.

The contracts themselves (the library never imports the application, the library's layers,
no import cycle, private modules stay in their package) are import-linter's, in
pyproject.toml, and `make lint` checks them. Here: importing the library stays light, no
private name crosses a module line in the package, and the tests import only the library's
public names and the shared helpers (tests/helpers.py), never another test module.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import rsigradcam

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
TESTS = ROOT / "tests"
PACKAGE = "rsigradcam"
APP = f"{PACKAGE}.app"
#: Modules the library must not load when imported.
HEAVY = ("typer", "rich", "matplotlib", "gradio")


# --------------------------------------------------------------------------------------
# import rsigradcam stays light
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


def _library_modules() -> list[str]:
    """Every module of the package but the application's, by its dotted name."""
    found = [
        info.name
        for info in pkgutil.walk_packages(rsigradcam.__path__, f"{PACKAGE}.")
        if not (info.name == APP or info.name.startswith(APP + "."))
    ]
    return sorted(name for name in found if not name.endswith("__main__"))


def test_import_rsigradcam_loads_no_cli_terminal_or_plotting_module() -> None:
    assert _loaded_after_import(PACKAGE) == "[]"


def test_no_library_module_loads_the_cli_or_terminal_modules() -> None:
    """Every library module (all but rsigradcam.app), imported at once: no typer, rich,
    gradio or application module (matplotlib is imported inside the drawing functions)."""
    library = _library_modules()
    assert len(library) > 20
    heavy = tuple(h for h in HEAVY if h != "matplotlib")
    assert _loaded_after_import(*library, heavy=heavy) == "[]"


# --------------------------------------------------------------------------------------
# Imports of private names
# --------------------------------------------------------------------------------------


def _is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _imports(path: Path, package: str) -> Iterator[tuple[int, str, str | None]]:
    """``(line, module, name)`` for every import in ``path`` (``name`` is ``None`` for
    ``import module``); relative imports are resolved against ``package``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, module] if module else base)
            for alias in node.names:
                yield node.lineno, module, alias.name


def _python_files(root: Path, under: str) -> Iterator[tuple[str, Path]]:
    """``(package, path)`` for the Python files below ``root / under``."""
    for path in sorted((root / under).rglob("*.py")):
        parts = path.relative_to(root).parts
        yield ".".join(parts[:-1]), path


#: The package's modules by dotted name (packages by their own name).
MODULES = {
    ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
    for _, path in _python_files(SRC, PACKAGE)
}


#: Private modules of other packages that the library uses on purpose, and why.
ALLOWED_PRIVATE_MODULES = {
    # Inductor's freezing switch for compile=True on a CPU; PyTorch's CPU inference
    # guides set it this way, and torch.compile(options=...) is read too late for it.
    "torch._inductor.config",
}


def test_no_private_name_is_imported_across_library_modules() -> None:
    """A function, class or constant named ``_x`` is private to its module, and another
    package's private module is its own. (The library's private modules, ``pkg._common``,
    are the import-linter contract's.)"""
    problems = [
        f"{path.relative_to(ROOT)}:{line}: {module} {name or ''}"
        for package, path in _python_files(SRC, PACKAGE)
        for line, module, name in _imports(path, package)
        if module not in ALLOWED_PRIVATE_MODULES
        and (
            (name is not None and _is_private(name) and f"{module}.{name}" not in MODULES)
            or (not module.startswith(PACKAGE) and any(map(_is_private, module.split("."))))
        )
    ]
    assert problems == []


def _test_import_problem(module: str, name: str | None) -> str | None:
    """Why a test may not import ``name`` from ``module``, or ``None`` when it may."""
    full = module if name is None else f"{module}.{name}"
    parts = full.split(".")
    if parts[0] == "tests":
        if "conftest" in parts:
            return "conftest (fixtures reach tests by name; helpers live in tests/helpers.py)"
        if any(part.startswith("test_") for part in parts):
            return "another test module (shared code lives in tests/helpers.py)"
    elif parts[0] == PACKAGE and any(_is_private(part) for part in parts):
        return "a private library name (test the public one)"
    return None


def test_tests_import_no_test_module_conftest_or_private_library_name() -> None:
    problems = [
        f"{path.relative_to(ROOT)}:{line}: {module}{'' if name is None else ' ' + name}: {why}"
        for package, path in _python_files(ROOT, "tests")
        for line, module, name in _imports(path, package)
        if (why := _test_import_problem(module, name)) is not None
    ]
    assert problems == []


def test_the_test_import_rule_on_examples() -> None:
    assert _test_import_problem("tests.conftest", "make_case") is not None
    assert _test_import_problem("tests", "conftest") is not None
    assert _test_import_problem("tests.app.test_evaluate", "TINY_MODULE") is not None
    assert _test_import_problem("tests.app", "test_evaluate") is not None
    assert _test_import_problem("rsigradcam.core.adaptive", "_completeness") is not None
    assert _test_import_problem("rsigradcam.metrics._common", "x") is not None
    assert _test_import_problem("tests.helpers", "make_case") is None
    assert _test_import_problem("tests.reference.loop", "reference_rsi") is None
    assert _test_import_problem("rsigradcam.core.adaptive", "AdaptiveSchedule") is None
    assert _test_import_problem("torch.nn", "functional") is None
