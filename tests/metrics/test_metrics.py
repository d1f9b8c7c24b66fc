"""rsigradcam.metrics on constructed cases with known answers, and against slow reference loops."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch
import torch.nn.functional as F
from torch import nn

from rsigradcam import GradCAM, RSIGradCAM
from rsigradcam.metrics import (
    CHANCE,
    GridSet,
    auc,
    average_drop_increase,
    average_ranks,
    blur_substrate,
    cell_boxes,
    default_step,
    deletion,
    dtype_difference,
    gridpg,
    gridpg_scores,
    insertion,
    make_grids,
    make_substrate,
    max_sensitivity,
    parameterised_layers,
    pearson,
    random_heatmaps,
    randomization_sanity,
    spearman,
    split_saturated,
    stability,
    steps_spread,
)
from rsigradcam.serialization import encode
from tests.helpers import assert_same_state, make_case, model_state

pytestmark = pytest.mark.filterwarnings("ignore:.*map at layer.*is zero everywhere:RuntimeWarning")


class QuadrantModel(nn.Module):
    """Two classes: logit 0 is ``scale`` times the mean of the top-left quadrant, logit 1 is 0.

    p(class 0) = sigmoid(scale * quadrant mean) rises monotonically with the quadrant's
    pixels and ignores every other pixel.
    """

    def __init__(self, scale: float = 4.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        q = x[:, :, :h, :w].mean(dim=(1, 2, 3)) * self.scale
        return torch.stack([q, torch.zeros_like(q)], dim=1)


class ChannelModel(nn.Module):
    """Class c's logit is ``scale`` times the spatial mean of channel c (linear, no position)."""

    def __init__(self, scale: float = 40.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) * self.scale


