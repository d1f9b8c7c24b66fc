"""Baselines: each kind, several baselines averaged, n_samples, and AutoBaseline."""

from __future__ import annotations

import pytest
import torch

from rsigradcam import RSIGradCAM
from rsigradcam.baselines import (
    AutoBaseline,
    BlackBaseline,
    BlurBaseline,
    NoiseBaseline,
    UniformBaseline,
    make_baselines,
)
from rsigradcam.constants import IMAGENET_MEAN, IMAGENET_NORMALIZE, IMAGENET_STD
from rsigradcam.serialization import encode
from tests.helpers import assert_same_state, make_case, model_state

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def _images(n: int = 2, size: int = 16) -> torch.Tensor:
    torch.manual_seed(3)
    return (torch.rand(n, 3, size, size) - MEAN) / STD


def test_black_is_zero_pixels_after_preprocessing():
    b = make_baselines("black", _images(), IMAGENET_NORMALIZE)
    assert torch.allclose(b * STD + MEAN, torch.zeros_like(b), atol=1e-6)
    assert torch.equal(make_baselines("black", _images(), None), torch.zeros(2, 3, 16, 16))


def test_zeros_and_uniform():
    x = _images()
    assert torch.equal(make_baselines("zeros", x, IMAGENET_NORMALIZE), torch.zeros_like(x))
    u = make_baselines("uniform", x, IMAGENET_NORMALIZE)
    assert torch.allclose(u, x.mean(dim=(2, 3), keepdim=True).expand_as(x))
    assert torch.equal(UniformBaseline()(x), u)


def test_blur_keeps_constants_and_removes_detail():
    flat = torch.full((1, 3, 32, 32), 0.7)
    assert torch.allclose(make_baselines("blur", flat, None), flat, atol=1e-6)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64)
    blurred = make_baselines("blur", x, None)
    assert blurred.shape == x.shape
    assert blurred.std() < 0.1 * x.std()  # the default sigma (longer side / 10) wipes detail
    weak = BlurBaseline(sigma=1.0)(x)
    assert blurred.std() < weak.std() < x.std()
    # the mean colour survives (replicate padding keeps it close)
    assert torch.allclose(blurred.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.02)


def test_noise_is_seeded_valid_and_batch_independent():
    x = _images(3)
    a = make_baselines("noise", x, IMAGENET_NORMALIZE)
    assert torch.equal(a, make_baselines("noise", x, IMAGENET_NORMALIZE))
    pixels = a * STD + MEAN
    assert pixels.min() >= 0 and pixels.max() <= 1
    assert torch.equal(make_baselines("noise", x[:1], IMAGENET_NORMALIZE)[0], a[0])
    other = make_baselines("noise", x, IMAGENET_NORMALIZE, sample=1)
    assert not torch.equal(a, other)
    seeded = NoiseBaseline(seed=7)
    assert not torch.equal(make_baselines(seeded, x, IMAGENET_NORMALIZE), a)
    g = make_baselines(NoiseBaseline("gaussian", sigma=0.05), x, IMAGENET_NORMALIZE)
    gp = g * STD + MEAN
    assert gp.min() >= 0 and gp.max() <= 1
    assert (gp - (x * STD + MEAN).clamp(0, 1)).abs().mean() < 0.06


def test_black_baseline_object_uses_the_cams_normalize():
    x = _images()
    assert torch.allclose(
        make_baselines(BlackBaseline(), x, IMAGENET_NORMALIZE),
        BlackBaseline(*IMAGENET_NORMALIZE)(x),
    )


@pytest.mark.parametrize("bad", ["grey", 3, [], None])
def test_bad_baselines_are_refused(bad):
    model, _ = make_case(5, n=1)
    with pytest.raises((ValueError, TypeError), match="baseline"):
        RSIGradCAM(model, "conv", baseline=bad)


def test_n_samples_needs_a_random_baseline():
    model, _ = make_case(5, n=1)
    with pytest.raises(ValueError, match="random baseline"):
        RSIGradCAM(model, "conv", baseline="black", n_samples=3)
    with pytest.raises(ValueError, match="n_samples"):
        RSIGradCAM(model, "conv", baseline="noise", n_samples=0)
    with pytest.raises(ValueError, match="not both"):
        RSIGradCAM(model, "conv", baseline=["noise", "black"], n_samples=2)


