"""Hugging Face ``transformers`` classifiers, whose forward returns a ``ModelOutput``.

The score is ``.logits`` (of a ``ModelOutput`` or a dict), else a tuple's first item
(:func:`rsigradcam.core.capture.logits_of`), in the API, every method, the metrics,
AutoBaseline, the loader's probe and the CLI. Tiny models built from configs with random
weights (tests/integrations/hf_models.py); nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn
from transformers.modeling_outputs import (
    ImageClassifierOutput,
    ImageClassifierOutputWithNoAttention,
)
from typer.testing import CliRunner

from rsigradcam import METHODS, RSIGradCAM, load_heatmaps
from rsigradcam.app.cli import app
from rsigradcam.app.errors import InputError
from rsigradcam.app.evaluation import read_results
from rsigradcam.app.loading.layers import probe_layers
from rsigradcam.app.loading.models import load_model
from rsigradcam.baselines import AutoBaseline
from rsigradcam.core.capture import LayerCapture, logits_of
from rsigradcam.core.reshape import TokenGrid
from rsigradcam.methods import create_cam
from rsigradcam.metrics import average_drop_increase, deletion, insertion
from tests.integrations import hf_models
from tests.integrations.hf_models import CNN_SIZE, VIT_SIZE, Logits
from tests.reference.loop import reference_rsi

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

runner = CliRunner()
MODULE = "tests.integrations.hf_models"
RESNET_LAYER = "resnet.encoder.stages.3"
NO_SCORES = (
    "the model returned {what}, which holds no class scores; a classifier's forward must "
    "return the (N, classes) logits as a tensor, a ModelOutput or dict with a 'logits' "
    "tensor (Hugging Face ...ForImageClassification models), or a tuple whose first item "
    "is that tensor. Use a model with a classification head or wrap it."
)


def _images(n: int, size: int, seed: int = 2) -> Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


# --------------------------------------------------------------------------------------
# The rule
# --------------------------------------------------------------------------------------


def test_logits_of_takes_logits_then_a_tuples_first_item() -> None:
    t = torch.arange(8.0).view(2, 4)

    class WithLogits:
        logits = t

    assert logits_of(t) is t
    assert logits_of(ImageClassifierOutput(logits=t)) is t
    assert logits_of(ImageClassifierOutput(loss=torch.tensor(1.0), logits=t)) is t
    assert logits_of({"logits": t, "hidden_states": None}) is t
    assert logits_of(WithLogits()) is t
    assert logits_of((t, torch.zeros(1))) is t
    assert logits_of([t]) is t


@pytest.mark.parametrize(
    ("output", "what"),
    [
        ({"features": torch.zeros(1, 4)}, "a dict with keys 'features'"),
        ({"logits": None}, "a dict with keys 'logits'"),
        ((), "a tuple of 0 items ()"),
        (None, "None"),
        ("logits", "a str"),
    ],
)
def test_logits_of_without_scores_is_one_clear_line(output: object, what: str) -> None:
    with pytest.raises(ValueError) as err:
        logits_of(output)
    assert str(err.value) == NO_SCORES.format(what=what)


def test_a_model_output_without_logits_fails_in_one_line() -> None:
    base = hf_models.resnet_base()
    with pytest.raises(ValueError) as err:
        RSIGradCAM(base, "encoder.stages.3", steps=2)(_images(1, CNN_SIZE))
    what = (
        "a BaseModelOutputWithPoolingAndNoAttention with keys 'last_hidden_state', 'pooler_output'"
    )
    assert str(err.value) == NO_SCORES.format(what=what)


# --------------------------------------------------------------------------------------
# The three architectures against the reference loop
# --------------------------------------------------------------------------------------

CASES = [
    pytest.param(hf_models.vit, "vit.layers.1.layernorm_before", VIT_SIZE, "tokens", id="vit"),
    pytest.param(hf_models.convnext, "convnext.encoder.stages.3", CNN_SIZE, None, id="convnext"),
    pytest.param(hf_models.resnet, RESNET_LAYER, CNN_SIZE, None, id="resnet"),
]


@pytest.mark.parametrize(("build", "layer", "size", "reshape"), CASES)
def test_hugging_face_models_match_the_reference_loop(
    build: Callable[[], nn.Module], layer: str, size: int, reshape: str | None
) -> None:
    _match_reference(build, layer, size, reshape, "softmax")


def test_a_vit_matches_the_reference_loop_on_the_logit() -> None:
    _match_reference(hf_models.vit, "vit.layers.0.layernorm_before", VIT_SIZE, "tokens", "logits")


def _match_reference(
    build: Callable[[], nn.Module], layer: str, size: int, reshape: str | None, output: str
) -> None:
    model = build()
    assert layer in dict(model.named_modules())  # the transformers 5.x module names
    images = _images(2, size)
    exp = RSIGradCAM(
        model, layer, steps=6, output=output, normalize=None, reshape_transform=reshape
    )(images)
    with torch.no_grad():
        logits = model(images).logits
    assert exp.targets.tolist() == logits.argmax(dim=1).tolist()
    wrapped = Logits(model).eval()
    for n in range(images.shape[0]):
        ref = reference_rsi(
            wrapped,
            f"model.{layer}",
            images[n],
            torch.zeros_like(images[n]),
            6,
            output=output,
            reshape=TokenGrid() if reshape else None,
        )
        assert int(exp.targets[n]) == ref["target"]
        assert (exp.heatmap[n] - ref["heatmap"]).abs().max() < 1e-5
        assert _rel(exp.weights[n], ref["weights"]) < 1e-4
        assert _rel(exp.attributions[n], ref["attributions"]) < 1e-4
        assert exp.scores[n].item() == pytest.approx(ref["score"], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_explains_a_model_output_as_its_logits(method: str) -> None:
    model = hf_models.resnet()
    wrapped = Logits(model).eval()
    images = _images(2, CNN_SIZE)
    layer = "input" if METHODS[method].explains_input else RESNET_LAYER
    ours = create_cam(method, model, [layer], steps=4, output="logits")(images, targets=[3, 0])
    plain = create_cam(method, wrapped, [f"model.{layer}"], steps=4, output="logits")(
        images, targets=[3, 0]
    )
    a = next(iter(ours.values())) if isinstance(ours, dict) else ours
    b = next(iter(plain.values())) if isinstance(plain, dict) else plain
    torch.testing.assert_close(a.heatmap, b.heatmap, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.scores, b.scores)
    assert a.targets.tolist() == [3, 0]


def test_a_callable_target_sees_the_raw_output_and_auto_layer_works() -> None:
    model = hf_models.convnext()
    images = _images(2, CNN_SIZE)
    seen: list[object] = []

    def score(output: ImageClassifierOutputWithNoAttention) -> Tensor:
        seen.append(output)
        return output.logits[:, 2] - output.logits[:, 0]

    exp = RSIGradCAM(model, steps=3, normalize=None)(images, targets=score)
    assert seen and all(
        isinstance(o, ImageClassifierOutputWithNoAttention) and o.logits.shape[1] == 4
        for o in seen
    )
    assert exp.layer.startswith("convnext.")  # "auto": the last spatial map
    with torch.no_grad():
        logits = model(images).logits
    torch.testing.assert_close(exp.scores, logits[:, 2] - logits[:, 0], rtol=1e-5, atol=1e-5)


def test_layer_capture_returns_the_logits_of_a_vit() -> None:
    model = hf_models.vit()
    images = _images(2, VIT_SIZE)
    with torch.no_grad(), LayerCapture(model) as capture:
        logits, _ = capture.forward(images)
        records = capture.probe(images[:1])
    with torch.no_grad():
        torch.testing.assert_close(logits, model(images).logits)
    assert any(r.name == "vit.layers.1.layernorm_before" for r in records)


# --------------------------------------------------------------------------------------
# Metrics and AutoBaseline
# --------------------------------------------------------------------------------------


def test_metrics_read_the_logits_of_a_model_output() -> None:
    model = hf_models.resnet()
    wrapped = Logits(model).eval()
    images = _images(2, CNN_SIZE)
    heatmap = RSIGradCAM(model, RESNET_LAYER, steps=3)(images).heatmap
    for metric in (deletion, insertion):
        a = metric(model, images, heatmap, step=512, progress=False)
        b = metric(wrapped, images, heatmap, step=512, progress=False)
        torch.testing.assert_close(a.auc, b.auc)
    a_conf = average_drop_increase(model, images, heatmap, progress=False)
    b_conf = average_drop_increase(wrapped, images, heatmap, progress=False)
    assert a_conf.average_drop == pytest.approx(b_conf.average_drop)
    assert a_conf.increase_in_confidence == pytest.approx(b_conf.increase_in_confidence)


def test_auto_baseline_fits_a_model_output_like_its_logits() -> None:
    model = hf_models.resnet()
    fit = AutoBaseline(model, iterations=5).fit((3, CNN_SIZE, CNN_SIZE))
    same = AutoBaseline(Logits(model).eval(), iterations=5).fit((3, CNN_SIZE, CNN_SIZE))
    torch.testing.assert_close(fit.baseline, same.baseline)
    assert fit.max_prob_before == pytest.approx(same.max_prob_before)
    assert fit.max_prob_after <= fit.max_prob_before


# --------------------------------------------------------------------------------------
# The loader and the CLI
# --------------------------------------------------------------------------------------


def test_the_loader_probes_a_model_output() -> None:
    loaded = load_model(f"{MODULE}:vit", size=(VIT_SIZE, VIT_SIZE))
    assert loaded.num_classes == 4 and loaded.class_names is None
    layers = {info.name: info for info in probe_layers(loaded.model, VIT_SIZE)}
    assert layers["vit.layers.1.layernorm_before"].shape == (17, 32)
    assert not layers["vit.layers.1.layernorm_before"].explainable  # tokens: the API only
    resnet_layers = {i.name: i for i in probe_layers(hf_models.resnet(), CNN_SIZE)}
    assert resnet_layers[RESNET_LAYER].shape == (32, 2, 2)
    with pytest.raises(InputError) as err:
        load_model(f"{MODULE}:resnet_base", size=(CNN_SIZE, CNN_SIZE))
    assert str(err.value) == (
        f"model '{MODULE}:resnet_base' returned a BaseModelOutputWithPoolingAndNoAttention "
        "for 2 images; a classifier must return (N, classes) scores: a tensor, a "
        "ModelOutput or dict with 'logits', or a tuple of them"
    )


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three random 40 x 48 RGB photos."""
    folder = tmp_path_factory.mktemp("hf_photos")
    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"photo{i}.png")
    return folder


