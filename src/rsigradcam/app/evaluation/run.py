"""Run an evaluation (:func:`evaluate`) and write its files (:func:`write_evaluation`).

Example:
    >>> found = evaluate(EvaluationOptions(max_images=4, sanity=False))  # doctest: +SKIP
    >>> write_evaluation(found, "rsigradcam-evaluation")                 # doctest: +SKIP
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

from rsigradcam import __version__
from rsigradcam.app.evaluation.inputs import EvalImage, load_images, resolve_layers
from rsigradcam.app.evaluation.options import CPU_BATCH, METRICS, EvaluationOptions
from rsigradcam.app.evaluation.report import markdown_summary, render_report
from rsigradcam.app.evaluation.results import (
    Evaluation,
    EvaluationResults,
    ExplanationRecord,
    ImageResult,
    RunConfig,
)
from rsigradcam.app.evaluation.stages import (
    MethodRunner,
    RunState,
    Stage,
    explain_all,
    faithfulness,
    localisation,
    sanity,
    stability,
)
from rsigradcam.app.evaluation.stats import judge_claims, summarize
from rsigradcam.app.loading import FIXED_BUDGET_MB, LoadedModel, load_model, model_sha256
from rsigradcam.files import save_json, save_text
from rsigradcam.metrics import SATURATION
from rsigradcam.metrics.stability import class_probabilities, saturation_split

__all__ = ["evaluate", "write_evaluation"]


def _start(
    options: EvaluationOptions, progress: bool, out: Path | None
) -> tuple[RunState, LoadedModel, list[EvalImage], Tensor, list[str]]:
    """Load the model and the images, and find the classes to explain."""
    loaded = load_model(options.model, options.device, options.input_size)
    layers = resolve_layers(loaded, options.layers, options.input_size)
    found, notes = load_images(options, loaded, exclude=out)
    notes.extend(options.variants.warnings(options.methods))
    images = torch.cat([image.tensor for image in found]).to(loaded.device)
    probabilities = class_probabilities(loaded.model, images, batch_size=CPU_BATCH)
    top1 = probabilities.argmax(dim=1).tolist()
    targets = torch.tensor(
        [top1[k] if image.target is None else image.target for k, image in enumerate(found)],
        device=loaded.device,
    )
    saturated = saturation_split(probabilities.max(dim=1).values).saturated.tolist()
    runners = {
        name: MethodRunner(
            name, layers, options.steps, options.output, notes,
            {
                "path_options": {"normalize": options.input_format.normalize},
                "variants": options.variants.to_json(),
            },
        )
        for name in options.methods
    }
    run = RunState(
        options, loaded.model, images, targets, [image.name for image in found],
        saturated, runners, progress, notes,
    )
    return run, loaded, found, probabilities, layers


def evaluate(
    options: EvaluationOptions,
    *,
    echo: Callable[[str], None] = print,
    progress: bool = False,
    out: Path | None = None,
) -> Evaluation:
    """Run every method and metric that ``options`` ask for.

    Args:
        options: What to run (see :class:`EvaluationOptions`).
        echo: Called with a line as each stage finishes.
        progress: Let the metrics draw progress bars (on a terminal only).
        out: The output folder, never searched for images.

    Returns:
        An :class:`Evaluation`: the typed results, the images and the heatmaps.

    Raises:
        InputError: An option, model, layer or image folder that cannot work.
    """
    options.check()
    started = time.perf_counter()
    run, loaded, found, probabilities, layers = _start(options, progress, out)
    timings = {"setup": time.perf_counter() - started}
    echo(
        f"{len(found)} images, layers {', '.join(layers)}, methods "
        f"{', '.join(options.methods)}, m = {options.steps} ({timings['setup']:.1f} s)"
    )
    stages: list[tuple[str, Stage]] = [
        ("explanations", explain_all),
        ("deletion, insertion, average drop", faithfulness),
        ("grid pointing game", localisation),
    ]
    if options.sanity:
        stages.append(("cascading randomisation", sanity))
    if options.stability and run.runners.keys() & {"gradcam", "rsi"}:
        stages.append(("stability", stability))
    for title, stage in stages:
        begin = time.perf_counter()
        for runner in run.runners.values():
            runner.stage = title
        stage(run)
        timings[title] = time.perf_counter() - begin
        echo(f"{title}: {timings[title]:.1f} s")
    results = _results(run, loaded, found, probabilities, layers, timings)
    results = replace(results, timings={**timings, "total": time.perf_counter() - started})
    heatmaps = {
        (method, layer): run.explained(method)[layer].heatmap.detach().to("cpu", torch.float32)
        for method, layer in run.pairs()
    }
    return Evaluation(results, [image.rgb for image in found], heatmaps)


def _results(
    run: RunState,
    loaded: LoadedModel,
    found: list[EvalImage],
    probabilities: Tensor,
    layers: list[str],
    timings: dict[str, float],
) -> EvaluationResults:
    """Everything the run found, with the summary and the claims' verdicts."""
    top = probabilities.max(dim=1).values.tolist()
    explained = probabilities.gather(1, run.targets.view(-1, 1)).squeeze(1).tolist()
    o = run.options
    config = RunConfig(
        options=o,
        layers=layers,
        version=__version__,
        torch=torch.__version__,
        python=platform.python_version(),
        model_digest=model_sha256(run.model),
        memory_budget_mb=FIXED_BUDGET_MB,
        batch_size=run.batch,
        saturation=SATURATION,
    )
    images = [
        ImageResult(
            name=image.name,
            source=image.source,
            class_id=int(run.targets[k]),
            class_name=loaded.label(int(run.targets[k])),
            probability=explained[k],
            top1_probability=top[k],
            saturated=run.saturated[k],
        )
        for k, image in enumerate(found)
    ]
    return EvaluationResults(
        config=config,
        images=images,
        explanations={
            method: {layer: ExplanationRecord.of(exp) for layer, exp in
                     run.explained(method).items()}
            for method in run.runners
        },
        metrics_info=dict(METRICS),
        units=run.units,
        metrics=run.metrics,
        details=run.details,
        notes=run.notes,
        summary=summarize(run.metrics, run.units, o.seed, o.bootstrap),
        claims=judge_claims(run.metrics, run.units, o.seed, o.bootstrap),
        timings=timings,
    )


def write_evaluation(evaluation: Evaluation, out: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``report.html`` and ``summary.md`` to ``out``, atomically.

    Returns:
        The files written: ``{"results": ..., "report": ..., "summary": ...}``.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "results": save_json(evaluation.results.to_json(), folder / "results.json"),
        "report": save_text(render_report(evaluation), folder / "report.html"),
        "summary": save_text(markdown_summary(evaluation.results), folder / "summary.md"),
    }
