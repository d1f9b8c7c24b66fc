"""The authors' architectures in pure torch: ResNet-50 and VGG-19 with torchvision's names.

The authors' PyTorch notebooks explain torchvision's ``resnet50`` at ``layer4[-1].conv3``
and ``layer3[-1].conv3`` and ``vgg19`` at ``features[36]`` and ``features[27]``.
torchvision cannot be imported beside this torch, so these are written out here, module
for module as torchvision builds them (torchvision/models/resnet.py and vgg.py), with the
same module names, the same order of operations and the same in-place ReLUs:

- ResNet-50: ``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1`` ... ``layer4`` of 3, 4,
  6, 3 ``Bottleneck`` blocks, ``avgpool``, ``fc``. A block has ``conv1``/``bn1``,
  ``conv2``/``bn2`` (the stride, "ResNet v1.5"), ``conv3``/``bn3``, one ``relu``
  (``ReLU(inplace=True)``) used three times, and ``downsample`` (a Sequential of a 1x1
  conv and a BatchNorm) on the first block of each stage. After ``conv3`` come ``bn3``,
  the in-place residual add ``out += identity`` and the in-place ReLU.
- VGG-19 (configuration "E", no BatchNorm): ``features`` is a Sequential of
  ``Conv2d(3x3, padding=1)``, ``ReLU(inplace=True)`` and ``MaxPool2d(2, 2)``; then
  ``avgpool`` (``AdaptiveAvgPool2d((7, 7))``) and ``classifier`` (Linear, ReLU(inplace),
  Dropout, Linear, ReLU(inplace), Dropout, Linear). The indices of ``features``, computed
  from that configuration (:data:`VGG19_POOLS`, :data:`VGG19_LAST_CONVS`): the max-pools
  are 4, 9, 18, 27 and 36 (Keras's ``block1_pool`` ... ``block5_pool``); ``features.27``
  ends block 4 (after conv 25 and its ReLU 26), ``features.34`` is the last conv,
  ``features.35`` its ReLU and ``features.36`` the last max-pool; ``len(features) == 37``.

Random weights (torchvision's initialisation), seeded. ``width`` scales every channel
count and ``hidden`` the VGG classifier's width, so the tests can run the same graph at a
fraction of the cost; the defaults (64, 4096) are torchvision's sizes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rsigradcam.constants import IMAGENET_NORMALIZE

#: torchvision's VGG-19 configuration "E": channel counts, "M" for a max-pool.
VGG19_CONFIG: list[int | str] = [
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
    512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
]  # fmt: skip


def _feature_indices() -> tuple[list[int], list[int]]:
    """Indices in ``features`` of the max-pools, and of the last conv of each block."""
    pools, last_convs, index, last_conv = [], [], 0, -1
    for item in VGG19_CONFIG:
        if item == "M":
            pools.append(index)
            last_convs.append(last_conv)
            index += 1
        else:
            last_conv = index
            index += 2  # the conv and its ReLU
    return pools, last_convs


#: ``features`` indices of VGG-19's five max-pools: [4, 9, 18, 27, 36].
#: ``features`` indices of the last conv of each block: [2, 7, 16, 25, 34].
VGG19_POOLS, VGG19_LAST_CONVS = _feature_indices()

#: The layers of the authors' PyTorch notebooks, as ``layer=`` names them.
RESNET50_AUTHORS_LAYERS = ("layer4.2.conv3", "layer3.5.conv3")
VGG19_AUTHORS_LAYERS = ("features.36", "features.27")


def _conv1x1(inplanes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False)


def _conv3x3(inplanes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)


class Bottleneck(nn.Module):
    """torchvision's ``Bottleneck`` (stride on the 3x3 conv, one in-place ReLU module)."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet50(nn.Module):
    """torchvision's ``resnet50`` (layers 3, 4, 6, 3), random weights.

    Args:
        num_classes: Outputs of ``fc``.
        width: Channels of ``conv1`` (torchvision: 64); every stage scales with it.
    """

    def __init__(self, num_classes: int = 1000, width: int = 64) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, 3)
        self.layer2 = self._make_layer(2 * width, 4, stride=2)
        self.layer3 = self._make_layer(4 * width, 6, stride=2)
        self.layer4 = self._make_layer(8 * width, 3, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width * Bottleneck.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * Bottleneck.expansion, stride),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class VGG19(nn.Module):
    """torchvision's ``vgg19`` (configuration "E", no BatchNorm), random weights.

    Args:
        num_classes: Outputs of the last Linear.
        width: Channels of the first block (torchvision: 64); the others scale with it.
        hidden: Width of the two hidden Linear layers (torchvision: 4096).
    """

    def __init__(self, num_classes: int = 1000, width: int = 64, hidden: int = 4096) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG19_CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out = int(item) * width // 64
                layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), nn.ReLU(True)]
                channels = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, hidden),
            nn.ReLU(True),
            nn.Dropout(p=0.5),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(p=0.5),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _calibrate(model: nn.Module, size: int, seed: int) -> None:
    """Give the BatchNorm layers the running statistics of random images along the path.

    With torchvision's initial statistics (mean 0, variance 1) the activations of a random
    50-layer network grow from stage to stage; calibrated, they keep a trained network's
    scale in eval mode. Only the running statistics change, not the weights.
    """
    generator = torch.Generator().manual_seed(seed + 1)
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # a cumulative average over the calibration batches
    mean = torch.tensor(IMAGENET_NORMALIZE[0]).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_NORMALIZE[1]).view(1, 3, 1, 1)
    with torch.no_grad():
        for _ in range(2):
            # Pixels in [0, 1] at brightness 0 ... 1 (black baseline to image), normalised.
            pixels = torch.rand(8, 3, size, size, generator=generator)
            pixels = pixels * torch.linspace(0, 1, 8).view(8, 1, 1, 1)
            model((pixels - mean) / std)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1


def resnet50(
    num_classes: int = 10, width: int = 64, seed: int = 0, calibrate_size: int | None = 64
) -> ResNet50:
    """A seeded random ResNet-50 in eval mode.

    Args:
        num_classes: Outputs of ``fc``.
        width: Channels of ``conv1`` (torchvision: 64).
        seed: Seed of the weights and of the calibration images.
        calibrate_size: Side of the random images that set the BatchNorm statistics;
            ``None`` keeps torchvision's initial ones.
    """
    torch.manual_seed(seed)
    model = ResNet50(num_classes, width)
    if calibrate_size is not None:
        _calibrate(model, calibrate_size, seed)
    return model.eval()


def vgg19(num_classes: int = 10, width: int = 64, hidden: int = 4096, seed: int = 0) -> VGG19:
    """A seeded random VGG-19 in eval mode (see :class:`VGG19` for the arguments)."""
    torch.manual_seed(seed)
    return VGG19(num_classes, width, hidden).eval()