CLI = ["--size", str(CNN_SIZE), "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5"]


def test_cli_layers_lists_the_stages_of_a_hugging_face_model() -> None:
    result = runner.invoke(app, ["layers", "--model", f"{MODULE}:resnet", *CLI[:2]])
    assert result.exit_code == 0, result.output
    assert RESNET_LAYER in result.stdout


def test_cli_explain_matches_the_logits_wrapper(photos: Path, tmp_path: Path) -> None:
    common = [str(photos / "photo0.png"), "--method", "rsi,gradcam", "--steps", "3", *CLI]
    hf = runner.invoke(
        app,
        [
            "explain",
            *common,
            "--model",
            f"{MODULE}:resnet",
            "-l",
            RESNET_LAYER,
            "--out",
            str(tmp_path / "hf"),
        ],
    )
    assert hf.exit_code == 0, hf.output
    plain = runner.invoke(
        app,
        [
            "explain",
            *common,
            "--model",
            f"{MODULE}:resnet_logits",
            "-l",
            f"model.{RESNET_LAYER}",
            "--out",
            str(tmp_path / "plain"),
        ],
    )
    assert plain.exit_code == 0, plain.output
    for method in ("rsi", "gradcam"):
        ours = np.load(tmp_path / "hf" / f"photo0_{RESNET_LAYER}_{method}.npy")
        theirs = np.load(tmp_path / "plain" / f"photo0_model.{RESNET_LAYER}_{method}.npy")
        assert ours.shape == (CNN_SIZE, CNN_SIZE)
        np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_cli_explain_dataset_and_evaluate_run_a_hugging_face_model(
    photos: Path, tmp_path: Path
) -> None:
    options = ["--steps", "3", *CLI]
    runs = {}
    for name, layer in (("resnet", RESNET_LAYER), ("resnet_logits", f"model.{RESNET_LAYER}")):
        out = tmp_path / name
        result = runner.invoke(
            app,
            [
                "explain-dataset",
                str(photos),
                "--out",
                str(out),
                "--model",
                f"{MODULE}:{name}",
                "-l",
                layer,
                *options,
                "--method",
                "rsi",
                "--batch-size",
                "2",
                "--threads",
                "1",
            ],
        )
        assert result.exit_code == 0, result.output
        runs[name] = {r.id: r for r in load_heatmaps(out)}
    assert sorted(runs["resnet"]) == ["photo0.png", "photo1.png", "photo2.png"]
    for image_id, record in runs["resnet"].items():
        plain = runs["resnet_logits"][image_id]
        assert record.target == plain.target and record.heatmap.shape == (CNN_SIZE, CNN_SIZE)
        assert record.score == pytest.approx(plain.score, rel=1e-5)
        np.testing.assert_allclose(record.heatmap, plain.heatmap, atol=1e-6)
    report = tmp_path / "evaluation"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--images",
            str(photos),
            "--out",
            str(report),
            "--model",
            f"{MODULE}:resnet",
            "-l",
            RESNET_LAYER,
            *options,
            "--method",
            "rsi,gradcam",
            "--quick",
            "--curve-points",
            "3",
            "--max-grids",
            "0",
            "--bootstrap",
            "50",
        ],
    )
    assert result.exit_code == 0, result.output
    deletion_auc = read_results(report)["metrics"]["deletion_auc"]
    for method in ("rsi", "gradcam"):
        assert len(deletion_auc[method][RESNET_LAYER]) == 3
