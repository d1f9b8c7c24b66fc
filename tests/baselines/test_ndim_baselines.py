"""Baselines of signals (N, C, L) and volumes (N, C, D, H, W), as of images."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rsigradcam.baselines import BlurBaseline, gaussian_blur, make_baselines

NORMALIZE = ((0.5, 0.4), (0.25, 0.2))  # two channels
SHAPES = [(2, 2, 30), (2, 2, 6, 8, 10)]


def _inputs(shape: tuple[int, ...]) -> torch.Tensor:
    torch.manual_seed(4)
    return torch.randn(*shape, dtype=torch.float64)


@pytest.mark.parametrize("shape", SHAPES)
def test_every_named_baseline_has_the_inputs_shape(shape):
    x = _inputs(shape)
    for spec in ("black", "zeros", "uniform", "blur", "noise"):
        b = make_baselines(spec, x, NORMALIZE)
        assert b.shape == x.shape and b.dtype == x.dtype and bool(torch.isfinite(b).all())
    view = (1, 2, *[1] * (len(shape) - 2))
    mean, std = torch.tensor(NORMALIZE[0]).view(view), torch.tensor(NORMALIZE[1]).view(view)
    black = make_baselines("black", x, NORMALIZE)
    torch.testing.assert_close(black, ((0 - mean) / std).double().expand_as(x))
    spatial = tuple(range(2, len(shape)))
    uniform = make_baselines("uniform", x, NORMALIZE)
    torch.testing.assert_close(uniform, x.mean(dim=spatial, keepdim=True).expand_as(x))
    noise = make_baselines("noise", x, NORMALIZE)
    torch.testing.assert_close(noise[0], noise[1])  # the same draw for every input
    pixels = noise * std.double() + mean.double()
    assert bool((pixels >= 0).all() and (pixels <= 1).all())


@pytest.mark.parametrize("shape", SHAPES)
def test_blur_is_the_dense_nd_gaussian_with_replicated_borders(shape):
    x, sigma = _inputs(shape), 1.3
    size = 2 * math.ceil(3 * sigma) + 1
    half, rank = size // 2, len(shape) - 2
    grid = torch.arange(size, dtype=torch.float64) - half
    kernel_1d = torch.exp(-0.5 * (grid / sigma) ** 2)
    kernel = kernel_1d
    for _ in range(rank - 1):
        kernel = kernel[..., None] * kernel_1d  # outer product: the N-D Gaussian
    kernel = kernel / kernel.sum()
    padded = F.pad(x, (half, half) * rank, mode="replicate")
    conv = (F.conv1d, F.conv2d, F.conv3d)[rank - 1]
    dense = conv(padded, kernel.expand(2, 1, *kernel.shape), groups=2)
    torch.testing.assert_close(gaussian_blur(x, sigma), dense)
    constant = torch.full(shape, 0.7, dtype=torch.float64)
    torch.testing.assert_close(BlurBaseline()(constant), constant)


@pytest.mark.parametrize("shape", SHAPES)
def test_custom_tensors_per_input_or_shared(shape):
    x = _inputs(shape)
    shared = torch.randn(*shape[1:], dtype=torch.float64)
    torch.testing.assert_close(make_baselines(shared, x, None), shared.expand_as(x))
    each = torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(make_baselines(each, x, None), each)
    with pytest.raises(ValueError, match=r"baseline shape .* does not match the images' shape"):
        make_baselines(torch.zeros(3, *shape[1:]), x, None)  # three baselines for two inputs


def test_black_without_the_inputs_normalize_says_so():
    x = _inputs((2, 2, 6, 8, 10))
    with pytest.raises(ValueError, match=r"2 channels but normalize has 3 values.*'zeros'") as err:
        make_baselines("black", x, ((0.5,) * 3, (0.2,) * 3))
    assert "\n" not in str(err.value)
    assert torch.equal(make_baselines("black", x, None), torch.zeros_like(x))
