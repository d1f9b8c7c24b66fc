"""The faster point: no speed option moves a map beyond float rounding, and none touches
the user's model (BatchNorm folding, channels-last, compile, autocast, the no-grad prefix).
"""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from rsigradcam import RSIGradCAM
from rsigradcam.app.bench import heatmap_correlation
from rsigradcam.baselines import BlackBaseline
from rsigradcam.constants import IMAGENET_NORMALIZE
from rsigradcam.core.capture import LayerCapture
from rsigradcam.core.inference import (
    SpeedOptions,
    activations_in_place,
    conv_bn_pairs,
    float32_arithmetic,
    prepare_model,
)
from rsigradcam.io import load_image
from rsigradcam.models import efficientnet_lite0
from rsigradcam.models.efficientnet_lite import SameConv2d
from tests.helpers import assert_same_state, make_case, make_cnn, model_state
from tests.reference.loop import reference_rsi

OFF = {"speed": "off"}
ON = {"speed": SpeedOptions(fold_batchnorm=True, channels_last=True)}
ON_OPTIONS = SpeedOptions(fold_batchnorm=True, channels_last=True)
LAYERS = ["blocks.5", "blocks.10", "head"]


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    return efficientnet_lite0().eval()


@pytest.fixture(scope="module")
def small_images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    smooth = F.interpolate(torch.rand(2, 3, 8, 8, generator=g), size=(64, 64), mode="bilinear")
    return (smooth - 0.45) / 0.25


def _maps(model, layers, x, **options):
    exps = RSIGradCAM(model, list(layers), steps=8, **options)(x)
    return {name: exp.heatmap for name, exp in exps.items()}


def test_every_option_keeps_float32_maps_on_a_tiny_model():
    model, images = make_case(14)
    before = model_state(model)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    prepared = prepare_model(model, images, ON_OPTIONS)
    assert prepared.folded == {"features.2", "features.3"} and prepared.channels_last
    off = _maps(model, ["conv", "act", "features"], images, **OFF)
    on = _maps(model, ["conv", "act", "features"], images, **ON)
    for name in off:
        torch.testing.assert_close(on[name], off[name], rtol=0, atol=1e-5)
    assert_same_state(before, model_state(model))  # the user's model is borrowed
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]) and value.is_contiguous()
    assert isinstance(model.features[3], torch.nn.BatchNorm2d)


def test_embedded_model_maps_do_not_move_with_the_default_options(lite0, small_images):
    """float64: the options are exact transformations, every map within 1e-5.

    float32 changes the order of the sums, so a map moves as far as float32 rounding moves
    it: at head within 1e-5; at blocks.5 and blocks.10 a ReLU6 kink that rounding pushes
    across a path point moves the map by up to ~1e-3 (float32 vs float64 of today's map
    moves it as far), so there the maps agree to a correlation of 0.99999.
    """
    for dtype in (torch.float64, torch.float32):
        off = _maps(lite0, LAYERS, small_images, dtype=dtype, **OFF)
        on = _maps(lite0, LAYERS, small_images, dtype=dtype)  # default: fold + NHWC (CPU)
        for name in LAYERS:
            diff = float((on[name] - off[name]).abs().max())
            if dtype == torch.float64:
                assert diff <= 1e-5, name
            else:
                assert diff < 1e-3, name
                for a, b in zip(on[name], off[name], strict=True):
                    assert heatmap_correlation(a, b) > 0.99999, name
    prepared = prepare_model(lite0, small_images, SpeedOptions())
    assert len(prepared.folded) == 2 * 49
    padded = [m for m in prepared.module.modules() if isinstance(m, SameConv2d)]
    assert len(padded) == 49 and all(m._kernel_padding for m in padded)  # the copy only
    assert not any(getattr(m, "_kernel_padding", False) for m in lite0.modules())
    clamps = [m for m in prepared.module.modules() if isinstance(m, torch.nn.ReLU6)]
    assert len(clamps) == 33 and all(m.inplace for m in clamps)  # each after a folded pair
    assert not any(m.inplace for m in lite0.modules() if isinstance(m, torch.nn.ReLU6))


def test_embedded_model_head_map_in_float32_within_1e5(lite0):
    from skimage import data

    image = load_image(data.chelsea())[0]  # type: ignore[no-untyped-call]
    off = _maps(lite0, ["head"], image, **OFF)["head"]
    on = _maps(lite0, ["head"], image)["head"]
    torch.testing.assert_close(on, off, rtol=0, atol=1e-5)


def test_an_explained_batchnorm_or_convolution_keeps_its_pair():
    model, images = make_case(14)
    for layer in ("features.2", "features.3"):
        prepared = prepare_model(model, images, ON_OPTIONS, keep=[layer])
        assert prepared.folded == frozenset()
        assert not prepared.module.features[4].inplace  # it would clamp the explained map
        off = _maps(model, [layer], images, **OFF)[layer]
        on = _maps(model, [layer], images, **ON)[layer]
        torch.testing.assert_close(on, off, rtol=0, atol=1e-6)


