"""The grid pointing game, GridPG (Böhle, Fritz, Schiele, CVPR 2022).

Four images of distinct classes, each classified confidently at its native size, are
tiled into a 2 x 2 grid. A map explaining the class of one cell should put its positive
attribution inside that cell: the score is the positive attribution inside the cell
divided by the positive attribution in the whole grid. 1 is perfect localisation, and a
map spread uniformly scores the chance level 0.25.

Cells are numbered row by row: 0 top left, 1 top right, 2 bottom left, 3 bottom right.

The maps must be unnormalised, non-negative attributions: min-max normalisation (as in
``Explanation.heatmap``) subtracts each map's minimum and changes the ratio. Use
:func:`attribution_map`, the layer map upsampled to the grid size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsigradcam.explanation import Explanation
from rsigradcam.metrics._common import check_batch_size, check_images, predict
from rsigradcam.progress import progress_bar
from rsigradcam.serialization import JsonKeys

__all__ = [
    "CHANCE",
    "GridPGResult",
    "GridSet",
    "attribution_map",
    "cell_boxes",
    "gridpg",
    "gridpg_scores",
    "group_cells",
    "make_grids",
    "tile_grids",
]

CHANCE = 0.25
"""The GridPG score of a map spread uniformly over a 2 x 2 grid."""

GridExplainer = Callable[[Tensor, Tensor], Tensor]
"""``explain(images, targets) -> maps``: (B, C, 2H, 2W), (B,) -> (B, 2H, 2W)."""


def cell_boxes(height: int, width: int) -> list[tuple[int, int, int, int]]:
    """The four cells ``(top, left, bottom, right)`` of a grid of ``height x width`` cells.

    Example:
        >>> cell_boxes(2, 3)
        [(0, 0, 2, 3), (0, 3, 2, 6), (2, 0, 4, 3), (2, 3, 4, 6)]
    """
    return [
        (row * height, col * width, (row + 1) * height, (col + 1) * width)
        for row in (0, 1)
        for col in (0, 1)
    ]


@dataclass(frozen=True)
class GridSet:
    """2 x 2 grids built by :func:`make_grids`.

    Attributes:
        grids: (G, C, 2H, 2W) the grid images, on the images' device.
        classes: (G, 4) long, the class of each cell (its image's top-1 class).
        sources: (G, 4) long, the index of each cell's image in the input batch.
        confidences: (G, 4) the top-1 softmax probability of each cell's image at its
            native size.
        cell_size: (H, W) of a cell.
    """

    grids: Tensor
    classes: Tensor
    sources: Tensor
    confidences: Tensor
    cell_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.grids.shape[0])

    @property
    def boxes(self) -> list[tuple[int, int, int, int]]:
        """The cells' ``(top, left, bottom, right)`` in grid pixels, cells 0 to 3."""
        return cell_boxes(*self.cell_size)

    # The JSON form (rsigradcam.serialization.encode): these keys, in this order.
    __json_keys__: ClassVar[JsonKeys] = ("cell_size", "boxes", "classes", "sources", "confidences")


@dataclass(frozen=True)
class GridPGResult:
    """GridPG scores (CPU float64).

    Attributes:
        scores: (G, 4) the score of each cell's class; NaN-free, 0 where a map has no
            positive attribution at all.
        classes: (G, 4) the explained class of each cell.
    """

    scores: Tensor
    classes: Tensor

    @property
    def mean(self) -> float:
        """The mean score over all cells (chance: 0.25)."""
        return float(self.scores.mean())

    # The JSON form (rsigradcam.serialization.encode): these keys, in this order.
    __json_keys__: ClassVar[JsonKeys] = (
        "mean", ("chance", lambda result: CHANCE), "scores", "classes",
    )


def make_grids(
    model: nn.Module,
    images: Tensor,
    labels: Tensor | None = None,
    *,
    threshold: float = 0.95,
    n_grids: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = True,
) -> GridSet:
    """Tile confidently classified images of distinct classes into 2 x 2 grids.

    Each image is classified at its native size; it is eligible when its top-1 softmax
    probability is at least ``threshold`` (and, with ``labels``, its top-1 class is its
    label). Each image is used at most once. Grids are filled greedily from the classes
    with the most eligible images left (which makes as many grids as the classes allow),
    ties and the order of the cells decided by ``seed``.

    Args:
        model: Classifier ``(N, C, H, W) -> logits``; borrowed, never changed.
        images: (N, C, H, W) preprocessed images of one size on the model's device.
        labels: Optional (N,) true classes; misclassified images are skipped.
        threshold: Minimum top-1 probability at the native size.
        n_grids: At most this many grids (``None``: as many as possible).
        seed: Seed of the choices; the same seed gives the same grids.
        batch_size: Images per forward pass.
        progress: Show a progress bar on a terminal.

    Returns:
        A :class:`GridSet`.

    Raises:
        ValueError: Fewer than four distinct classes are eligible.

    Example:
        >>> grids = make_grids(model, images, threshold=0.9, seed=0)  # doctest: +SKIP
        >>> grids.grids.shape, grids.classes[0]                     # doctest: +SKIP
    """
    images = check_images(images, model)
    batch_size = check_batch_size(batch_size)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a probability in [0, 1], got {threshold!r}.")
    if n_grids is not None and (isinstance(n_grids, bool) or n_grids < 1):
        raise ValueError(f"n_grids must be a positive integer or None, got {n_grids!r}.")
    n = images.shape[0]
    with progress_bar("gridpg: classify", n, progress) as advance:
        probs = predict(model, images, batch_size, advance)
    confidence, top1 = (v.cpu() for v in probs.max(dim=1))
    eligible = confidence >= threshold
    if labels is not None:
        if not isinstance(labels, Tensor) or labels.shape != (n,):
            raise ValueError(f"labels must be an (N,) = ({n},) tensor of classes, or None.")
        eligible &= top1 == labels.cpu()
    picked = group_cells(top1, eligible, n_grids, seed)
    if not picked:
        found = len(set(top1[eligible].tolist()))
        raise ValueError(
            f"only {found} distinct class(es) among {int(eligible.sum())} image(s) classified "
            f"with probability >= {threshold}; a grid needs four. Pass more images or lower "
            "threshold."
        )
    return tile_grids(images, picked, top1, confidence)


def tile_grids(
    images: Tensor, picked: list[list[int]], classes: Tensor, confidences: Tensor
) -> GridSet:
    """Tile ``images[picked[g]]`` into 2 x 2 grids (cells in reading order).

    Args:
        images: (N, C, H, W) images of one size.
        picked: For each grid, the indices of its four images.
        classes: (N,) the class each image's cell explains.
        confidences: (N,) each image's probability of that class.

    Returns:
        A :class:`GridSet` of ``len(picked)`` grids, (G, C, 2H, 2W).
    """
    h, w = images.shape[2:]
    sources = torch.tensor(picked, dtype=torch.long).view(-1, 4)
    cells = images[sources.flatten().to(images.device)].view(len(picked), 4, -1, h, w)
    top = torch.cat([cells[:, 0], cells[:, 1]], dim=3)
    bottom = torch.cat([cells[:, 2], cells[:, 3]], dim=3)
    return GridSet(
        grids=torch.cat([top, bottom], dim=2),
        classes=classes.cpu()[sources],
        sources=sources,
        confidences=confidences.cpu()[sources].double(),
        cell_size=(int(h), int(w)),
    )


def group_cells(
    classes: Tensor, eligible: Tensor, n_grids: int | None, seed: int
) -> list[list[int]]:
    """Group eligible image indices greedily into fours of distinct classes.

    Each image is used at most once; grids are filled from the classes with the most
    eligible images left (as many grids as the classes allow), ties and the order of the
    cells decided by ``seed``.

    Example:
        >>> group_cells(torch.tensor([0, 1, 2, 3, 0]), torch.ones(5, dtype=torch.bool), None, 0)
        [[2, 1, 0, 3]]
    """
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(classes.numel(), generator=generator).tolist()
    buckets: dict[int, list[int]] = {}
    for index in order:
        if bool(eligible[index]):
            buckets.setdefault(int(classes[index]), []).append(index)
    keys = list(buckets)
    tie = dict(zip(keys, torch.randperm(len(keys), generator=generator).tolist(), strict=True))
    picked: list[list[int]] = []
    while n_grids is None or len(picked) < n_grids:
        alive = [c for c in keys if buckets[c]]
        if len(alive) < 4:
            break
        chosen = sorted(alive, key=lambda c: (-len(buckets[c]), tie[c]))[:4]
        cells = [buckets[c].pop() for c in chosen]
        picked.append([cells[k] for k in torch.randperm(4, generator=generator).tolist()])
    return picked


def gridpg_scores(maps: Tensor) -> Tensor:
    """GridPG scores of (G, 4, 2H, 2W) maps, ``maps[g, c]`` explaining cell c's class.

    The score is ``sum(relu(map) in cell c) / sum(relu(map))``; 0 for a map with no
    positive attribution.

    Returns:
        (G, 4) float64 scores in [0, 1].

    Example:
        >>> maps = torch.zeros(1, 4, 4, 4)
        >>> for c, (y0, x0, y1, x1) in enumerate(cell_boxes(2, 2)):
        ...     maps[0, c, y0:y1, x0:x1] = 1.0
        >>> gridpg_scores(maps).tolist()
        [[1.0, 1.0, 1.0, 1.0]]
    """
    if not isinstance(maps, Tensor):
        raise TypeError(f"maps must be a torch.Tensor (G, 4, 2H, 2W), not {type(maps).__name__}.")
    if maps.dim() != 4 or maps.shape[1] != 4 or maps.shape[2] % 2 or maps.shape[3] % 2:
        raise ValueError(
            "maps must be (G, 4, 2H, 2W): for each grid one map per cell class, at the grid "
            f"size (even height and width); got shape {tuple(maps.shape)}."
        )
    positive = maps.detach().to(torch.float64).clamp(min=0)
    h, w = maps.shape[2] // 2, maps.shape[3] // 2
    boxes = enumerate(cell_boxes(h, w))
    inside = torch.stack(
        [positive[:, c, y0:y1, x0:x1].sum(dim=(1, 2)) for c, (y0, x0, y1, x1) in boxes],
        dim=1,
    )
    total = positive.sum(dim=(2, 3))
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, inside / safe, torch.zeros_like(total)).cpu()


