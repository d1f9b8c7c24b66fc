"""The migration notes' code runs as written; the Python API guide links them.

A ```python block preceded by ``<!-- not run: needs PACKAGE -->`` uses the other library.
It is compiled here, and run too where that package is installed (both are installed by
`make install`). Every other block runs, in order, in one namespace.
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import import_pytorch_grad_cam

ROOT = Path(__file__).resolve().parents[2]
DOCS = {
    "pytorch-grad-cam": ROOT / "docs" / "from-pytorch-grad-cam.md",
    "captum": ROOT / "docs" / "from-captum.md",
    "monai": ROOT / "docs" / "from-monai.md",
}
BLOCK = re.compile(
    r"(?:<!-- not run: needs (?P<needs>[\w-]+) -->\n)?```python\n(?P<code>.*?)```", re.S
)


@dataclass(frozen=True)
class Block:
    code: str
    needs: str | None  # the package a "before" block needs, or None for a block that runs
    line: int


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    return [
        Block(m["code"], m["needs"], text.count("\n", 0, m.start("code")) + 1)
        for m in BLOCK.finditer(text)
    ]


def installed(package: str) -> bool:
    if package == "pytorch-grad-cam":  # imported here: it needs help without torchvision
        return import_pytorch_grad_cam() is not None
    return importlib.util.find_spec(package.replace("-", "_")) is not None


def run(path: Path, with_before: bool) -> dict[str, object]:
    namespace: dict[str, object] = {"__name__": f"doc_{path.stem.replace('-', '_')}"}
    for block in blocks(path):
        # Blank lines pad the code so that a traceback names the line in the document.
        code = compile("\n" * (block.line - 1) + block.code, str(path), "exec")
        if block.needs is None or (with_before and installed(block.needs)):
            exec(code, namespace)
    return namespace


@pytest.mark.parametrize("name", list(DOCS))
def test_each_note_has_setup_before_and_after_of_about_ten_lines(name):
    found = blocks(DOCS[name])
    before = [b for b in found if b.needs is not None]
    after = [b for b in found if b.needs is None]
    assert len(before) == 1 and before[0].needs == name
    assert len(after) == 2  # the setup (a small model), then the "after" code
    for block in (before[0], after[1]):
        lines = [line for line in block.code.splitlines() if line.strip()]
        assert 3 <= len(lines) <= 12, block.code
    assert name.replace("-", "_") in before[0].code  # the "before" uses the other library
    assert "rsigradcam" not in before[0].code and "rsigradcam" in after[1].code


def test_pytorch_grad_cam_note_runs_as_written():
    # Warnings are errors: a map that is zero everywhere would make the example hollow.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        namespace = run(DOCS["pytorch-grad-cam"], with_before=True)
    maps = namespace["grayscale_cam"]
    assert isinstance(maps, np.ndarray) and maps.shape == (2, 32, 32)
    assert maps.min() >= 0 and maps.max() == pytest.approx(1.0)
    assert np.asarray(namespace["visualization"]).shape == (32, 32, 3)
    # The front-end's maps are the library's heatmaps.
    import rsigradcam

    model, x = namespace["model"], namespace["input_tensor"]
    exp = rsigradcam.RSIGradCAM(model, "layer4.1", steps=50, output="softmax")(x, [3, 7])
    np.testing.assert_allclose(maps, exp.heatmap.numpy(), atol=1e-6)


def test_captum_note_runs_as_written():
    pytest.importorskip("captum")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        namespace = run(DOCS["captum"], with_before=True)
    attr, delta = namespace["attr"], namespace["delta"]
    assert isinstance(attr, torch.Tensor) and attr.shape == (2, 1, 16, 16)
    assert isinstance(delta, torch.Tensor) and delta.shape == (2,)
    assert float(attr.max()) > 0
    assert namespace["upsampled"].shape == (2, 1, 32, 32)  # type: ignore[attr-defined]


def test_monai_note_runs_as_written():
    # The "after" block runs without MONAI: the front-end does not import it.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        namespace = run(DOCS["monai"], with_before=False)
    result, raw, gap = namespace["result"], namespace["raw"], namespace["gap"]
    assert isinstance(result, torch.Tensor) and result.dtype == torch.float32
    assert float(result.min()) == 0.0 and float(result.max()) == 1.0  # MONAI's normaliser
    assert isinstance(gap, torch.Tensor) and gap.shape == (2,) and bool(torch.isfinite(gap).all())
    assert isinstance(raw, torch.Tensor) and float(raw.max()) > 0


def test_monai_note_before_is_the_front_ends_gradcam():
    pytest.importorskip("monai", reason="MONAI is not installed: pip install 'rsigradcam[medical]'")
    from rsigradcam.integrations.monai import GradCAM

    setup, before, _ = blocks(DOCS["monai"])
    namespace: dict[str, object] = {"__name__": "doc_from_monai"}
    exec(setup.code, namespace)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MONAI's hooks on module outputs
        exec(before.code, namespace)
    theirs = namespace["result"]
    assert isinstance(theirs, torch.Tensor) and theirs.shape == (2, 1, 16, 16, 16)
    model, volumes = namespace["model"], namespace["volumes"]
    ours = GradCAM(nn_module=model, target_layers="layer4")(x=volumes, class_idx=1)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_the_python_api_guide_links_the_migration_notes():
    guide = (ROOT / "docs" / "guides" / "python-api.md").read_text(encoding="utf-8")
    assert "## Coming from pytorch-grad-cam or Captum" in guide
    section = guide.split("## Coming from pytorch-grad-cam or Captum", 1)[1].split("\n## ", 1)[0]
    assert "(../from-pytorch-grad-cam.md)" in section and "(../from-captum.md)" in section
    assert "(../from-monai.md)" in section
    # Both scores of the pytorch-grad-cam front-end, the paper's marked as recommended.
    assert 'output="softmax"' in section and "ClassifierOutputSoftmaxTarget" in section
    assert "recommended" in section and "relu_attributions=False" in section