@pytest.mark.parametrize("layer", ["features.4", "features", "conv", ["features.1", "conv"]])
def test_activations_clamp_in_place_only_after_a_folded_pair(layer):
    """The ReLU after the folded pair clamps the convolution's output in place, also when
    the ReLU itself, a later layer or an earlier one is explained; the maps do not move."""
    model, images = make_case(14)
    layers = layer if isinstance(layer, list) else [layer]
    prepared = prepare_model(model, images, ON_OPTIONS, keep=layers)
    assert prepared.folded == {"features.2", "features.3"}
    assert prepared.module.features[4].inplace and not prepared.module.features[1].inplace
    assert not model.features[4].inplace  # the user's model is untouched
    off = _maps(model, layers, images, **OFF)
    on = _maps(model, layers, images, **ON)
    for name in layers:
        torch.testing.assert_close(on[name], off[name], rtol=0, atol=1e-5)


def test_only_a_conv_folded_batchnorm_relu_run_is_made_in_place():
    seq = torch.nn.Sequential(
        torch.nn.Identity(), torch.nn.ReLU(),  # the Sequential's input: others may hold it
        torch.nn.Conv2d(3, 3, 1), torch.nn.Identity(), torch.nn.ReLU6(),
        torch.nn.Conv2d(3, 3, 1), torch.nn.Identity(), torch.nn.ReLU(),  # not folded
    )
    model = torch.nn.Sequential(seq)
    assert activations_in_place(model, {"0.3", "0.0"}) == ["0.4"]
    assert [m.inplace for m in seq if hasattr(m, "inplace")] == [False, True, False]


def test_pairs_are_found_only_where_the_batchnorm_reads_the_convolution_alone():
    model = make_cnn()
    assert conv_bn_pairs(model) == [("features.2", "features.3")]
    model.features[2].register_forward_hook(lambda *args: None)  # someone reads the conv
    assert conv_bn_pairs(model) == []


def test_the_cached_copy_follows_changed_weights():
    model, images = make_case(14)
    cam = RSIGradCAM(model, "conv", steps=4, **ON)
    first = cam(images).heatmap
    assert prepare_model(model, images, ON_OPTIONS, keep=["conv"]).module is (
        prepare_model(model, images, ON_OPTIONS, keep=["conv"]).module
    )
    with torch.no_grad():
        model.features[3].running_mean.add_(0.5)  # in place: the version counter moves
    changed = cam(images).heatmap
    reference = RSIGradCAM(model, "conv", steps=4, **OFF)(images).heatmap
    torch.testing.assert_close(changed, reference, rtol=0, atol=1e-5)
    assert float((changed - first).abs().max()) > 1e-3


