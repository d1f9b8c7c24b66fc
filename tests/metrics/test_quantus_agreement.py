"""rsigradcam.metrics against Quantus 0.6.0, the library of XAI metrics, on the same maps.

A tiny colour classifier (class c: a disc of colour c on noise) and 24 x 24 images; each
check gives both libraries the same model, inputs, targets and maps, and either agrees
within a stated tolerance or checks the intended difference exactly.

============================  ====================  ===========================================
ours                          Quantus               agreement
============================  ====================  ===========================================
``gridpg`` (GridPG)           ``Focus``             ``Focus = s * T / (T + 1e-9 M)`` to 1e-15,
                                                    s our score, T the positive attribution, M
                                                    the batch's largest ``|a|`` (``normalise``
                                                    divides by it; 1 without); within 1e-6
                                                    of the largest score
``max_sensitivity``           ``MaxSensitivity``    relative 1e-5 (float32 maps), Quantus fed
                                                    our noise draws through ``perturb_func``
``deletion``                  ``PixelFlipping``     curves within 1e-6 (``zeros`` = baseline 0,
                                                    image-minimum substrate = ``"black"``); the
                                                    areas differ by design (see the test)
``randomization_sanity``      ``MPRT``              1e-12 with Quantus' draws; NaN there = 0 here
============================  ====================  ===========================================

The intended differences:

- **Focus** adds 1e-9 to the denominator, after dividing the whole batch by its largest
  absolute attribution (``normalise=True``); GridPG divides the positive attribution in the
  cell by the positive attribution in the grid, 0 for a map with none.
- **MaxSensitivity** draws its noise from NumPy's global generator, ours from a private
  seeded ``torch.Generator``: the same U(-r, r) law, other numbers. Given our draws, the
  two agree.
- **PixelFlipping** ranks the flattened (C, H, W) attributions, so a pixel is C features:
  ``features_in_step = C * step`` removes ``step`` pixels, and Quantus requires it to divide
  H * W (hence 24 x 24, 3 channels, 12 pixels a step). Its ``"black"`` is each image's
  minimum over all channels; ours is the black pixel, ``(0 - mean) / std`` per channel.
  Ties are ordered by a stable sort here (by pixel index) and by NumPy's unstable
  ``argsort`` there, so the maps are made tie-free. Its curve starts after the first
  step and its area is ``trapezoid(curve, dx=1)`` (not normalised); ours starts from the
  intact image and integrates over the fraction removed, in [0, 1].
- **MPRT** resets each layer with ``torch.manual_seed(seed + 1)`` and PyTorch's own
  ``reset_parameters`` (U(-1/sqrt(fan_in), 1/sqrt(fan_in)), touching the global RNG); ours
  draws the same law from a private generator. With Quantus' draws swapped in, the
  correlations agree; Spearman of a constant map is NaN there and 0 here.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats
from torch import Tensor, nn

import rsigradcam.metrics.sanity as sanity
from rsigradcam import GradCAM, RSIGradCAM
from rsigradcam.metrics import (
    attribution_map,
    deletion,
    gridpg,
    gridpg_scores,
    make_grids,
    max_sensitivity,
    randomization_sanity,
    randomize_module,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import quantus

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

SIZE = 24
COLOURS = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0], [-2.0, -2.0, -2.0]])
MPRT_SEED = 42


def colour_model(seed: int = 0) -> nn.Module:
    """Four classes: red, green, blue and dark discs (colour detectors, then a mixer)."""
    generator = torch.Generator().manual_seed(seed)
    conv1, conv2, fc = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Linear(4, 4)
    with torch.no_grad():
        conv1.weight.zero_()
        for c in range(3):
            conv1.weight[c, c] = 1 / 9
        conv1.weight[3] = -1 / 27
        conv1.bias.fill_(-0.3)
        conv2.weight.copy_(0.05 * torch.randn(conv2.weight.shape, generator=generator))
        conv2.weight[:, :, 1, 1] += torch.eye(4)
        conv2.bias.zero_()
        fc.weight.copy_(8 * torch.eye(4) + 0.3 * torch.randn(4, 4, generator=generator))
        fc.bias.zero_()
    layers = OrderedDict(
        conv1=conv1, relu1=nn.ReLU(), conv2=conv2, relu2=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=fc,
    )
    return nn.Sequential(layers).eval()


def disc_images(n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(n, 3, 24, 24) noise with a disc of radius 6 of colour ``i % 4``; the labels."""
    generator = torch.Generator().manual_seed(seed)
    images = 0.3 * torch.randn(n, 3, SIZE, SIZE, generator=generator)
    labels = torch.arange(n) % 4
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    for i in range(n):
        cy, cx = torch.randint(8, SIZE - 8, (2,), generator=generator).tolist()
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 36
        images[i][:, disc] += COLOURS[labels[i]][:, None]
    return images, labels


