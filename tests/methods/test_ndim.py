"""Signals, volumes and video: every method on (N, C, *S) inputs against the reference loops.

The models are SpatialCNN's 1-D, 3-D and (2+1)-D video layouts (tests/helpers.py), in
float64 like the loops in tests/reference/, which take one point at a time with a full
backward pass; tolerances are those of the 2-D comparisons, plus a heatmap correlation
of at least 0.9999.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from rsigradcam import GradCAM, IntegratedGradients, RSIGradCAM
from rsigradcam.explanation import Explanation
from rsigradcam.methods.registry import METHODS, create_cam
from tests.helpers import make_spatial_case
from tests.reference.comparators import (
    reference_gradcam,
    reference_gradcampp,
    reference_integrated_gradcam,
    reference_integrated_gradients,
    reference_layercam,
)
from tests.reference.loop import reference_rsi

ROOT = Path(__file__).resolve().parents[2]

#: (C, *S) per kind of input, and whether the network factorises space and time.
CASES: dict[str, tuple[tuple[int, ...], bool]] = {
    "signal": ((2, 120), False),
    "volume": ((1, 8, 16, 16), False),
    "video": ((3, 4, 12, 12), True),  # (C, T, H, W)
}
STEPS = 6


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm()).clamp(min=1e-300))


def _reference(method: str, model: nn.Module, layer: str, x: torch.Tensor, steps: int,
               output: str, partition: list[float] | None = None) -> dict[str, Any]:
    zeros = torch.zeros_like(x)
    if method == "rsi":
        return reference_rsi(model, layer, x, zeros, steps, output=output, partition=partition)
    if method == "gradcam":
        return reference_gradcam(model, layer, x, output)
    if method == "gradcam++":
        return reference_gradcampp(model, layer, x, output)
    if method == "layercam":
        return reference_layercam(model, layer, x, output)
    if method == "integrated-gradcam":
        return reference_integrated_gradcam(model, layer, x, zeros, steps, output)
    assert method == "ig"
    return reference_integrated_gradients(model, x, zeros, steps, "trapezoid", output)


def _check(exp: Explanation, n: int, ref: dict[str, Any], tol: float = 1e-4) -> None:
    """The 2-D comparisons' tolerances (tests/methods/test_comparators.py) and corr >= 0.9999."""
    assert int(exp.targets[n]) == ref["target"]
    assert bool(ref["layer_map"].abs().max() > 0), "a zero map compares nothing"
    assert _corr(exp.heatmap[n], ref["heatmap"]) >= 0.9999
    assert (exp.heatmap[n] - ref["heatmap"]).abs().max() < tol / 10
    for field in ("layer_map", "weights", "attributions"):
        if field in ref:
            assert _rel(getattr(exp, field)[n], ref[field]) < tol, field
    assert exp.scores[n].item() == pytest.approx(ref["score"], rel=tol / 10, abs=1e-6)
    if "baseline_score" in ref:
        assert exp.baseline_scores[n].item() == pytest.approx(
            ref["baseline_score"], rel=tol / 10, abs=1e-6
        )


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("case", list(CASES))
def test_every_method_matches_the_reference_loop(case, method):
    shape, factorised = CASES[case]
    model, x = make_spatial_case(shape, seed=3, factorised=factorised)
    output = "softmax" if method in ("rsi", "ig") else "logits"
    cam = create_cam(
        method, model, ["conv"], steps=STEPS, output=output, path_options={"baseline": "zeros"}
    )
    (exp,) = cam(x).values()
    spatial = shape[1:]
    layer_spatial = spatial if method == "ig" else tuple(
        model.conv(model.features(x[:1])).shape[2:]
    )
    assert exp.heatmap.shape == (2, *spatial) and exp.heatmap.dtype == torch.float32
    assert exp.layer_map.shape == (2, *layer_spatial)
    assert exp.weights.shape == (2, shape[0] if method == "ig" else 10)
    for n in range(x.shape[0]):
        _check(exp, n, _reference(method, model, exp.layer, x[n], STEPS, output))
    if method in ("rsi", "ig"):
        assert bool(torch.isfinite(exp.completeness_error).all())