def test_autocast_on_a_cpu_and_bad_values_are_refused_in_one_line(images):
    model = make_cnn()
    cam = RSIGradCAM(model, "conv", steps=2, speed=SpeedOptions(autocast=torch.bfloat16))
    with pytest.raises(ValueError, match=r"^autocast=torch\.bfloat16 runs on CUDA only") as err:
        cam(images)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"SpeedOptions\.fold_batchnorm must be True or False"):
        RSIGradCAM(model, "conv", speed=SpeedOptions(fold_batchnorm="yes"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"autocast must be torch\.bfloat16"):
        RSIGradCAM(model, "conv", speed=SpeedOptions(autocast=torch.float64))
    with pytest.raises(ValueError, match=r"^speed must be 'auto', 'off' or a SpeedOptions"):
        RSIGradCAM(model, "conv", speed="fast")  # type: ignore[arg-type]


def test_completeness_and_auto_steps_are_unchanged_by_the_options():
    model, images = make_case(14)
    off = RSIGradCAM(model, "conv", steps="auto", tolerance=0.1, **OFF)(images)
    on = RSIGradCAM(model, "conv", steps="auto", tolerance=0.1, **ON)(images)
    assert on.n_evaluations == off.n_evaluations
    torch.testing.assert_close(on.completeness_error, off.completeness_error, atol=1e-5, rtol=0)
    torch.testing.assert_close(on.heatmap, off.heatmap, atol=1e-5, rtol=0)


@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on a CPU needs g++")
@pytest.mark.slow
def test_compile_matches_eager_and_reports_its_compile_time_apart():
    model, images = make_case(14)
    compiled = SpeedOptions(fold_batchnorm=False, channels_last=False, cpu_tuning=False,
                            compile=True)
    cam = RSIGradCAM(model, "conv", steps=4, batch_size=5, speed=compiled)
    first = cam(images)
    assert cam.compile_seconds > 0
    again = cam(images)
    assert cam.compile_seconds == 0.0
    reference = RSIGradCAM(model, "conv", steps=4, batch_size=5, **OFF)(images)
    for exp in (first, again):
        torch.testing.assert_close(exp.heatmap, reference.heatmap, rtol=0, atol=1e-5)


@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on a CPU needs g++")
@pytest.mark.slow
def test_compiled_and_frozen_copy_follows_changed_weights():
    """On a CPU the compiled copy is frozen (its weights become constants): a model whose
    weights change between calls gets a new copy, so the maps follow the new weights."""
    model, images = make_case(14)
    compiled = SpeedOptions(fold_batchnorm=False, channels_last=False, cpu_tuning=False,
                            compile=True)
    cam = RSIGradCAM(model, "conv", steps=4, batch_size=5, speed=compiled)
    first = cam(images)
    with torch.no_grad():
        model.conv.weight.mul_(1.5)
        model.features[0].weight.mul_(-1.0)  # before the layer: the frozen prefix
    changed = cam(images)
    assert not torch.allclose(changed.attributions, first.attributions)
    assert cam.compile_seconds > 0  # a new copy, compiled anew
    reference = RSIGradCAM(model, "conv", steps=4, batch_size=5, **OFF)(images)
    torch.testing.assert_close(changed.attributions, reference.attributions, rtol=1e-5,
                               atol=1e-7)
    torch.testing.assert_close(changed.heatmap, reference.heatmap, rtol=0, atol=1e-5)


def test_the_probe_runs_a_compiled_model_eagerly():
    """Finding the layer and the chunk size runs one point once: not worth a compile."""
    seen: list[tuple[int, ...]] = []

    def counting_backend(graph: torch.fx.GraphModule, inputs: list[torch.Tensor]):
        seen.append(tuple(inputs[0].shape) if inputs else ())
        return graph.forward

    model, images = make_case(17)
    model.compile(backend=counting_backend, dynamic=False)  # in place, as a private copy
    with LayerCapture(model) as capture:
        records = capture.probe(images[:1])
    assert [r.name for r in records][-1] == "fc" and seen == []
    model(images[:1])
    assert seen  # outside the probe it compiles


@pytest.mark.parametrize("output", ["softmax", "logits"])
@pytest.mark.parametrize("rule", ["trapezoid", "left", "right"])
def test_the_reference_loop_still_agrees_with_every_option_on(rule, output):
    """tests/reference/loop.py, as tests/methods/test_reference_loop.py checks it (the
    embedded model's cases there already run with its default folding and NHWC)."""
    model, images = make_case(5, n=2)
    exp = RSIGradCAM(model, "conv", steps=12, rule=rule, output=output, **ON)(images)
    baselines = BlackBaseline(*IMAGENET_NORMALIZE)(images)
    for n in range(images.shape[0]):
        ref = reference_rsi(model, "conv", images[n], baselines[n], 12, rule, output)
        assert int(exp.targets[n]) == ref["target"]
        assert (exp.heatmap[n] - ref["heatmap"]).abs().max() < 1e-5
        for field in ("weights", "attributions", "layer_map"):
            got, want = getattr(exp, field)[n], ref[field]
            assert float((got - want).norm() / want.norm().clamp(min=1e-30)) < 1e-4, field


def test_faithfulness_metrics_on_the_inference_copy_match_the_eager_model(lite0):
    """`evaluate` runs deletion, insertion and Average Drop on the prepared copy."""
    from skimage import data

    from rsigradcam import metrics

    images = torch.cat([load_image(data.chelsea())[0], load_image(data.coffee())[0]])
    maps = torch.rand(2, 224, 224, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([285, 967])
    fast = prepare_model(lite0, images, SpeedOptions()).module
    assert fast is not lite0
    step = 224 * 224 // 4 + 1
    for curve in (metrics.deletion, metrics.insertion):
        eager = curve(lite0, images, maps, targets, step=step, batch_size=4).auc
        quick = curve(fast, images, maps, targets, step=step, batch_size=4).auc
        assert (quick - eager).abs().max() < 1e-6
    eager_drop = metrics.average_drop_increase(lite0, images, maps, targets).drop
    fast_drop = metrics.average_drop_increase(fast, images, maps, targets).drop
    assert (fast_drop - eager_drop).abs().max() < 1e-4  # percent


def test_float32_arithmetic_turns_tf32_off_on_cuda_and_restores_the_flags():
    flags = torch.backends.cudnn, torch.backends.cuda.matmul
    before = [f.allow_tf32 for f in flags]
    try:
        for f in flags:
            f.allow_tf32 = True
        with float32_arithmetic(torch.device("cpu")):
            assert all(f.allow_tf32 for f in flags)  # off a GPU nothing changes
        with pytest.raises(KeyError), float32_arithmetic(torch.device("cuda")):
            assert not any(f.allow_tf32 for f in flags)
            raise KeyError("restored even on an error")
        assert all(f.allow_tf32 for f in flags)
    finally:
        for f, value in zip(flags, before, strict=True):
            f.allow_tf32 = value
