"""Code the tests share: small models, model-state snapshots, loading files as modules.

Fixtures live in conftest.py; everything a test imports by name lives here (or, for the
larger reference implementations and models, in tests/reference/ and the model modules
beside this one). No test imports another test module.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import struct
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor, nn


class SmallCNN(nn.Module):
    """A small classifier with named layers, like the ones users explain."""

    def __init__(self, classes: int = 5, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            act(),
            nn.Conv2d(6, 8, 3, stride=2, padding=1),
            nn.BatchNorm2d(8),
            act(),
        )
        self.conv = nn.Conv2d(8, 12, 3, padding=1)
        self.act = act()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv(self.features(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def make_cnn(seed: int = 0, dtype: torch.dtype = torch.float32, **kwargs: object) -> SmallCNN:
    torch.manual_seed(seed)
    model = SmallCNN(**kwargs)  # type: ignore[arg-type]
    # Non-trivial BatchNorm statistics, so eval mode matters.
    bn = model.features[3]
    bn.running_mean.uniform_(-0.2, 0.2)
    bn.running_var.uniform_(0.5, 1.5)
    return model.to(dtype).eval()


class SpatialCNN(nn.Module):
    """SmallCNN's layout for signals (dims=1), images (2), volumes or video (3).

    ``factorised=True`` (3-D only) splits the first convolution into a spatial (1, 3, 3)
    and a temporal (3, 1, 1) one, as (2+1)-D video networks do on (N, C, T, H, W).
    """

    def __init__(
        self, dims: int, in_channels: int, classes: int = 4, factorised: bool = False
    ) -> None:
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
        norm = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims]
        pool = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[dims]
        first: list[nn.Module] = (
            [conv(in_channels, 6, (1, 3, 3), padding=(0, 1, 1)), nn.ReLU(),
             conv(6, 6, (3, 1, 1), padding=(1, 0, 0))]
            if factorised
            else [conv(in_channels, 6, 3, padding=1)]
        )
        self.features = nn.Sequential(
            *first, nn.ReLU(), conv(6, 8, 3, stride=2, padding=1), norm(8), nn.ReLU()
        )
        self.conv = conv(8, 10, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = pool(1)
        self.fc = nn.Linear(10, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv(self.features(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def make_spatial_case(
    shape: tuple[int, ...], seed: int = 0, n: int = 2, factorised: bool = False,
    dtype: torch.dtype = torch.float64,
) -> tuple[SpatialCNN, torch.Tensor]:
    """A :class:`SpatialCNN` for inputs (C, *S) = ``shape`` and ``n`` random inputs."""
    torch.manual_seed(seed)
    model = SpatialCNN(len(shape) - 1, shape[0], factorised=factorised)
    bn = model.features[-2]  # non-trivial statistics, as in make_cnn
    bn.running_mean.uniform_(-0.2, 0.2)
    bn.running_var.uniform_(0.5, 1.5)
    return model.to(dtype).eval(), torch.randn(n, *shape, dtype=dtype)


class DictSegmenter(nn.Module):
    """A segmentation model whose output is a dict: (N, K, H, W) scores under ``"maps"``."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(6, classes, 1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"maps": self.head(self.body(x)), "features": x.mean(dim=1)}


