"""Speed on models users build themselves: the default ``speed="auto"`` against the model as given.

The library's speed does not depend on knowing the model. This script times, on two
models written in plain PyTorch the way a user writes them (not the embedded model):

* **ResNet-50**, module for module as torchvision builds it (``tests/architectures.py``:
  in-place ReLUs, 53 BatchNorms after their convolutions, random weights with calibrated
  BatchNorm statistics), explained at ``layer4`` (its last block's output, 7 x 7);
* **EfficientNet-Lite0 written independently**: ``nn.Conv2d`` with symmetric padding,
  ``nn.BatchNorm2d``, ``nn.ReLU6`` in ``nn.Sequential`` blocks, as in many public
  re-implementations; random weights, calibrated statistics; explained at ``head``.

For each, in one process and interleaved run by run (``rsigradcam.app.speed.speed_table``):
our call with the default ``speed="auto"`` (the checked private copy), with
``speed="off"`` (the model as given), and the eager no-grad forward of the same 51 points
at its best batch size (the floor); and the largest heatmap difference between the two
calls, with what the default call reports it ran (``Explanation.model_run``).

Run from the repository root, on a quiet machine (about 3 minutes on 2 CPU cores)::

    python benchmarks/user_models.py    # writes benchmarks/user_models.md and .json
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/architectures.py: the pure-torch ResNet-50

from tests.architectures import resnet50  # noqa: E402

from rsigradcam import RSIGradCAM  # noqa: E402
from rsigradcam.app.speed import speed_table  # noqa: E402
from rsigradcam.files import md_cell, save_json, save_text  # noqa: E402
from rsigradcam.io import load_image  # noqa: E402

STEPS = 50
REPEATS = 5


def _conv_bn_act(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=False))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """An MBConv block without squeeze-and-excite, as EfficientNet-Lite uses."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = _conv_bn_act(cin, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn_act(mid, mid, kernel, stride, groups=mid)
        self.project = _conv_bn_act(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Expand, depthwise, project; add the input where the shapes allow."""
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.residual else out


class UserEfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 as a user writes it: symmetric padding, plain torch modules."""

    STAGES = ((3, 1, 1, 32, 16, 1), (3, 2, 6, 16, 24, 2), (5, 2, 6, 24, 40, 2),
              (3, 2, 6, 40, 80, 3), (5, 1, 6, 80, 112, 3), (5, 2, 6, 112, 192, 4),
              (3, 1, 6, 192, 320, 1))

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = _conv_bn_act(3, 32, 3, 2)
        blocks: list[nn.Module] = []
        for kernel, stride, expand, cin, cout, repeats in self.STAGES:
            for i in range(repeats):
                blocks.append(InvertedResidual(cin if i == 0 else cout, cout, kernel,
                                               stride if i == 0 else 1, expand))
        self.blocks = nn.Sequential(*blocks)
        self.head = _conv_bn_act(320, 1280, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the class logits."""
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


def _calibrated(model: nn.Module, seed: int = 0) -> nn.Module:
    """BatchNorm statistics of random images, so that eval-mode activations keep their scale."""
    g = torch.Generator().manual_seed(seed)
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(8, 3, 224, 224, generator=g))
    return model.eval()


def _case(name: str, model: nn.Module, layer: str, image: torch.Tensor) -> dict[str, Any]:
    rows = speed_table(model, image, layer, STEPS, REPEATS, include=("ours", "eager", "floor"))
    fast = RSIGradCAM(model, layer, steps=STEPS)(image)
    plain = RSIGradCAM(model, layer, steps=STEPS, speed="off")(image)
    return {
        "model": name,
        "layer": layer,
        "rows": [
            {"method": r.method, "seconds": r.seconds, "seconds_all": r.seconds_all,
             "ratio_to_floor": r.ratio_to_floor}
            for r in rows
        ],
        "max_heatmap_diff": float((fast.heatmap - plain.heatmap).abs().max()),
        "model_run": fast.model_run.describe(),
    }


def _markdown(meta: dict[str, Any], cases: list[dict[str, Any]]) -> str:
    lines = [
        "# Speed on user-built models",
        "",
        f"Image `chelsea` at 224 x 224, m = {STEPS} ({STEPS + 1} points), median of "
        f"{REPEATS} runs after a warm-up, interleaved; torch {meta['torch']}, "
        f"{meta['threads']} threads, {meta['cpu']}. Command: `python benchmarks/user_models.py`.",
        "",
        "| model | layer | contender | s | × floor |",
        "|---|---|---|---:|---:|",
    ]
    for case in cases:
        for row in case["rows"]:
            lines.append(
                f"| {md_cell(case['model'])} | `{case['layer']}` | {md_cell(row['method'])} | "
                f"{row['seconds']:.3f} | {row['ratio_to_floor']:.2f} |"
            )
    lines += ["", "| model | what the default call ran | max heatmap difference, auto vs off |",
              "|---|---|---:|"]
    for case in cases:
        lines.append(f"| {md_cell(case['model'])} | {md_cell(case['model_run'])} | "
                     f"{case['max_heatmap_diff']:.2g} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Measure both models; write ``benchmarks/user_models.md`` and ``.json``."""
    from skimage import data

    from rsigradcam.app.bench import _cpu_name

    torch.manual_seed(0)
    image = load_image(data.chelsea())[0]  # type: ignore[no-untyped-call]
    models = [
        ("ResNet-50 (pure torch, torchvision's modules)", resnet50(num_classes=1000,
                                                                    calibrate_size=224),
         "layer4"),
        ("EfficientNet-Lite0 written independently", _calibrated(UserEfficientNetLite0()),
         "head"),
    ]
    cases = [_case(name, model, layer, image) for name, model, layer in models]
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": _cpu_name()}
    out = ROOT / "benchmarks"
    save_json({"meta": meta, "cases": cases}, out / "user_models.json")
    save_text(_markdown(meta, cases), out / "user_models.md")
    print(_markdown(meta, cases))


if __name__ == "__main__":
    main()
