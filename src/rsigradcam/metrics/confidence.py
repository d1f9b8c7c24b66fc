"""Average Drop and Increase in Confidence (Chattopadhay et al., "Grad-CAM++", WACV 2018).

The image is masked by its map, ``image ⊙ map``, and the explained class's softmax
probability on the masked image, O, is compared with the one on the image, Y::

    Average Drop %            = 100 · mean_i max(0, Y_i - O_i) / Y_i     (lower is better)
    Increase in Confidence %  = 100 · mean_i [O_i > Y_i]                 (higher is better)

The product is taken in pixel space: with normalised inputs and the default ``"black"``
substrate, ``substrate + map · (image - substrate)`` equals normalising
``map · pixels``. ``substrate="zeros"`` multiplies the normalised image instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from rsigradcam.baselines import Normalize
from rsigradcam.constants import IMAGENET_NORMALIZE
from rsigradcam.core.targets import TargetSpec
from rsigradcam.metrics._common import (
    check_batch_size,
    check_heatmaps,
    check_images,
    class_targets,
    predict,
)
from rsigradcam.metrics.substrate import SubstrateSpec, make_substrate
from rsigradcam.progress import progress_bar
from rsigradcam.serialization import JsonKeys

__all__ = ["ConfidenceResult", "average_drop_increase", "mask_images"]


@dataclass(frozen=True)
class ConfidenceResult:
    """Per-image confidences before and after masking (CPU float64 tensors).

    Attributes:
        original: (N,) Y, the explained class's probability on the image.
        masked: (N,) O, the same on the image masked by its map.
        drop: (N,) ``100 · max(0, Y - O) / Y`` (0 where Y = 0).
        increase: (N,) bool, ``O > Y``.
        targets: (N,) the explained classes.
        substrate: the substrate's name (``"custom"`` for a tensor or callable).
    """

    original: Tensor
    masked: Tensor
    drop: Tensor
    increase: Tensor
    targets: Tensor
    substrate: str

    @property
    def average_drop(self) -> float:
        """Average Drop, in percent (lower is better)."""
        return float(self.drop.mean())

    @property
    def increase_in_confidence(self) -> float:
        """Increase in Confidence, in percent of the images (higher is better)."""
        return float(self.increase.double().mean() * 100.0)

    # The JSON form (rsigradcam.serialization.encode): these keys, in this order.
    __json_keys__: ClassVar[JsonKeys] = (
        "substrate", "average_drop", "increase_in_confidence", "original", "masked", "drop",
        "increase", "targets",
    )


def mask_images(images: Tensor, heatmaps: Tensor, substrate: Tensor) -> Tensor:
    """``substrate + map · (images - substrate)``: the image where the map is 1.

    Where the map is 0 the substrate remains; in between, the mix is linear.

    Example:
        >>> x, fill = torch.ones(1, 1, 1, 2), torch.zeros(1, 1, 1, 2)
        >>> mask_images(x, torch.tensor([[[0.0, 0.25]]]), fill).tolist()
        [[[[0.0, 0.25]]]]
    """
    return substrate + heatmaps.unsqueeze(1) * (images - substrate)


def average_drop_increase(
    model: nn.Module,
    images: Tensor,
    heatmaps: Tensor,
    targets: TargetSpec = None,
    *,
    substrate: SubstrateSpec = "black",
    normalize: Normalize = IMAGENET_NORMALIZE,
    batch_size: int = 64,
    progress: bool = True,
) -> ConfidenceResult:
    """Average Drop and Increase in Confidence of ``images`` masked by ``heatmaps``.

    Args:
        model: Classifier ``(N, C, H, W) -> logits``; borrowed, never changed.
        images: (N, C, H, W) preprocessed images on the model's device.
        heatmaps: (N, H, W) maps in [0, 1], e.g. ``Explanation.heatmap``.
        targets: Class per image (``None``: each image's top-1 class).
        substrate: What a map of 0 leaves: ``"black"`` (default; ``image ⊙ map`` in pixel
            space), ``"zeros"`` (``image ⊙ map`` in the normalised space), ``"blur"``, a
            tensor or a callable (see :mod:`rsigradcam.metrics.substrate`).
        normalize: ``(mean, std)`` the images were normalised with (for ``"black"``).
        batch_size: Images per forward pass.
        progress: Show a progress bar on a terminal.

    Returns:
        A :class:`ConfidenceResult` with ``average_drop`` and ``increase_in_confidence``.

    Example:
        >>> r = average_drop_increase(model, images, exp.heatmap)  # doctest: +SKIP
        >>> r.average_drop, r.increase_in_confidence               # doctest: +SKIP
    """
    images = check_images(images, model)
    maps = check_heatmaps(heatmaps, images).to(images.dtype)
    batch_size = check_batch_size(batch_size)
    if bool((maps < 0).any()) or bool((maps > 1).any()):
        raise ValueError(
            "heatmaps must lie in [0, 1] to mask the images; use Explanation.heatmap or "
            "min-max normalise the maps first."
        )
    masked_images = mask_images(images, maps, make_substrate(substrate, images, normalize))
    n = images.shape[0]
    with progress_bar("average drop", 2 * n, progress) as advance:
        probs = predict(model, images, batch_size, advance)
        found = class_targets(targets, probs)
        masked_probs = predict(model, masked_images, batch_size, advance)
    y = probs.gather(1, found.view(-1, 1)).squeeze(1).to("cpu", torch.float64)
    o = masked_probs.gather(1, found.view(-1, 1)).squeeze(1).to("cpu", torch.float64)
    safe = torch.where(y > 0, y, torch.ones_like(y))
    drop = torch.where(y > 0, (y - o).clamp(min=0) / safe * 100.0, torch.zeros_like(y))
    return ConfidenceResult(
        original=y,
        masked=o,
        drop=drop,
        increase=o > y,
        targets=found.cpu(),
        substrate=substrate if isinstance(substrate, str) else "custom",
    )
