"""docs/architecture.md's "How to add a method" example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from rsigradcam import METHODS, Explanation, GradCAM
from tests.helpers import make_case

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def example_code() -> str:
    """The Python code block of the section "How to add a method"."""
    section = DOC.read_text(encoding="utf-8").split("## How to add a method", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "the section has one Python example"
    return str(blocks[0])


def test_add_a_method_example_runs_on_a_tiny_model():
    model, images = make_case(13, n=2)
    namespace: dict[str, object] = {"model": model, "images": images}
    before = dict(METHODS)
    exec(compile(example_code(), str(DOC), "exec"), namespace)
    exp = namespace["exp"]
    assert isinstance(exp, Explanation) and exp.method == "xgradcam"
    assert exp.layer == "act"  # "auto": the last spatial layer of the tiny CNN
    # Its weights are XGrad-CAM's: the activation-weighted gradient sums of Grad-CAM's pass.
    grad = GradCAM(model, "act")(images)
    assert isinstance(grad, Explanation)
    assert isinstance(namespace["XGradCAM"], type)
    activation = _activation(model, images)
    share = activation / activation.sum(dim=(2, 3), keepdim=True).clamp(min=1e-12)
    torch.testing.assert_close(exp.weights, (grad.attributions * share).sum(dim=(2, 3)))
    assert dict(METHODS) == before  # the example registers nothing by itself


def _activation(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The last layer's output A(x), read with a plain forward hook."""
    found: list[torch.Tensor] = []
    handle = model.get_submodule("act").register_forward_hook(
        lambda module, args, out: found.append(out.detach())
    )
    try:
        with torch.no_grad():
            model(images)
    finally:
        handle.remove()
    return found[0]