@pytest.mark.parametrize("case", list(CASES))
def test_auto_layer_is_the_last_map_of_the_inputs_rank(case):
    shape, factorised = CASES[case]
    model, x = make_spatial_case(shape, seed=3, factorised=factorised)
    exp = GradCAM(model)(x)
    assert exp.layer == "act" and exp.heatmap.shape == (2, *shape[1:])


def test_chunks_batches_and_memory_budgets_do_not_change_a_volume():
    model, x = make_spatial_case((1, 8, 16, 16), seed=4, n=3)
    runs = [
        RSIGradCAM(model, "conv", steps=5, baseline="zeros", **options)(x)
        for options in ({}, {"batch_size": 1}, {"batch_size": 4}, {"memory_budget_mb": 0.05})
    ]
    one = [RSIGradCAM(model, "conv", steps=5, baseline="zeros")(x[n : n + 1]) for n in range(3)]
    for exp in runs[1:]:
        for field in ("heatmap", "layer_map", "weights", "attributions", "scores"):
            torch.testing.assert_close(getattr(exp, field), getattr(runs[0], field))
    for n, single in enumerate(one):
        torch.testing.assert_close(single.layer_map[0], runs[0].layer_map[n])
        torch.testing.assert_close(single.completeness_error[0], runs[0].completeness_error[n])


def test_adaptive_steps_on_a_volume_match_the_reference_at_their_partition():
    model, x = make_spatial_case((1, 8, 16, 16), seed=5)
    exp = RSIGradCAM(model, "conv", steps="auto", baseline="zeros")(x)
    assert exp.n_evaluations < 128
    partitions = exp.partition if exp.partition.dim() == 2 else exp.partition.expand(2, -1)
    for n in range(2):
        ts = partitions[n].tolist()
        ref = reference_rsi(model, "conv", x[n], torch.zeros_like(x[n]), 0, partition=ts)
        _check(exp, n, ref)


def test_float64_on_a_float32_volume_model_matches_the_reference():
    model, x = make_spatial_case((1, 8, 16, 16), seed=6, dtype=torch.float32)
    exp = RSIGradCAM(model, "conv", steps=STEPS, baseline="zeros", dtype=torch.float64)(x)
    assert exp.attributions.dtype == torch.float64 and x.dtype == torch.float32
    model64, x64 = copy.deepcopy(model).double(), x.double()
    for n in range(2):
        _check(exp, n, reference_rsi(model64, "conv", x64[n], torch.zeros_like(x64[n]), STEPS))


def test_completeness_error_falls_with_the_steps_on_a_signal():
    model, x = make_spatial_case((2, 120), seed=7)
    for cls in (RSIGradCAM, IntegratedGradients):
        errors = [
            float(cls(model, steps=m, baseline="zeros")(x).completeness_error.mean())
            for m in (2, 8, 32, 128)
        ]
        assert errors[0] > errors[1] > errors[2] > errors[3], (cls.__name__, errors)
        assert errors[3] < errors[0] / 10, (cls.__name__, errors)  # ReLU kinks: about 1/m


def test_a_layer_without_spatial_dimensions_is_one_line():
    model, x = make_spatial_case((2, 120), seed=3)
    with pytest.raises(ValueError, match=r"'fc' returned a 2-D tensor .* no spatial dimension"):
        GradCAM(model, "fc")(x)
    with pytest.raises(ValueError, match=r"'pool' has a length-1 spatial output") as err:
        GradCAM(model, "pool")(x)
    assert "\n" not in str(err.value)