def quantus_explainer(explain: Callable[[Tensor, Tensor], Tensor]) -> Callable[..., np.ndarray]:
    """Quantus' ``explain_func(model, inputs, targets)`` on NumPy arrays, from ours."""

    def explain_func(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: Any) -> Any:
        return explain(torch.as_tensor(inputs), torch.as_tensor(targets)).detach().numpy()

    return explain_func


@pytest.fixture(scope="module")
def case() -> tuple[nn.Module, Tensor, Tensor]:
    model = colour_model()
    images, labels = disc_images(16)
    return model, images, labels


# ------------------------------------------------------------------------------------------
# GridPG against Focus
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["gradcam", "rsi"])
def test_gridpg_is_quantus_focus(case: tuple[nn.Module, Tensor, Tensor], method: str) -> None:
    model, images, labels = case
    grids = make_grids(model, images, labels, threshold=0.4, progress=False)
    assert len(grids) == 4
    cam = GradCAM(model, "conv2") if method == "gradcam" else RSIGradCAM(model, "conv2", steps=8)

    def explain(x: Tensor, t: Tensor) -> Tensor:
        return attribution_map(cam(x, t), (x.shape[-2], x.shape[-1]))

    ours = gridpg(model, grids, explain, progress=False)
    x, targets = grids.grids.repeat_interleave(4, dim=0), grids.classes.flatten()
    maps = explain(x, targets).double()  # float64 on both sides: no rounding in the check
    assert torch.equal(gridpg_scores(maps.view(len(grids), 4, 2 * SIZE, 2 * SIZE)), ours.scores)
    s = ours.scores.flatten().numpy()
    cells = np.eye(4)[np.tile(np.arange(4), len(grids))]  # one map per cell: its one-hot cell
    positive = maps.clamp(min=0).flatten(1).sum(dim=1).numpy()
    assert positive.min() > 0
    for normalise, largest in ((True, float(maps.abs().max())), (False, 1.0)):
        focus = np.asarray(quantus.Focus(normalise=normalise, disable_warnings=True)(
            model=model, x_batch=x.numpy(), y_batch=targets.numpy(),
            a_batch=maps[:, None].numpy(), custom_batch=cells,
        ))
        assert np.abs(focus - s * positive / (positive + 1e-9 * largest)).max() < 1e-15
        assert np.abs(focus - s).max() <= 1e-6 * s.max()


# ------------------------------------------------------------------------------------------
# max-sensitivity against MaxSensitivity
# ------------------------------------------------------------------------------------------


def test_max_sensitivity_is_quantus_max_sensitivity(
    case: tuple[nn.Module, Tensor, Tensor],
) -> None:
    model, images, labels = case
    images, labels = images[:4], labels[:4]
    radius, n_samples, seed, steps = 0.1, 5, 3, 8

    def make(m: int, dtype: torch.dtype) -> Callable[[Tensor, Tensor], Tensor]:
        cam = RSIGradCAM(model, "conv2", steps=m, dtype=dtype)
        return lambda x, t: cam(x, t).heatmap

    ours = max_sensitivity(
        model, images, make, labels, radius=radius, n_samples=n_samples, steps=steps, seed=seed,
        progress=False,
    )
    generator = torch.Generator().manual_seed(seed)

    def our_noise(arr: np.ndarray, indices: np.ndarray, **_: Any) -> np.ndarray:
        """Our draws, in our order: U(-radius, radius) from the seeded generator."""
        noise = torch.rand(images.shape, generator=generator, dtype=torch.float64)
        delta = ((noise * 2.0 - 1.0) * radius).to(images.dtype).numpy()
        return arr + delta.reshape(arr.shape)

    theirs = np.asarray(quantus.MaxSensitivity(
        nr_samples=n_samples, lower_bound=radius, perturb_func=our_noise, disable_warnings=True,
    )(
        model=model, x_batch=images.numpy(), y_batch=labels.numpy(),
        explain_func=quantus_explainer(make(steps, torch.float32)),
    ))
    assert ours.sensitivity.min() > 0
    assert np.abs(theirs / ours.sensitivity.numpy() - 1).max() < 1e-5


# ------------------------------------------------------------------------------------------
# deletion against PixelFlipping
# ------------------------------------------------------------------------------------------


