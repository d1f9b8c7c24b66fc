"""The explorer's page, built with Gradio: widgets, events and the ``explain`` API endpoint.

Every computation is a function of :mod:`rsigradcam.app.web.compute`; this module wires
them to widgets. Each browser tab keeps its own results in a ``gr.State``; every event
goes through one queue that runs one request at a time, so a second request waits
instead of doubling the load; a mistake is a one-line ``gr.Error`` in the page, never a
traceback.

The named endpoint ``/explain`` serves scripts::

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    overlay, summary = client.predict(
        handle_file("cat.png"), "head", "rsi", 50, api_name="/explain"
    )
"""

from __future__ import annotations

import html
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import gradio as gr
import numpy as np

from rsigradcam.app.web.compute import (
    DEFAULT_METHODS,
    STEP_CHOICES,
    Classification,
    Explorer,
    check_options,
    classify,
    error_line,
)
from rsigradcam.app.web.plot import convergence_figure, path_figure
from rsigradcam.app.web.results import WebResult, convergence, explain_image
from rsigradcam.app.web.views import gallery, results_table, summary
from rsigradcam.baselines import BASELINE_NAMES
from rsigradcam.methods import METHODS

__all__ = ["MODEL_QUEUE", "TabState", "build_page"]

#: The queue every event that runs the model waits in (one request at a time).
MODEL_QUEUE = "model"

T = TypeVar("T")

_INTRO = """\
# RSI-Grad-CAM explorer
Upload or drop an image, or pick a sample; pick the class (top-5), the layers and the
methods, then **Explain**. Below the overlays: the class score y(x_t) along the path from
the baseline (t = 0) to the image (t = 1), with the points each path method evaluated.
"""


def _path(payload: Any) -> str | None:
    """The uploaded file's path from an image's raw value (``{"path": ...}``), or ``None``.

    The events that take the image skip Gradio's preprocessing (``preprocess=False``),
    which would open it with Pillow: every image is decoded once, by
    :func:`rsigradcam.io.load_image`, whose checks (size limit, decompression bombs,
    truncated files) give the page's one-line errors.
    """
    if payload is None:
        return None
    path = payload.get("path") if isinstance(payload, dict) else getattr(payload, "path", None)
    if not path:
        raise gr.Error("the image did not arrive as a file; upload it again")
    return str(path)


@dataclass(frozen=True)
class TabState:
    """What one browser tab has: the image's classes and the last explanation."""

    classification: Classification | None = None
    result: WebResult | None = None


def _forget(state: TabState | None) -> None:
    """Remove a tab's downloads when Gradio drops its state (the tab was closed)."""
    if state is not None and state.result is not None:
        shutil.rmtree(state.result.folder, ignore_errors=True)


def _replace_result(state: TabState, result: WebResult | None) -> TabState:
    if state.result is not None and state.result is not result:
        shutil.rmtree(state.result.folder, ignore_errors=True)
    return replace(state, result=result)


def _guard(run: Callable[[], T]) -> T:
    """Run one step of a handler; any failure becomes a one-line ``gr.Error``."""
    try:
        return run()
    except gr.Error:
        raise
    except Exception as exc:
        raise gr.Error(html.escape(error_line(exc), quote=False), print_exception=False) from None


def _progress_of(progress: gr.Progress) -> Callable[[float, str], None]:
    def report(fraction: float, description: str) -> None:
        progress(fraction, desc=description)

    return report