def test_a_layer_that_drops_a_spatial_dimension_is_one_line():
    model = nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1), nn.Flatten(2, 3), nn.Conv2d(4, 4, 3, padding=1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
    ).double()
    x = torch.randn(2, 1, 4, 6, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"5-D \(N, K, d, h, w\) .* 3 spatial") as err:
        GradCAM(model, "2")(x)
    assert "\n" not in str(err.value)
    assert GradCAM(model, "0")(x).heatmap.shape == (2, 4, 6, 6)


def test_inputs_of_the_wrong_rank_are_one_line_naming_shapes():
    model, x = make_spatial_case((1, 8, 16, 16), seed=3)
    cam = GradCAM(model, "conv")
    with pytest.raises(ValueError, match=r"shape \(1, 8, 16, 16\) have 2 spatial .*5-D "
                       r"\(N, C, D, H, W\).*unsqueeze\(0\)") as err:
        cam(x[0])
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"3-D \(N, C, L\), 4-D .* got shape \(2, 1\)"):
        cam(x[:, :, 0, 0, 0])


def test_black_needs_the_inputs_normalize_and_says_so():
    model, x = make_spatial_case((1, 8, 16, 16), seed=3)
    with pytest.raises(ValueError, match=r"1 channel but normalize has 3 values.*'zeros'") as err:
        RSIGradCAM(model, "conv", steps=2)(x)  # the default: black, ImageNet's normalize
    assert "\n" not in str(err.value)
    black = RSIGradCAM(model, "conv", steps=2, normalize=((0.5,), (0.25,)))(x)
    zeros = RSIGradCAM(model, "conv", steps=2, baseline=torch.full((1, 8, 16, 16), -2.0))(x)
    torch.testing.assert_close(black.layer_map, zeros.layer_map)


def _monai_nets() -> dict[str, nn.Module]:
    nets = pytest.importorskip("monai.networks.nets")
    torch.manual_seed(0)
    resnet = nets.ResNet(
        block="basic", layers=(1, 1, 1, 1), block_inplanes=(4, 8, 8, 8), spatial_dims=3,
        n_input_channels=1, num_classes=3, conv1_t_size=3, conv1_t_stride=1, no_max_pool=True,
    )
    densenet = nets.DenseNet(
        spatial_dims=3, in_channels=1, out_channels=3, init_features=8, growth_rate=4,
        block_config=(2, 2),
    )
    return {"resnet": resnet.double().eval(), "densenet": densenet.double().eval()}


@pytest.mark.slow
@pytest.mark.parametrize("net", ["resnet", "densenet"])
def test_monai_3d_networks_match_the_reference_loop(net):
    model = _monai_nets()[net]
    torch.manual_seed(1)
    x = torch.randn(2, 1, 16, 16, 16, dtype=torch.float64)
    gradcam = GradCAM(model)(x)  # layer="auto": the last 3-D map
    rsi = RSIGradCAM(model, gradcam.layer, steps=STEPS, baseline="zeros")(x)
    assert gradcam.heatmap.shape == rsi.heatmap.shape == (2, 16, 16, 16)
    for n in range(2):
        _check(gradcam, n, reference_gradcam(model, gradcam.layer, x[n]))
        ref = reference_rsi(model, rsi.layer, x[n], torch.zeros_like(x[n]), STEPS)
        _check(rsi, n, ref)


def _guide_section(title: str) -> str:
    """A section of docs/guides/volumes-and-tasks.md."""
    text = (ROOT / "docs" / "guides" / "volumes-and-tasks.md").read_text(encoding="utf-8")
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_guide_signals_volumes_and_video_example_runs():
    section = _guide_section("Signals, volumes and video")
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1
    namespace: dict[str, Any] = {}
    exec(compile(blocks[0], "volumes-and-tasks.md", "exec"), namespace)
    volume, signal = namespace["volume"], namespace["signal"]
    assert volume.heatmap.shape == (2, 8, 16, 16) and volume.layer_map.shape == (2, 4, 8, 8)
    assert signal.heatmap.shape == (2, 120)
    assert bool(torch.isfinite(volume.completeness_error).all())
