"""The benchmark's pieces run and agree with the library (no timing assertions here)."""

from __future__ import annotations

import torch

from rsigradcam import RSIGradCAM
from rsigradcam.app.bench import (
    bench_markdown,
    convergence_table,
    heatmap_correlation,
    official_style_loop,
    precision_row,
    speed_table,
)
from rsigradcam.baselines import BlackBaseline
from rsigradcam.constants import IMAGENET_NORMALIZE
from tests.helpers import load_benchmark, make_case


def test_official_style_loop_computes_the_grad_relu_variant():
    model, images = make_case(14, n=1)
    exp = RSIGradCAM(model, "conv", steps=10, grad_relu=True)(images)
    baseline = BlackBaseline(*IMAGENET_NORMALIZE)(images)
    weights = official_style_loop(model, "conv", images[0], baseline[0], int(exp.targets), 10)
    torch.testing.assert_close(weights, exp.weights[0], rtol=1e-4, atol=1e-7)


def test_speed_convergence_and_precision_tables(tmp_path):
    model, images = make_case(14, n=1)
    rows = speed_table(model, images, "conv", steps=4, repeats=1)
    names = [r.method for r in rows]
    assert names[0].startswith("rsigradcam") and any("captum" in n for n in names)
    assert all(r.seconds > 0 for r in rows)
    floor = next(r for r in rows if "floor" in r.method)
    assert floor.ratio_to_floor == 1.0
    conv = convergence_table(
        model, [("img", images)], ["conv"], [str(i) for i in range(5)],
        uniform_steps=(4, 64), reference_steps=64, auto_tolerances=(0.1,),
    )
    assert conv[0].uniform[64] == 1.0 and conv[0].uniform_needed == 65
    assert 0 < conv[0].auto[0.1][0] <= 257
    precision = precision_row(model, images, "conv", 8)
    assert precision["max_abs_heatmap_diff"] < 1e-4
    meta = {"device_name": "cpu", "torch": "x", "threads": 1, "image": "img", "layer": "conv",
            "steps": 4, "repeats": 1, "target_corr": 0.999}
    text = bench_markdown(meta, rows, conv, precision)
    assert "| img (0" in text or "| img (" in text
    assert "auto tol 0.1" in text
    evals = conv[0].auto[0.1][0]
    assert f"auto tol 0.1: mean {evals:.1f} evaluations, at most {evals}, " in text
    assert "chosen per case with hindsight: mean 65.0 evaluations" in text


def test_heatmap_correlation():
    a = torch.rand(10, 10)
    assert abs(heatmap_correlation(a, a) - 1.0) < 1e-12
    assert abs(heatmap_correlation(a, -a) + 1.0) < 1e-12


def test_limits_analysis_tells_smooth_from_rough_integrands():
    """benchmarks/limits.py: order 2 and coherent errors for a smooth gradient; order 1 and
    independent errors for a gradient that jumps at random along the path."""
    limits = load_benchmark("limits")
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 1, 513, dtype=torch.float64).view(-1, 1, 1, 1)
    a = torch.rand(1, 6, 3, 3, generator=g, dtype=torch.float64) + 0.5
    b = torch.rand(1, 6, 3, 3, generator=g, dtype=torch.float64) + 0.5
    acts = t * a  # linear activations: the error comes from the gradient alone
    smooth = limits.analyse(acts, torch.exp(3 * t) * b)
    assert 1.8 < smooth["order"] < 2.2
    assert smooth["coherence"] > 4.0  # every interval errs the same way (at most 5.7)
    assert smooth["uniform_129"] > 0.9999
    steps = torch.randn(513, 6, 3, 3, generator=g, dtype=torch.float64) / 512**0.5
    rough = limits.analyse(acts, b + steps.cumsum(0))  # a random walk along the path
    assert 0.5 < rough["order"] < 1.5
    assert rough["coherence"] < 2.5
    assert 0.0 < rough["density_33"] <= 1.0


def test_ceiling_replays_every_convolution_as_the_model_runs_it():
    """benchmarks/ceiling.py times each convolution on its own: the replay (padding done
    beforehand, as TensorFlow-style "same" padding does it) gives the module's own output,
    on an input whose height and width need uneven padding."""
    from rsigradcam.models import efficientnet_lite0

    ceiling = load_benchmark("ceiling")
    model = efficientnet_lite0(pretrained=False).eval()
    image = torch.rand(1, 3, 50, 37)
    outputs: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(
            lambda _m, _a, out, name=name: outputs.__setitem__(name, out.detach())
        )
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Conv2d)
    ]
    calls = ceiling.conv_calls(model, image)
    for handle in handles:
        handle.remove()
    assert len(calls) == len(outputs) == 49
    assert any(c.padding == 0 and c.conv.stride[0] == 2 for c in calls)  # padded beforehand
    for call in calls:
        with torch.no_grad():
            replayed = call._run(call.x)  # channels-last, as timed: rounding may differ
        torch.testing.assert_close(replayed, outputs[call.name], rtol=1e-5, atol=1e-5)
    assert sum(c.macs() for c in calls) > 0
    assert calls[0].seconds_per_image(2) > 0


def test_profile_summarises_one_call_and_counts_the_scalars_read_back():
    """benchmarks/profile.py: on a CPU, no kernels or launches; the scalar reads the call
    makes (bool(tensor) checks) are counted, and the Markdown table has one row per case."""
    profile = load_benchmark("profile")
    model, images = make_case(14)
    cam = RSIGradCAM(model, "conv", steps=4)
    summary = profile.profile_call(cam, images, "3 images")
    assert summary.wall_s > 0 and summary.kernels == summary.launches == 0
    assert summary.scalar_reads > 0 and summary.copy_calls >= 0
    assert len(summary.top) == 10 and all(sec >= 0 for _, sec, _ in summary.top)
    text = profile.markdown("CPU", [summary])
    assert "| 3 images |" in text and text.count("Top operators") == 1


def test_dataset_throughput_runs_explain_dataset_and_its_floor(tmp_path):
    """rsigradcam.app.throughput: the real explain-dataset engine on the first photos of a
    folder, against the no-grad forward of the same points; too few photos: one line."""
    import pytest
    from PIL import Image
    from skimage import data

    from rsigradcam.app.errors import InputError
    from rsigradcam.app.throughput import dataset_throughput

    photos = tmp_path / "photos"
    photos.mkdir()
    for k, image in enumerate((data.chelsea(), data.coffee(), data.astronaut())):
        Image.fromarray(image).resize((64, 48)).save(photos / f"{k}.png")
    found = dataset_throughput(photos, images=2, steps=2, batch_size=2, workers=0)
    assert found.images == 2 and found.images_per_s > 0 and found.floor_images_per_s > 0
    assert found.seconds > 0 and found.floor_seconds > 0
    with pytest.raises(InputError, match="holds 3 images, fewer than the 5 asked for"):
        dataset_throughput(photos, images=5)