def quadrant_images(n: int = 2, size: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    half = size // 2
    images[:, :, :half, :half] = 0.5 + torch.rand(n, 3, half, half, generator=g)
    return images


def quadrant_maps(n: int, size: int) -> torch.Tensor:
    maps = torch.zeros(n, size, size)
    maps[:, : size // 2, : size // 2] = 1.0
    return maps


def prob0(model: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(torch.softmax(model(x.unsqueeze(0)), dim=1)[0, 0])


def reference_curve(model, image, saliency, fill, step, kind):
    """One pixel at a time, in the order (-saliency, pixel index)."""
    h, w = saliency.shape
    flat = saliency.flatten().tolist()
    order = sorted(range(h * w), key=lambda p: (-flat[p], p))
    x = image.clone() if kind == "deletion" else fill.clone()
    source = fill if kind == "deletion" else image
    scores, fractions = [prob0(model, x)], [0.0]
    for start in range(0, h * w, step):
        for p in order[start : start + step]:
            r, c = divmod(p, w)
            x[:, r, c] = source[:, r, c]
        scores.append(prob0(model, x))
        fractions.append(min(start + step, h * w) / (h * w))
    return scores, fractions


def reference_auc(scores, fractions):
    return sum(
        (fractions[i + 1] - fractions[i]) * (scores[i] + scores[i + 1]) / 2
        for i in range(len(scores) - 1)
    )


# ---------------------------------------------------------------------------- AUC, substrates


def test_auc_of_constant_and_linear_curves():
    uneven = torch.tensor([0.0, 0.1, 0.5, 0.55, 1.0])
    for c in (0.0, 0.3, 1.0):
        expected = torch.full((3,), c, dtype=torch.float64)
        assert torch.allclose(auc(torch.full((3, 5), c), uneven), expected)
    assert float(auc(uneven, uneven)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one fraction per curve point"):
        auc(torch.zeros(4), uneven)
    with pytest.raises(ValueError, match="non-decreasing"):
        auc(torch.zeros(5), uneven.flip(0))


def test_default_step_is_224_pixels_at_224():
    assert default_step(224, 224) == 224
    assert default_step(112, 112) == 56
    assert default_step(8, 8) == 1
    model = QuadrantModel()
    image = torch.rand(1, 1, 224, 224)
    result = deletion(model, image, torch.rand(1, 224, 224), substrate="zeros", batch_size=225,
                      progress=False)
    assert result.step == 224 and result.fractions.numel() == 225
    assert result.fractions[0] == 0 and result.fractions[-1] == 1


def test_blur_matches_a_direct_2d_convolution():
    images = torch.rand(2, 3, 13, 12, dtype=torch.float64)
    x = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(x**2) / 50)
    kernel = torch.outer(g, g) / torch.outer(g, g).sum()
    padded = F.pad(images, (5, 5, 5, 5), mode="reflect")
    expected = torch.stack(
        [F.conv2d(padded[:, c : c + 1], kernel.view(1, 1, 11, 11))[:, 0] for c in range(3)], 1
    )
    assert torch.allclose(blur_substrate(images), expected, atol=1e-12)
    flat = torch.full((1, 3, 4, 4), 0.7)  # too small to reflect: replicate padding
    assert torch.allclose(blur_substrate(flat), flat)


def test_substrates():
    images = torch.rand(2, 3, 6, 6)
    normalize = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert torch.equal(make_substrate("black", images, normalize), torch.full_like(images, -2.0))
    assert torch.equal(make_substrate("black", images, None), torch.zeros_like(images))
    assert torch.equal(make_substrate("zeros", images, normalize), torch.zeros_like(images))
    # The blur commutes with the per-channel normalisation.
    pixels = images * 0.25 + 0.5
    assert torch.allclose(
        make_substrate("blur", images, normalize), (blur_substrate(pixels) - 0.5) / 0.25, atol=1e-5
    )
    with pytest.raises(ValueError, match="substrate 'grey' is unknown"):
        make_substrate("grey", images, None)
    with pytest.raises(ValueError, match="substrate shape"):
        make_substrate(torch.zeros(3, 5, 5), images, None)


# ---------------------------------------------------------------------------- deletion / insertion


@pytest.mark.parametrize("kind", ["deletion", "insertion"])
@pytest.mark.parametrize("substrate", ["zeros", "black", "blur"])
def test_curves_match_the_reference_loop(kind, substrate):
    model = QuadrantModel()
    images = quadrant_images(2, size=6, seed=3)
    maps = torch.rand(2, 6, 6)
    maps[0, :2] = 0.5  # ties, broken by pixel index
    normalize = ((0.4, 0.5, 0.6), (0.2, 0.3, 0.25))
    metric = deletion if kind == "deletion" else insertion
    result = metric(model, images, maps, 0, substrate=substrate, step=5, normalize=normalize,
                    batch_size=7, progress=False)
    fill = make_substrate(substrate, images, normalize)
    for i in range(2):
        scores, fractions = reference_curve(model, images[i], maps[i], fill[i], 5, kind)
        expected = torch.tensor(scores, dtype=torch.float64)
        assert torch.allclose(result.curves[i], expected, atol=1e-6)
        assert torch.allclose(result.fractions, torch.tensor(fractions, dtype=torch.float64))
        assert float(result.auc[i]) == pytest.approx(reference_auc(scores, fractions), abs=1e-6)
    assert result.mean == pytest.approx(float(result.auc.mean()))
    assert result.kind == kind and result.substrate == substrate
    assert result.targets.tolist() == [0, 0]


def test_quadrant_map_beats_random_order():
    model = QuadrantModel()
    images = quadrant_images(3, size=8)
    maps = quadrant_maps(3, 8)
    rand = random_heatmaps(images, seed=0)
    kwargs = {"substrate": "zeros", "progress": False}
    good_del = deletion(model, images, maps, **kwargs)
    rand_del = deletion(model, images, rand, **kwargs)
    bad_del = deletion(model, images, 1 - maps, **kwargs)
    assert bool((good_del.auc < rand_del.auc).all())
    assert bool((rand_del.auc < bad_del.auc).all())
    # Deleting the quadrant first: p falls to sigmoid(0) = 1/2 by a quarter, then stays.
    assert torch.allclose(good_del.curves[:, 16:], torch.full((3, 49), 0.5, dtype=torch.float64))
    good_ins = insertion(model, images, maps, **kwargs)
    rand_ins = insertion(model, images, rand, **kwargs)
    assert bool((good_ins.auc > rand_ins.auc).all())
    assert good_del.targets.tolist() == [0, 0, 0]  # top-1


def test_curves_do_not_depend_on_batch_size_and_serialise():
    model = QuadrantModel()
    images = quadrant_images(2, size=6)
    maps = torch.rand(2, 6, 6)
    a = deletion(model, images, maps, batch_size=1, progress=False)
    b = deletion(model, images, maps, batch_size=1000, progress=False)
    assert torch.allclose(a.curves, b.curves, atol=1e-7)
    d = encode(a)
    assert d["mean_auc"] == a.mean and len(d["curves"]) == 2 and len(d["fractions"]) == 37


def test_random_heatmaps_are_seeded_permutations():
    images = torch.zeros(2, 3, 5, 4)
    a, b = random_heatmaps(images, seed=7), random_heatmaps(images, seed=7)
    assert torch.equal(a, b)
    assert not torch.equal(a, random_heatmaps(images, seed=8))
    assert a.shape == (2, 5, 4)
    expected = torch.arange(20) / 19
    for m in a:
        assert torch.allclose(m.flatten().sort().values, expected)
    state = torch.random.get_rng_state()
    random_heatmaps(images, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())  # no global RNG use


# ---------------------------------------------------------------------------- AD / IC


def test_average_drop_maps_of_ones_and_zeros():
    model = QuadrantModel()
    images = quadrant_images(3, size=8)
    ones = average_drop_increase(model, images, torch.ones(3, 8, 8), normalize=None, progress=False)
    assert torch.equal(ones.masked, ones.original)
    assert ones.average_drop == 0.0 and ones.increase_in_confidence == 0.0
    zeros = average_drop_increase(model, images, torch.zeros(3, 8, 8), normalize=None,
                                  progress=False)
    # A zero map leaves the black (here all-zero) substrate: p = sigmoid(0) = 1/2.
    assert torch.allclose(zeros.masked, torch.full((3,), 0.5, dtype=torch.float64))
    y = zeros.original
    assert zeros.average_drop == pytest.approx(float(((y - 0.5) / y * 100).mean()))
    assert zeros.increase_in_confidence == 0.0
    # Images against class 0 (p < 1/2): a zero map raises p to 1/2: increase, no drop.
    against = -images
    up = average_drop_increase(model, against, torch.zeros(3, 8, 8), targets=0, normalize=None,
                               progress=False)
    assert up.average_drop == 0.0 and up.increase_in_confidence == 100.0


def test_average_drop_against_a_reference():
    model = QuadrantModel()
    images = quadrant_images(4, size=8, seed=5)
    maps = torch.rand(4, 8, 8)
    normalize = ((0.5, 0.4, 0.3), (0.2, 0.2, 0.2))
    r = average_drop_increase(model, images, maps, targets=0, normalize=normalize, progress=False)
    drops, ups = [], []
    for i in range(4):
        mean = torch.tensor(normalize[0]).view(3, 1, 1)
        std = torch.tensor(normalize[1]).view(3, 1, 1)
        pixels = images[i] * std + mean
        masked = (pixels * maps[i] - mean) / std  # image ⊙ map in pixel space
        y, o = prob0(model, images[i]), prob0(model, masked)
        drops.append(max(0.0, y - o) / y * 100)
        ups.append(o > y)
    assert r.average_drop == pytest.approx(sum(drops) / 4, rel=1e-5)
    assert r.increase_in_confidence == pytest.approx(100 * sum(ups) / 4)
    assert encode(r)["drop"] == pytest.approx(drops, rel=1e-5)
    with pytest.raises(ValueError, match=r"heatmaps must lie in \[0, 1\]"):
        average_drop_increase(model, images, maps * 2, progress=False)


# ---------------------------------------------------------------------------- GridPG


def test_gridpg_scores_of_constructed_maps():
    h = w = 4
    boxes = cell_boxes(h, w)
    on_cell = torch.zeros(2, 4, 2 * h, 2 * w)
    for c, (y0, x0, y1, x1) in enumerate(boxes):
        on_cell[:, c, y0:y1, x0:x1] = torch.rand(2, h, w) + 0.1
    assert torch.equal(gridpg_scores(on_cell), torch.ones(2, 4, dtype=torch.float64))
    uniform = torch.ones(2, 4, 2 * h, 2 * w)
    assert torch.allclose(gridpg_scores(uniform), torch.full((2, 4), CHANCE, dtype=torch.float64))
    # Negative attribution elsewhere does not count; half the positive mass inside gives 1/2.
    half = -torch.ones(1, 4, 2 * h, 2 * w)
    for c, (y0, x0, y1, x1) in enumerate(boxes):
        half[0, c, y0:y1, x0:x1] = 1.0
        y0b, x0b, y1b, x1b = boxes[(c + 1) % 4]
        half[0, c, y0b:y1b, x0b:x1b] = 1.0
    assert torch.allclose(gridpg_scores(half), torch.full((1, 4), 0.5, dtype=torch.float64))
    nothing = gridpg_scores(torch.zeros(1, 4, 2, 2))
    assert torch.equal(nothing, torch.zeros(1, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(G, 4, 2H, 2W\)"):
        gridpg_scores(torch.ones(1, 3, 4, 4))


def channel_images(classes: list[int], n_channels: int = 6, size: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(len(classes), n_channels, size, size)
    for i, c in enumerate(classes):
        images[i, c] = 0.5 + torch.rand(size, size, generator=g)
    return images


def test_make_grids_and_gridpg_end_to_end():
    classes = [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4]
    images = channel_images(classes)
    images[-1] *= 0.01  # not confident: never used
    model = ChannelModel()
    grids = make_grids(model, images, threshold=0.9, seed=3, progress=False)
    assert len(grids) == 2 and grids.grids.shape == (2, 6, 12, 12)
    used = grids.sources.flatten().tolist()
    assert len(set(used)) == 8 and 10 not in used
    for g in range(2):
        assert len(set(grids.classes[g].tolist())) == 4
        for c, (y0, x0, y1, x1) in enumerate(grids.boxes):
            src = int(grids.sources[g, c])
            assert torch.equal(grids.grids[g, :, y0:y1, x0:x1], images[src])
            assert int(grids.classes[g, c]) == classes[src]
    assert bool((grids.confidences >= 0.9).all())
    again = make_grids(model, images, threshold=0.9, seed=3, progress=False)
    assert torch.equal(again.sources, grids.sources)
    assert any(
        not torch.equal(make_grids(model, images, threshold=0.9, seed=s, progress=False).sources,
                        grids.sources)
        for s in range(4, 10)
    )
    # The linear model's exact attribution (input x gradient) is the class channel: GridPG 1.
    exact = gridpg(model, grids, lambda x, t: x[torch.arange(len(t)), t], batch_size=5,
                   progress=False)
    assert torch.equal(exact.scores, torch.ones(2, 4, dtype=torch.float64))
    assert exact.mean == 1.0 and encode(exact)["chance"] == CHANCE
    flat = gridpg(model, grids, lambda x, t: torch.ones(len(t), 12, 12), progress=False)
    assert flat.mean == pytest.approx(CHANCE)


def test_make_grids_options_and_errors():
    images = channel_images([0, 1, 2, 3, 0, 1, 2, 3, 4])
    model = ChannelModel()
    assert len(make_grids(model, images, threshold=0.9, progress=False)) == 2
    assert len(make_grids(model, images, threshold=0.9, n_grids=1, progress=False)) == 1
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 5])  # the last one is misclassified
    assert 8 not in make_grids(model, images, labels, threshold=0.9, progress=False).sources
    with pytest.raises(ValueError, match="only 3 distinct class"):
        make_grids(model, images[:3], threshold=0.9, progress=False)
    with pytest.raises(ValueError, match="threshold"):
        make_grids(model, images, threshold=1.5, progress=False)
    grids = make_grids(model, images, threshold=0.9, progress=False)
    with pytest.raises(ValueError, match="explain must return"):
        gridpg(model, grids, lambda x, t: torch.ones(len(t), 6, 6), progress=False)
    assert isinstance(grids, GridSet) and encode(grids)["boxes"][3] == [6, 6, 12, 12]


# ---------------------------------------------------------------------------- correlations


def test_spearman_and_pearson_against_scipy():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (3, 30), generator=g).double()  # many ties
    b = a + torch.randint(0, 3, (3, 30), generator=g).double()
    ours = spearman(a, b)
    for i in range(3):
        assert float(ours[i]) == pytest.approx(scipy.stats.spearmanr(a[i], b[i])[0], abs=1e-12)
        expected = scipy.stats.pearsonr(a[i], b[i])[0]
        assert float(pearson(a, b)[i]) == pytest.approx(expected, abs=1e-12)
    assert average_ranks(torch.tensor([[2.0, 2.0, 1.0, 2.0]])).tolist() == [[3.0, 3.0, 1.0, 3.0]]
    zero = torch.zeros(2, 4)
    assert spearman(zero, zero).tolist() == [1.0, 1.0]
    assert spearman(zero, torch.rand(2, 4)).tolist() == [0.0, 0.0]
    assert pearson(zero + 1, zero + 2).tolist() == [0.0, 0.0]


# ---------------------------------------------------------------------------- sanity


def gradcam_explain(model, images, targets):
    return GradCAM(model, "conv")(images, targets).heatmap


def test_randomization_sanity_on_a_small_cnn():
    model, images = make_case(21, n=3)
    model.train()  # the user's modes and parameters must come back exactly
    before = model_state(model)
    seen = []

    def explain(m, x, t):
        seen.append(m)
        return gradcam_explain(m, x, t)

    r = randomization_sanity(model, images, explain, seed=4, progress=False)
    assert_same_state(before, model_state(model))
    assert all(m is not model for m in seen)
    assert r.stages == ["original", "fc", "conv", "features.3", "features.2", "features.0"]
    assert r.stages[1:] == parameterised_layers(model)
    assert r.correlations.shape == (6, 3)
    assert torch.equal(r.correlations[0], torch.ones(3, dtype=torch.float64))
    assert float(r.mean[-1]) < 1.0
    again = randomization_sanity(model, images, gradcam_explain, seed=4, progress=False)
    assert torch.equal(r.correlations, again.correlations)
    other = randomization_sanity(model, images, gradcam_explain, seed=5, progress=False)
    assert not torch.equal(r.correlations, other.correlations)
    d = encode(r)
    assert d["stages"] == r.stages and len(d["mean"]) == 6


def test_randomization_sanity_independent_and_reference():
    model, images = make_case(22, n=2)
    targets = torch.tensor([1, 3])
    r = randomization_sanity(model, images, gradcam_explain, targets, seed=0, cascading=False,
                             layers=["fc", "conv"], progress=False)
    # Independent stage "conv": only conv randomised, as by hand with the same generator draws.
    import copy

    from rsigradcam.metrics import randomize_module

    g = torch.Generator().manual_seed(0)
    ref = copy.deepcopy(model)
    scratch = copy.deepcopy(model)
    randomize_module(scratch.fc, g)  # the first stage's draws
    randomize_module(ref.conv, g)
    original = gradcam_explain(model, images, targets)
    expected = scipy.stats.spearmanr(
        original[0].flatten(), gradcam_explain(ref, images, targets)[0].flatten()
    )[0]
    if math.isnan(expected):  # a constant map: defined as 0
        expected = 0.0
    assert float(r.correlations[2, 0]) == pytest.approx(expected, abs=1e-9)
    assert r.stages == ["original", "fc", "conv"] and not r.cascading
    with pytest.raises(ValueError, match="not modules"):
        randomization_sanity(model, images, gradcam_explain, layers=["nope"], progress=False)


def test_cascading_subset_randomises_everything_above_each_stage():
    """A stage of a cascading subset randomises every layer from the output down to it."""
    import copy

    from rsigradcam.metrics import randomize_module, stage_modules

    model, images = make_case(23, n=2)
    targets = torch.tensor([0, 2])
    assert stage_modules(model, ["fc", "features"], cascading=True) == [
        ["fc"], ["conv", "features.3", "features.2", "features.0"]
    ]
    assert stage_modules(model, ["features.2"], cascading=False) == [["features.2"]]
    r = randomization_sanity(model, images, gradcam_explain, targets, seed=3,
                             layers=["fc", "features.2"], progress=False)
    assert r.randomized == [[], ["fc"], ["fc", "conv", "features.3", "features.2"]]
    assert encode(r)["randomized"] == r.randomized
    # By hand: the same draws, in the same order, on a copy.
    g = torch.Generator().manual_seed(3)
    ref = copy.deepcopy(model)
    for name in ["fc", "conv", "features.3", "features.2"]:
        randomize_module(ref.get_submodule(name), g)
    original = gradcam_explain(model, images, targets)
    randomised = gradcam_explain(ref, images, targets)
    for i in range(2):
        expected = scipy.stats.spearmanr(original[i].flatten(), randomised[i].flatten())[0]
        expected = 0.0 if math.isnan(expected) else expected
        assert float(r.correlations[2, i]) == pytest.approx(expected, abs=1e-9)
    # The default (every layer) is the same test at every stage.
    full = randomization_sanity(model, images, gradcam_explain, targets, seed=3, progress=False)
    assert full.randomized[-1] == parameterised_layers(model)


def test_sanity_stage_errors_name_the_fix():
    model, images = make_case(23, n=1)
    with pytest.raises(ValueError, match="from the output down"):
        randomization_sanity(model, images, gradcam_explain, layers=["features.0", "fc"],
                             progress=False)
    with pytest.raises(ValueError, match="owns no parameters"):
        randomization_sanity(model, images, gradcam_explain, layers=["features.1"],
                             progress=False)


# ---------------------------------------------------------------------------- stability


def makers(model):
    def rsi(steps, dtype):
        return lambda x, t: RSIGradCAM(model, "conv", steps=steps, dtype=dtype)(x, t).heatmap

    def grad(steps, dtype):
        return lambda x, t: GradCAM(model, "conv", dtype=dtype)(x, t).heatmap

    return {"rsi": rsi, "gradcam": grad}


@pytest.mark.parametrize("method", ["rsi", "gradcam"])
def test_stability_measures(method):
    model, images = make_case(14, n=3)
    make = makers(model)[method]
    dt = dtype_difference(model, images, make, steps=8, progress=False)
    assert float(dt.max_abs.max()) < 1e-4 and float(dt.correlation.min()) > 0.9999
    spread = steps_spread(model, images, make, steps=(4, 32), reference=32, progress=False)
    assert spread.max_abs.shape == (2, 3)
    assert torch.equal(spread.max_abs[1], torch.zeros(3, dtype=torch.float64))  # m = reference
    if method == "gradcam":  # no steps: every m gives the same map
        assert torch.equal(spread.max_abs[0], torch.zeros(3, dtype=torch.float64))
    else:
        assert float(spread.max_abs[0].max()) > 0
    still = max_sensitivity(model, images, make, radius=0.0, n_samples=2, steps=4, progress=False)
    assert torch.equal(still.sensitivity, torch.zeros(3, dtype=torch.float64))
    a = max_sensitivity(model, images, make, radius=0.05, n_samples=3, steps=4, seed=1,
                        progress=False)
    b = max_sensitivity(model, images, make, radius=0.05, n_samples=3, steps=4, seed=1,
                        progress=False)
    assert torch.equal(a.sensitivity, b.sensitivity) and float(a.sensitivity.max()) > 0


def test_stability_summary_splits_saturated_images():
    model = QuadrantModel(scale=12.0)
    images = quadrant_images(3, size=8)
    images[0, :, :4, :4] = 2.0  # p = sigmoid(24) > 0.99
    images[1, :, :4, :4] = 0.1  # p = sigmoid(1.2) < 0.99
    split = split_saturated(model, images)
    assert split.saturated.tolist()[:2] == [True, False]
    sat, unsat = split.indices()
    assert sorted(sat.tolist() + unsat.tolist()) == [0, 1, 2]

    def make(steps, dtype):  # a map that depends on the input only
        return lambda x, t: x.abs().mean(dim=1).to(dtype).float()

    r = stability(model, images, make, steps=4, steps_list=(2,), reference=4, n_samples=2,
                  radius=0.01, progress=False)
    summary = r.summary()
    assert summary["all"]["n_images"] == 3
    assert summary["saturated"]["n_images"] + summary["unsaturated"]["n_images"] == 3
    assert encode(r)["summary"] == summary
    nobody = stability(model, images, make, steps_list=(), n_samples=1, threshold=1.0,
                       progress=False)
    assert nobody.summary()["saturated"] is None


# ---------------------------------------------------------------------------- borrowing, errors


def test_metrics_leave_the_model_unchanged_and_check_arguments(capsys):
    model, images = make_case(24, n=2)
    model.train()
    before = model_state(model)
    maps = random_heatmaps(images, seed=0)
    deletion(model, images, maps, step=16, progress=True)  # not a terminal: no bar
    average_drop_increase(model, images, maps, progress=True)
    assert_same_state(before, model_state(model))
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match=r"heatmaps must be \(N, H, W\)"):
        deletion(model, images, maps[:1], progress=False)
    with pytest.raises(TypeError, match="callable score"):
        deletion(model, images, maps, targets=lambda out: out[:, 0], progress=False)
    with pytest.raises(ValueError, match="out of range"):
        insertion(model, images, maps, targets=9, progress=False)
    with pytest.raises(ValueError, match="step must be"):
        deletion(model, images, maps, step=0, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        average_drop_increase(model, images, maps, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="4-D"):
        deletion(model, images[0], maps, progress=False)


def test_every_exported_name_resolves():
    import rsigradcam.metrics as metrics

    for name in metrics.__all__:
        assert getattr(metrics, name) is not None, name
    assert {"Explain", "MakeExplainer", "GridExplainer", "SanityExplainer"} <= set(metrics.__all__)


def test_blockwise_random_order():
    images = torch.zeros(3, 3, 10, 9)
    maps = random_heatmaps(images, seed=2, block=4)
    assert maps.shape == (3, 10, 9)
    for m in maps:
        # A strict order of all pixels ...
        assert sorted((m.flatten() * 89).round().int().tolist()) == list(range(90))
        # ... in which every block's pixels are consecutive, in row-major order.
        order = m.flatten().argsort(descending=True)
        cells = [(int(i) // 9 // 4) * 3 + (int(i) % 9) // 4 for i in order]
        runs = [c for k, c in enumerate(cells) if k == 0 or c != cells[k - 1]]
        assert len(runs) == len(set(runs)) == 9
        first = int(order[0])
        assert (first // 9) % 4 == 0 and (first % 9) % 4 == 0
    assert torch.equal(maps, random_heatmaps(images, seed=2, block=4))
    assert torch.equal(random_heatmaps(images, seed=2), random_heatmaps(images, seed=2, block=1))
    with pytest.raises(ValueError, match="block"):
        random_heatmaps(images, block=0)