def attribution_map(explanation: Explanation, size: tuple[int, int]) -> Tensor:
    """The explanation's unnormalised layer map, bilinearly upsampled to ``size``: (N, H, W).

    Example:
        >>> explain = lambda x, t: attribution_map(cam(x, t), x.shape[-2:])  # doctest: +SKIP
    """
    up = F.interpolate(
        explanation.layer_map.unsqueeze(1), size=tuple(size), mode="bilinear", align_corners=False
    )
    return up.squeeze(1)


def gridpg(
    model: nn.Module,
    grids: GridSet,
    explain: GridExplainer,
    *,
    batch_size: int = 16,
    progress: bool = True,
) -> GridPGResult:
    """Explain every cell's class on its grid and score the maps with :func:`gridpg_scores`.

    Args:
        model: The classifier the explainer explains (the grids must be on its device).
        grids: Grids from :func:`make_grids`.
        explain: ``explain(images, targets) -> maps`` returning (B, 2H, 2W) unnormalised
            non-negative attributions, e.g.
            ``lambda x, t: attribution_map(RSIGradCAM(model, "head")(x, t), x.shape[-2:])``.
        batch_size: Images (grid, class pairs) per ``explain`` call; rounded down to a
            multiple of 4, at least 4.
        progress: Show a progress bar on a terminal.

    Returns:
        A :class:`GridPGResult`.

    Example:
        >>> result = gridpg(model, make_grids(model, images), explain)  # doctest: +SKIP
        >>> result.mean                                                 # doctest: +SKIP
    """
    check_images(grids.grids, model, name="grids.grids")
    per_call = max(1, check_batch_size(batch_size) // 4)
    g = len(grids)
    size = (grids.grids.shape[2], grids.grids.shape[3])
    scores = []
    with progress_bar("gridpg", 4 * g, progress) as advance:
        for start in range(0, g, per_call):
            chunk = grids.grids[start : start + per_call]
            classes = grids.classes[start : start + per_call]
            b = chunk.shape[0]
            x = chunk.repeat_interleave(4, dim=0)
            maps = explain(x, classes.flatten().to(x.device))
            if not isinstance(maps, Tensor) or tuple(maps.shape) != (4 * b, *size):
                got = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
                raise ValueError(
                    f"explain must return one (2H, 2W) map per image, shape {(4 * b, *size)}, "
                    f"got {got}."
                )
            scores.append(gridpg_scores(maps.view(b, 4, *size)))
            advance(4 * b)
    return GridPGResult(scores=torch.cat(scores), classes=grids.classes.clone())
