"""The explorer's page, built with Gradio: widgets, events and the ``explain`` API endpoint.

Every computation is a function of :mod:`rsigradcam.app.web.compute`; this module wires
them to widgets. Each browser tab keeps its own results in a ``gr.State``; every event
goes through one queue that runs ``concurrency`` requests at a time (one by default, each
with its own copy of the model), so another request waits instead of adding to the load,
and one more than ``max_queue`` waiting is refused at once. A mistake in the page is one
line where the results were (the panels are cleared; the next run replaces it); through
the API it is a one-line ``gr.Error``. Never a traceback.

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

from rsigradcam.app.errors import InputError
from rsigradcam.app.web.compute import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_QUEUE,
    DEFAULT_METHODS,
    STEP_CHOICES,
    Classification,
    Explorer,
    ExplorerPool,
    check_options,
    classify,
    error_line,
)
from rsigradcam.app.web.plot import convergence_figure, path_figure
from rsigradcam.app.web.results import WebResult, convergence, explain_image
from rsigradcam.app.web.views import (
    convergence_note,
    error_note,
    gallery,
    results_table,
    summary,
)
from rsigradcam.baselines import BASELINE_NAMES
from rsigradcam.methods import METHODS

__all__ = ["MODEL_QUEUE", "PAGE_CSS", "TabState", "build_page"]

#: The queue every event that runs the model waits in.
MODEL_QUEUE = "model"

#: The page's style (``launch(css=...)``): table cells and overlay captions never cut a
#: word or a number; the error line is red.
PAGE_CSS = """
#rsg-table table { display: block; overflow-x: auto; }
#rsg-table th, #rsg-table td {
  white-space: nowrap; word-break: keep-all; overflow-wrap: normal; padding: 4px 8px;
}
#rsg-overlays .caption-label, #rsg-overlays .caption {
  white-space: normal; overflow: visible; text-overflow: clip; max-width: 100%;
}
#rsg-status .rsg-error, #rsg-conv-note .rsg-error { color: #c81e1e; font-weight: 600; }
"""

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
    which would open it with Pillow: every image is checked by
    :func:`~rsigradcam.app.web.compute.check_upload` (bytes, and pixels from the header)
    and decoded once, by :func:`rsigradcam.io.load_image`, whose checks (decompression
    bombs, truncated files) give the page's one-line errors.

    Raises:
        InputError: The value names no file.
    """
    if payload is None:
        return None
    path = payload.get("path") if isinstance(payload, dict) else getattr(payload, "path", None)
    if not path:
        raise InputError("the image did not arrive as a file; upload it again")
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


def _no_plot() -> Any:
    """The convergence plot, emptied and hidden (its note says how to fill it)."""
    return gr.update(value=None, visible=False)


def _failed(exc: BaseException) -> str:
    """The page's error line for ``exc`` (HTML), in place of a ``gr.Error``.

    A ``gr.Error`` would mark every output panel "Error" until each is written again; the
    page's handlers instead clear the panels and return this line, which the next run
    replaces.
    """
    return error_note(error_line(exc))