def test_several_baselines_average_the_attributions():
    model, images = make_case(5, n=2)
    kinds = ["black", "blur", "uniform"]
    kw = dict(steps=16, dtype=torch.float64)
    single = [RSIGradCAM(model, "conv", baseline=b, **kw)(images) for b in kinds]
    multi = RSIGradCAM(model, "conv", baseline=kinds, **kw)(images)
    mean_attr = torch.stack([e.attributions for e in single]).mean(0)
    assert torch.allclose(multi.attributions, mean_attr, rtol=1e-9, atol=1e-12)
    assert torch.allclose(multi.weights, mean_attr.mean(dim=(2, 3)))
    assert torch.equal(multi.targets, single[0].targets)
    assert torch.allclose(multi.scores, single[0].scores)
    mean_base = torch.stack([e.baseline_scores for e in single]).mean(0)
    assert torch.allclose(multi.baseline_scores, mean_base)
    delta = multi.scores - mean_base
    expected = (mean_attr.sum(dim=(1, 2, 3)) - delta).abs() / delta.abs()
    assert torch.allclose(multi.completeness_error, expected)
    assert multi.n_evaluations == 17


def test_n_samples_equals_the_list_of_its_draws():
    model, images = make_case(13, n=2)
    draws = [
        make_baselines("noise", images.double(), IMAGENET_NORMALIZE, sample=j) for j in range(3)
    ]
    kw = dict(steps=8, dtype=torch.float64)
    sampled = RSIGradCAM(model, "conv", baseline="noise", n_samples=3, **kw)(images)
    listed = RSIGradCAM(model, "conv", baseline=draws, **kw)(images)
    assert torch.allclose(sampled.attributions, listed.attributions, rtol=1e-9, atol=1e-12)
    assert torch.allclose(sampled.heatmap, listed.heatmap)
    # and batching does not change any image's result
    alone = RSIGradCAM(model, "conv", baseline="noise", n_samples=3, **kw)(images[1:])
    assert torch.allclose(alone.attributions[0], sampled.attributions[1], rtol=1e-9, atol=1e-12)


def test_several_baselines_with_auto_steps_report_each_partition():
    model, images = make_case(5, n=2)
    exp = RSIGradCAM(model, "conv", steps="auto", tolerance=0.1, baseline=["black", "blur"])(
        images
    )
    assert exp.partition.shape[:2] == (2, 2)
    assert exp[1].partition.shape[0] == 2


# ---------------------------------------------------------------- AutoBaseline
@pytest.fixture(scope="module")
def fitted(embedded_model):
    auto = AutoBaseline(embedded_model)
    before = model_state(embedded_model)
    fit = auto.fit((3, 224, 224), IMAGENET_NORMALIZE)
    assert_same_state(before, model_state(embedded_model))
    return auto, fit


@pytest.fixture(scope="module")
def embedded_model():
    from rsigradcam.models import efficientnet_lite0

    return efficientnet_lite0()


@pytest.mark.slow
def test_auto_baseline_makes_the_embedded_model_unsure(fitted):
    _, fit = fitted
    assert fit.iterations == 200 and len(fit.loss) == 200
    assert fit.max_prob_before > 0.02
    assert fit.max_prob_after < 0.01
    pixels = fit.baseline.unsqueeze(0) * STD + MEAN
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6  # stays a valid image
    assert encode(fit)["max_prob_after"] == fit.max_prob_after


@pytest.mark.slow
def test_auto_baseline_is_cached_saved_and_loaded(fitted, embedded_model, tmp_path):
    auto, fit = fitted
    x = torch.zeros(2, 3, 224, 224)
    b = make_baselines(auto, x, IMAGENET_NORMALIZE)
    assert torch.equal(b[1], fit.baseline) and auto.fits[(3, 224, 224)] is fit  # no refit
    path = tmp_path / "auto.pt"
    auto.save(path)
    loaded = AutoBaseline.from_file(path)
    assert torch.equal(loaded.fits[(3, 224, 224)].baseline, fit.baseline)
    assert loaded.fits[(3, 224, 224)].max_prob_after == fit.max_prob_after
    assert torch.equal(make_baselines(loaded, x, IMAGENET_NORMALIZE), b)
    with pytest.raises(ValueError, match="no model"):
        make_baselines(loaded, torch.zeros(1, 3, 32, 32), IMAGENET_NORMALIZE)
    (tmp_path / "junk.pt").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="AutoBaseline"):
        AutoBaseline.from_file(tmp_path / "junk.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(ValueError, match="not an AutoBaseline file"):
        AutoBaseline.from_file(tmp_path / "tensor.pt")


def test_auto_baseline_in_a_cam_on_a_small_model():
    model, images = make_case(5, n=2)
    before = model_state(model)
    cam = RSIGradCAM(model, "conv", steps=8, baseline="auto", normalize=None)
    exp = cam(images)
    assert_same_state(before, model_state(model))
    auto = cam._auto_baseline
    assert auto is not None
    fit = auto.fits[(3, 12, 12)]
    assert fit.max_prob_after < fit.max_prob_before
    assert torch.allclose(exp.baseline_scores, exp.baseline_scores[0].expand(2))
