"""speed=: a checked private copy for every model, the model as given where it cannot be
made, float64 runs without float32 tricks, a bounded cache, and the deprecated keywords."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from rsigradcam import GradCAM, ModelRun, RSIGradCAM, SpeedOptions
from rsigradcam.core import inference
from rsigradcam.core.inference import COPIES_PER_MODEL, clear_cache, prepare_model
from tests.helpers import make_case


class _Standardized(nn.Conv2d):
    """A weight-standardising convolution: folding a BatchNorm into it would be wrong."""

    folds_batchnorm = True  # claims it, wrongly: the copy check must catch it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / (w.std(dim=(1, 2, 3), keepdim=True) + 1e-5)
        return nn.functional.conv2d(x, w, self.bias, self.stride, self.padding)


def _user_model(conv: type[nn.Conv2d] = nn.Conv2d) -> nn.Module:
    torch.manual_seed(3)
    model = nn.Sequential(
        conv(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    )
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _images() -> torch.Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))


def test_any_user_model_gets_the_checked_copy_by_default_and_the_same_maps():
    model, x = _user_model(), _images()
    fast = RSIGradCAM(model, "3", steps=8)(x)
    plain = RSIGradCAM(model, "3", steps=8, speed="off")(x)
    assert fast.model_run.copy and fast.model_run.folded == 1  # the explained pair is kept
    assert fast.model_run.channels_last and fast.model_run.tuned
    assert plain.model_run == ModelRun()
    torch.testing.assert_close(fast.heatmap, plain.heatmap, rtol=0, atol=1e-5)
    assert fast.model_run.describe().startswith("a private copy (float32, 1 BatchNorms folded")


def test_one_point_methods_run_the_model_as_given_unless_asked():
    model, x = _user_model(), _images()
    assert not GradCAM(model, "3")(x).model_run.copy
    asked = GradCAM(model, "3", speed=SpeedOptions())(x)
    assert asked.model_run.copy and asked.model_run.folded == 1


def test_a_copy_that_does_not_match_the_model_is_dropped_and_the_explanation_says_so():
    model, x = _user_model(_Standardized), _images()
    exp = RSIGradCAM(model, "3", steps=4)(x)
    assert not exp.model_run.copy
    assert exp.model_run.note.startswith("the prepared copy's output differs from the model's")
    plain = RSIGradCAM(model, "3", steps=4, speed="off")(x)
    torch.testing.assert_close(exp.heatmap, plain.heatmap, rtol=0, atol=0)


def test_a_copy_that_fails_to_run_is_dropped():
    class Fragile(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
            self.conv, self.fc = nn.Conv2d(4, 4, 3), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(self.bn(self.stem(x)))
            assert isinstance(self.bn, nn.BatchNorm2d)  # breaks once the pair is folded
            return self.fc(y.mean(dim=(2, 3)))

    model = Fragile().eval()
    exp = RSIGradCAM(model, "conv", steps=2)(_images())
    assert not exp.model_run.copy and exp.model_run.note.startswith("the prepared copy failed")


def test_a_model_that_does_not_fit_the_budget_is_not_copied():
    model, x = _user_model(), _images()
    exp = RSIGradCAM(model, "3", steps=2, memory_budget_mb=0.001)(x)
    assert not exp.model_run.copy and "does not fit the memory budget" in exp.model_run.note
    cam = RSIGradCAM(model, "3", steps=2, memory_budget_mb=0.001, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^dtype=torch.float64 needs a cast copy"):
        cam(x)


def test_float64_runs_get_no_float32_tricks_and_equal_the_model_bit_for_bit():
    model, x = _user_model(), _images()
    fast = RSIGradCAM(model, "3", steps=8, dtype=torch.float64)(x)
    plain = RSIGradCAM(model, "3", steps=8, dtype=torch.float64, speed="off")(x)
    assert fast.model_run == ModelRun(copy=True, dtype="float64")
    for field in ("heatmap", "layer_map", "attributions", "completeness_error"):
        assert torch.equal(getattr(fast, field), getattr(plain, field)), field


def test_the_cache_keeps_at_most_four_copies_per_model():
    clear_cache()
    model, x = _user_model(), _images()
    layers = ("0", "1", "3", "4", "5")
    built = [prepare_model(model, x, SpeedOptions(), keep=[layer]).module for layer in layers]
    assert len(inference._CACHE[model]) == COPIES_PER_MODEL == 4
    assert prepare_model(model, x, SpeedOptions(), keep=["5"]).module is built[4]
    assert prepare_model(model, x, SpeedOptions(), keep=["0"]).module is not built[0]
    clear_cache()
    assert model not in inference._CACHE


def test_batchnorm_folds_in_one_and_three_dimensions():
    for conv, bn, shape in ((nn.Conv1d, nn.BatchNorm1d, (2, 3, 20)),
                            (nn.Conv3d, nn.BatchNorm3d, (2, 3, 6, 8, 8))):
        torch.manual_seed(0)
        model = nn.Sequential(conv(3, 4, 3), bn(4), nn.ReLU(), conv(4, 4, 3), nn.Flatten(),
                              nn.LazyLinear(3))
        x = torch.randn(*shape)
        model(x)
        model[1].running_mean.uniform_(-0.5, 0.5)
        model.eval()
        prepared = prepare_model(model, x, SpeedOptions())
        assert prepared.folded == {"0", "1"} and not prepared.channels_last
        with torch.no_grad():
            torch.testing.assert_close(prepared.module(x), model(x), rtol=1e-5, atol=1e-5)


def test_the_deprecated_keywords_warn_at_the_callers_line_and_still_apply():
    model, _ = make_case(14)
    wanted = r"speed=SpeedOptions\(fold_batchnorm=\.\.\.\)"
    with pytest.warns(DeprecationWarning, match=wanted) as rec:
        cam = RSIGradCAM(model, "conv", steps=2, fold_batchnorm=False)
    assert rec[0].filename == __file__
    assert cam.speed == SpeedOptions(fold_batchnorm=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RSIGradCAM(model, "conv", steps=2, speed=SpeedOptions(fold_batchnorm=False))
    with pytest.raises(TypeError, match="unexpected keyword argument 'fold'"):
        RSIGradCAM(model, "conv", steps=2, fold=True)  # type: ignore[call-arg]


def test_the_engine_does_not_import_the_model_zoo():
    code = "import sys, rsigradcam.methods; print('rsigradcam.models' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_wrapper_whose_forward_calls_the_original_model_runs_as_given():
    class Wrapper(nn.Module):
        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.fn = lambda x: model(x)  # a deep copy keeps calling the user's model
            self.owner = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fn(x)

    model, x = _user_model(), _images()
    exp = RSIGradCAM(Wrapper(model), "owner.3", steps=4)(x)
    assert not exp.model_run.copy and "reaches modules outside the model" in exp.model_run.note