def build_page(explorer: Explorer) -> gr.Blocks:
    """The page for ``explorer``'s model (not launched)."""
    method_choices = [(f"{cls.label} ({name})", name) for name, cls in METHODS.items()]
    first_sample = next(iter(explorer.samples.values()), None)

    def on_image(payload: Any, state: TabState | None) -> tuple[Any, ...]:
        image = _path(payload)
        state = _replace_result(state or TabState(), None)
        cleared: tuple[Any, ...] = ([], "", None, None, None)
        if image is None:
            no_classes = gr.update(choices=[], value=None)
            return (no_classes, *cleared, replace(state, classification=None))
        found = _guard(lambda: classify(explorer, image))
        choices = found.choices()
        return (
            gr.update(choices=choices, value=choices[0][1]),
            *cleared,
            replace(state, classification=found),
        )

    def on_sample(name: str | None) -> str | None:
        return str(explorer.samples[name]) if name in explorer.samples else None

    def on_explain(
        payload: Any,
        target: int | None,
        layers: list[str],
        methods: list[str],
        steps: str,
        output: str,
        baseline: str,
        grad_relu: bool,
        guided: bool,
        alpha: float,
        state: TabState | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way to ask for it)
    ) -> tuple[Any, ...]:
        state = state or TabState()
        image = _path(payload)
        options = _guard(
            lambda: check_options(
                explorer, layers, methods, steps, output, baseline, grad_relu, guided
            )
        )
        result = _guard(
            lambda: explain_image(
                explorer, image, options, target, progress=_progress_of(progress)
            )
        )
        figure = _guard(lambda: path_figure(result))
        return (
            gr.update(value=gallery(result, alpha), columns=_columns(result)),
            results_table(result),
            figure,
            None,
            [str(p) for p in result.files],
            _replace_result(state, result),
        )

    def on_alpha(alpha: float, state: TabState | None) -> Any:
        if state is None or state.result is None:
            return gr.update()
        result = state.result
        return gr.update(value=_guard(lambda: gallery(result, alpha)))

    def on_convergence(
        state: TabState | None, progress: gr.Progress = gr.Progress()  # noqa: B008
    ) -> Any:
        if state is None or state.result is None:
            raise gr.Error("explain an image first; the convergence repeats that explanation")
        result = state.result
        found = _guard(
            lambda: convergence(explorer, result, progress=_progress_of(progress))
        )
        return convergence_figure(found)

    def api_explain(
        payload: Any, layer: str, method: str, steps: float | int | None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        image = _path(payload)
        options = _guard(lambda: check_options(explorer, layer, method, steps))
        if len(options.methods) != 1:
            raise gr.Error(f"give one method name ({', '.join(METHODS)}), got {method!r}")
        result = _guard(lambda: explain_image(explorer, image, options))
        shutil.rmtree(result.folder, ignore_errors=True)  # the API returns no files
        picture, _ = gallery(result)[0]
        return picture, _guard(lambda: summary(result.found, options.layers[0], method))

    with gr.Blocks(
        title="RSI-Grad-CAM explorer", analytics_enabled=False, delete_cache=(1800, 3600)
    ) as page:
        state = gr.State(TabState(), delete_callback=_forget)
        gr.Markdown(_INTRO + f"\nModel: {explorer.describe()}.")
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(
                    value=str(first_sample) if first_sample is not None else None,
                    type="filepath",
                    label="Image",
                    sources=["upload", "clipboard"],
                    height=320,
                    elem_id="rsg-image",
                )
                sample = gr.Dropdown(
                    choices=list(explorer.samples), value=None, label="... or a sample",
                    elem_id="rsg-sample",
                )
                target = gr.Radio(
                    choices=[], label="Class to explain (top-5; click one to explain it)",
                    elem_id="rsg-classes",
                )
            with gr.Column(scale=1):
                layers = gr.Dropdown(
                    choices=list(explorer.layer_choices),
                    value=[explorer.default_layer],
                    multiselect=True,
                    label="Layers (name, type, output K x h x w; several at once)",
                    elem_id="rsg-layers",
                )
                methods = gr.CheckboxGroup(
                    choices=method_choices, value=list(DEFAULT_METHODS), label="Methods",
                    elem_id="rsg-methods",
                )
                with gr.Row():
                    steps = gr.Dropdown(
                        choices=list(STEP_CHOICES), value="50", allow_custom_value=True,
                        label="Steps m (a number, or auto for rsi)", elem_id="rsg-steps",
                    )
                    output = gr.Radio(
                        choices=["softmax", "logits"], value="softmax", label="Output"
                    )
                with gr.Row():
                    baseline = gr.Dropdown(
                        choices=list(BASELINE_NAMES), value="black", label="Baseline"
                    )
                    grad_relu = gr.Checkbox(label="grad_relu (rsi)", value=False)
                    guided = gr.Checkbox(label="guided (rsi)", value=False)
                explain = gr.Button("Explain", variant="primary", elem_id="rsg-explain")
        with gr.Row():
            with gr.Column(scale=1):
                overlays = gr.Gallery(
                    label="Overlays: rows = layers, columns = methods",
                    columns=len(DEFAULT_METHODS), format="png", object_fit="contain",
                    height="auto", elem_id="rsg-overlays",
                )
                alpha = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Heatmap opacity")
            with gr.Column(scale=1):
                table = gr.Markdown(elem_id="rsg-table")
                path_plot = gr.Plot(
                    label="Class score along the path", format="png", elem_id="rsg-path"
                )
        run_convergence = gr.Button("Convergence as m grows", elem_id="rsg-convergence")
        convergence_plot = gr.Plot(label="Convergence", format="png", elem_id="rsg-conv-plot")
        files = gr.File(
            label="Downloads (PNG overlays and grid, NPY heatmaps, JSON summary and path)",
            file_count="multiple", elem_id="rsg-files",
        )
        with gr.Column(visible=False):  # the inputs and outputs of the /explain endpoint
            api_image = gr.Image(type="filepath", label="image")
            api_layer = gr.Textbox(label="layer")
            api_method = gr.Textbox(label="method")
            api_steps = gr.Number(label="steps", precision=0)
            api_overlay = gr.Image(label="overlay", format="png")
            api_summary = gr.JSON(label="summary")
            api_button = gr.Button("explain")

        # One queue for every event that runs the model: one request at a time, the
        # others wait (whichever tab or script sent them).
        queued: dict[str, Any] = {"concurrency_id": MODEL_QUEUE, "concurrency_limit": 1}
        private: dict[str, Any] = {"api_visibility": "private", **queued}
        raw: dict[str, Any] = {"preprocess": False, **private}  # see _path
        cleared = [target, overlays, table, path_plot, convergence_plot, files, state]
        image.change(on_image, [image, state], cleared, **raw)
        page.load(on_image, [image, state], cleared, **raw)
        sample.input(on_sample, [sample], [image], **private)
        explain_inputs = [
            image, target, layers, methods, steps, output, baseline, grad_relu, guided, alpha,
            state,
        ]
        explain_outputs = [overlays, table, path_plot, convergence_plot, files, state]
        explain.click(on_explain, explain_inputs, explain_outputs, **raw)
        target.input(on_explain, explain_inputs, explain_outputs, **raw)
        alpha.release(on_alpha, [alpha, state], [overlays], **private)
        run_convergence.click(on_convergence, [state], [convergence_plot], **private)
        api_button.click(
            api_explain, [api_image, api_layer, api_method, api_steps],
            [api_overlay, api_summary], api_name="explain", preprocess=False, **queued,
        )
    with_queue: gr.Blocks = page.queue(default_concurrency_limit=1)
    return with_queue


def _columns(result: WebResult) -> int:
    """Gallery columns: one per method that explains the layers (``ig``'s map comes last)."""
    return max(1, sum(1 for m in result.found.explanations if not METHODS[m].explains_input))