def build_page(
    explorer: Explorer,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    max_queue: int | None = DEFAULT_MAX_QUEUE,
) -> gr.Blocks:
    """The page for ``explorer``'s model (not launched).

    Args:
        explorer: The model and what the page offers.
        concurrency: Requests that run at once; each runs on its own copy of the model
            (:class:`~rsigradcam.app.web.compute.ExplorerPool`).
        max_queue: Requests that may wait; one more is refused at once ("Queue is full!
            Please try again." through ``gradio_client``). ``None``: no limit.

    Raises:
        InputError: ``concurrency`` or ``max_queue`` is not a positive integer.
    """
    if max_queue is not None and (
        isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1
    ):
        raise InputError(f"max_queue must be a positive integer, got {max_queue!r}")
    pool = ExplorerPool(explorer, concurrency)
    method_choices = [(f"{cls.label} ({name})", name) for name, cls in METHODS.items()]
    first_sample = next(iter(explorer.samples.values()), None)

    def on_image(payload: Any, state: TabState | None) -> tuple[Any, ...]:
        state = _replace_result(state or TabState(), None)
        no_classes = gr.update(choices=[], value=None)
        cleared: tuple[Any, ...] = ([], "", None, convergence_note(None), _no_plot(), None)
        try:
            image = _path(payload)
            if image is None:
                return (no_classes, *cleared, "", replace(state, classification=None))
            with pool.borrow() as free:
                found = classify(free, image)
        except Exception as exc:
            return (no_classes, *cleared, _failed(exc), replace(state, classification=None))
        choices = found.choices()
        return (
            gr.update(choices=choices, value=choices[0][1]),
            *cleared,
            "",
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
        try:
            image = _path(payload)
            options = check_options(
                explorer, layers, methods, steps, output, baseline, grad_relu, guided
            )
            with pool.borrow() as free:
                result = explain_image(
                    free, image, options, target, progress=_progress_of(progress)
                )
            try:
                shown = (
                    gr.update(value=gallery(result, alpha), columns=_columns(result)),
                    results_table(result),
                    path_figure(result),
                    convergence_note(result),
                    _no_plot(),
                    [str(p) for p in result.files],
                    "",
                )
            except BaseException:
                shutil.rmtree(result.folder, ignore_errors=True)
                raise
        except Exception as exc:  # cleared panels, one line; the next run replaces it
            kept = _replace_result(state, None)
            return ([], "", None, convergence_note(None), _no_plot(), None, _failed(exc), kept)
        return (*shown, _replace_result(state, result))

    def on_alpha(alpha: float, state: TabState | None) -> Any:
        if state is None or state.result is None:
            return gr.update()
        result = state.result
        return gr.update(value=_guard(lambda: gallery(result, alpha)))

    def on_convergence(
        state: TabState | None, progress: gr.Progress = gr.Progress()  # noqa: B008
    ) -> tuple[Any, Any]:
        result = state.result if state is not None else None
        if result is None:
            return convergence_note(None), _no_plot()
        try:
            with pool.borrow() as free:
                found = convergence(free, result, progress=_progress_of(progress))
            figure = convergence_figure(found)
        except Exception as exc:
            return _failed(exc), _no_plot()
        return convergence_note(result, drawn=True), gr.update(value=figure, visible=True)

    def api_explain(
        payload: Any, layer: str, method: str, steps: float | int | None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        image = _guard(lambda: _path(payload))
        options = _guard(lambda: check_options(explorer, layer, method, steps))
        if len(options.methods) != 1:
            raise gr.Error(f"give one method name ({', '.join(METHODS)}), got {method!r}")
        with pool.borrow() as free:
            result = _guard(lambda: explain_image(free, image, options))
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
                layers = gr.Dropdown(  # a typed name is kept, and checked: never dropped
                    choices=list(explorer.layer_choices),
                    value=[explorer.default_layer],
                    multiselect=True,
                    allow_custom_value=True,
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
                status = gr.HTML("", elem_id="rsg-status")
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
        convergence_text = gr.HTML(convergence_note(None), elem_id="rsg-conv-note")
        convergence_plot = gr.Plot(
            label="Convergence", format="png", visible=False, elem_id="rsg-conv-plot"
        )
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

        # One queue for every event that runs the model: `concurrency` requests at a time,
        # up to `max_queue` others wait (whichever tab or script sent them), more are
        # refused at once.
        queued: dict[str, Any] = {"concurrency_id": MODEL_QUEUE, "concurrency_limit": concurrency}
        private: dict[str, Any] = {"api_visibility": "private", **queued}
        raw: dict[str, Any] = {"preprocess": False, **private}  # see _path
        results = [overlays, table, path_plot, convergence_text, convergence_plot, files, status]
        image.change(on_image, [image, state], [target, *results, state], **raw)
        page.load(on_image, [image, state], [target, *results, state], **raw)
        sample.input(on_sample, [sample], [image], **private)
        explain_inputs = [
            image, target, layers, methods, steps, output, baseline, grad_relu, guided, alpha,
            state,
        ]
        explain.click(on_explain, explain_inputs, [*results, state], **raw)
        target.input(on_explain, explain_inputs, [*results, state], **raw)
        alpha.release(on_alpha, [alpha, state], [overlays], **private)
        run_convergence.click(
            on_convergence, [state], [convergence_text, convergence_plot], **private
        )
        api_button.click(
            api_explain, [api_image, api_layer, api_method, api_steps],
            [api_overlay, api_summary], api_name="explain", preprocess=False, **queued,
        )
    with_queue: gr.Blocks = page.queue(
        default_concurrency_limit=concurrency, max_size=max_queue
    )
    return with_queue


def _columns(result: WebResult) -> int:
    """Gallery columns: one per method that explains the layers (``ig``'s map comes last)."""
    return max(1, sum(1 for m in result.found.explanations if not METHODS[m].explains_input))