def test_deletion_is_quantus_pixel_flipping(case: tuple[nn.Module, Tensor, Tensor]) -> None:
    model, images, labels = case
    images, labels, step = images[:4], labels[:4], 12
    maps = GradCAM(model, "conv2")(images, labels).heatmap
    generator = torch.Generator().manual_seed(0)
    maps = maps + 1e-4 * torch.rand(maps.shape, generator=generator)  # no ties
    assert all(m.unique().numel() == SIZE * SIZE for m in maps)
    image_minimum = lambda x: x.amin(dim=(1, 2, 3), keepdim=True).expand_as(x).clone()  # noqa: E731
    for substrate, baseline in (("zeros", 0.0), (image_minimum, "black")):
        ours = deletion(
            model, images, maps, labels, substrate=substrate, step=step, normalize=None,
            progress=False,
        )
        theirs = np.asarray(quantus.PixelFlipping(
            features_in_step=images.shape[1] * step, perturb_baseline=baseline,
            disable_warnings=True,
        )(
            model=model, x_batch=images.numpy(), y_batch=labels.numpy(),
            a_batch=maps[:, None].numpy(), softmax=True,
        ))
        curves = ours.curves.numpy()
        n_steps = curves.shape[1] - 1
        assert theirs.shape == (4, n_steps) == (4, SIZE * SIZE // step)
        assert np.abs(theirs - curves[:, 1:]).max() < 1e-6
        # Quantus' area: the trapezoid rule with dx = 1 over its curve (its calculate_auc
        # calls np.trapz, which NumPy 2.4 no longer has, so it is written out here).
        # Ours adds the first interval, from the intact image, and divides by the steps.
        area = (theirs[:, 1:] + theirs[:, :-1]).sum(axis=1) / 2
        expected = (area + (curves[:, 0] + theirs[:, 0]) / 2) / n_steps
        assert np.abs(ours.auc.numpy() - expected).max() < 1e-7
    # Our default "black" is the black pixel per channel, not the image's minimum.
    black = deletion(model, images, maps, labels, step=step, progress=False)
    assert np.abs(black.curves[:, 1:].numpy() - theirs).max() > 1e-2


# ------------------------------------------------------------------------------------------
# cascading randomisation against MPRT
# ------------------------------------------------------------------------------------------


def _gradcam_map(model: nn.Module, x: Tensor, t: Tensor) -> Tensor:
    return GradCAM(model, "conv2")(x, t).heatmap


@pytest.mark.filterwarnings("ignore:gradcam map at layer:RuntimeWarning")  # random layers
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # scipy's NaN
def test_randomization_sanity_is_quantus_mprt(
    case: tuple[nn.Module, Tensor, Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, images, labels = case
    images, labels = images[:6], labels[:6]
    before = [p.detach().clone() for p in model.parameters()]
    with torch.random.fork_rng():  # Quantus seeds the global RNG
        theirs = quantus.MPRT(seed=MPRT_SEED, disable_warnings=True)(
            model=model, x_batch=images.numpy(), y_batch=labels.numpy(), a_batch=None,
            explain_func=lambda model, inputs, targets, **_: _gradcam_map(
                model, torch.as_tensor(inputs), torch.as_tensor(targets)
            ).numpy(),
        )

    def quantus_draw(module: nn.Module, generator: torch.Generator) -> None:
        """Quantus' draw: the global RNG seeded with seed + 1, then reset_parameters()."""
        torch.manual_seed(MPRT_SEED + 1)
        module.reset_parameters()  # type: ignore[operator]

    monkeypatch.setattr(sanity, "randomize_module", quantus_draw)
    with torch.random.fork_rng():
        ours = randomization_sanity(model, images, _gradcam_map, labels, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert ours.cascading and ours.stages == list(theirs) == ["original", "fc", "conv2", "conv1"]
    found = np.asarray([theirs[stage] for stage in ours.stages], dtype=np.float64)
    mine = ours.correlations.numpy()
    finite = np.isfinite(found)
    assert np.abs(found[finite] - mine[finite]).max() < 1e-12
    assert (mine[~finite] == 0).all()  # a constant map: NaN in Quantus, 0 here
    assert (mine[0] == 1).all() and finite[0].all()


@pytest.mark.parametrize("make", [lambda: nn.Conv2d(16, 32, 3), lambda: nn.Linear(256, 64)])
def test_randomize_module_draws_pytorch_default_law(make: Callable[[], nn.Module]) -> None:
    """Ours and reset_parameters (Quantus' MPRT) draw U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    ours, theirs = make(), make()
    randomize_module(ours, torch.Generator().manual_seed(0))
    with torch.random.fork_rng():
        torch.manual_seed(MPRT_SEED + 1)
        theirs.reset_parameters()  # type: ignore[operator]
    fan_in = ours.weight[0].numel()
    bound = fan_in**-0.5
    for name in ("weight", "bias"):
        a = getattr(ours, name).detach().double().flatten().numpy()
        b = getattr(theirs, name).detach().double().flatten().numpy()
        for values in (a, b):
            assert np.abs(values).max() <= bound * (1 + 1e-6)
            if values.size > 1000:
                assert np.abs(values).max() > 0.99 * bound
        assert stats.ks_2samp(a, b).pvalue > 0.01