class Detector(nn.Module):
    """A torchvision-style detector: one dict of boxes, labels and scores per image.

    Two fixed boxes per image; their scores are a sigmoid of the pooled features, so that
    they depend on the image through ``body``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.score = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> list[dict[str, Tensor]]:
        scores = torch.sigmoid(self.score(self.body(x).mean(dim=(2, 3))))
        boxes = torch.tensor([[0.0, 0.0, 6.0, 6.0], [4.0, 4.0, 12.0, 12.0]], dtype=x.dtype)
        labels = torch.tensor([1, 2])
        return [{"boxes": boxes, "labels": labels, "scores": s} for s in scores]


def model_state(model: nn.Module) -> dict[str, object]:
    """Everything a call could leave changed on a model."""
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "hooks": [
            (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for m in model.modules()
        ],
        "params": [p.detach().clone() for p in model.parameters()],
        "buffers": [b.detach().clone() for b in model.buffers()],
    }


def assert_same_state(before: dict[str, object], after: dict[str, object]) -> None:
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["hooks"] == after["hooks"]
    for a, b in zip(before["grads"], after["grads"], strict=True):  # type: ignore[call-overload]
        assert (a is None and b is None) or torch.equal(a, b)
    for key in ("params", "buffers"):
        for a, b in zip(before[key], after[key], strict=True):  # type: ignore[call-overload]
            assert torch.equal(a, b)


def make_case(seed: int, n: int = 3, size: int = 12) -> tuple[SmallCNN, torch.Tensor]:
    """A model and images whose maps are not all zero (checked for these seeds)."""
    model = make_cnn(seed=seed)
    torch.manual_seed(seed + 1)
    return model, torch.randn(n, 3, size, size)


def load_module(path: Path, name: str) -> ModuleType:
    """The Python file ``path`` as a module named ``name``.

    It is in ``sys.modules`` while it runs (dataclasses look their module up there), and
    taken out again afterwards.
    """
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


#: Why a comparison with the real pytorch-grad-cam is skipped.
PYTORCH_GRAD_CAM_MISSING = (
    "pytorch-grad-cam is not installed; `make install` installs it "
    "(pip install --no-deps grad-cam==1.5.7 ttach)"
)
#: The torchvision modules pytorch-grad-cam 1.5.7 imports when it is imported.
_TORCHVISION_MODULES = (
    "torchvision",
    "torchvision.transforms",
    "torchvision.transforms.functional",
    "torchvision.ops",
)


class _TorchvisionAbsent(ModuleType):
    """Stands in for a torchvision module while pytorch-grad-cam is imported.

    Every name it is asked for is a function that raises: pytorch-grad-cam's Grad-CAM, its
    classifier targets and ``scale_cam_image`` never call torchvision, so a test that gets
    this error used a part of pytorch-grad-cam that these tests cannot check.
    """

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)

        def absent(*args: object, **kwargs: object) -> None:
            raise RuntimeError(
                f"{self.__name__}.{name} was called, but torchvision is not installed here "
                "(no torchvision release supports this torch)."
            )

        return absent


@contextlib.contextmanager
def _torchvision_for_import() -> Iterator[None]:
    """Register placeholder torchvision modules for the duration of an import, if needed."""
    try:
        importlib.import_module("torchvision")
    except Exception:  # absent, or built for another torch
        pass
    else:
        yield
        return
    saved = {name: sys.modules.get(name) for name in _TORCHVISION_MODULES}
    for name in _TORCHVISION_MODULES:
        sys.modules[name] = _TorchvisionAbsent(name)
    try:
        yield
    finally:  # only pytorch-grad-cam's modules keep a reference to them
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def import_pytorch_grad_cam() -> ModuleType | None:
    """The real pytorch-grad-cam (package ``grad-cam``), or ``None`` when not installed.

    pytorch-grad-cam imports torchvision at import time (transforms for its image helpers,
    ``ops.box_iou`` for its detection target), and no torchvision wheel supports the torch
    these tests pin, while Grad-CAM and its targets need only torch, NumPy and OpenCV. So
    when torchvision cannot be imported, placeholders stand in for it during the import
    (:class:`_TorchvisionAbsent`: any use raises) and are removed after.
    """
    if importlib.util.find_spec("pytorch_grad_cam") is None:
        return None
    with _torchvision_for_import():
        return importlib.import_module("pytorch_grad_cam")


def load_benchmark(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` as a module (benchmarks are not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    return load_module(path, f"benchmark_{name}")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height RGB pixels but holds almost no data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


# Four classes: a red, green, blue or yellow disc on a noisy grey background. The last
# layer is fitted in build() so that each disc colour is its class.
DISCS_MODULE = '''
import numpy as np
import torch
from torch import nn

COLOURS = [(220, 40, 40), (40, 200, 60), (50, 70, 230), (235, 220, 40)]
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def picture(k, seed, size=224, radius=None):
    g = torch.Generator().manual_seed(seed)
    base = 100 + 40 * torch.rand(3, size, size, generator=g)
    r = int(torch.randint(30, 60, (1,), generator=g)) if radius is None else radius
    cy, cx = torch.randint(r, size - r, (2,), generator=g).tolist()
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    colour = torch.tensor(COLOURS[k], dtype=torch.float32).view(3, 1, 1)
    image = torch.where(disc, colour, base).round().clamp(0, 255).to(torch.uint8)
    return image.permute(1, 2, 0).numpy()


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=4, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def build():
    torch.manual_seed(0)
    model = Tiny().eval()
    x = torch.stack([torch.from_numpy(picture(k, 100 + k, radius=45)) for k in range(4)])
    x = (x.permute(0, 3, 1, 2).float() / 255 - MEAN) / STD
    with torch.no_grad():
        f = torch.flatten(model.pool(model.features(x)), 1)
        a = torch.cat([f, torch.ones(4, 1)], dim=1).double()
        w = torch.linalg.pinv(a) @ (5.0 * torch.eye(4, dtype=torch.float64))
        model.fc.weight.copy_(w[:-1].T.float())
        model.fc.bias.copy_(w[-1].float())
    return model
'''
