"""The report of ``rsigradcam evaluate``: one self-contained HTML file, and a Markdown summary.

:func:`render_report` lays out the verdicts on the paper's claims, tables of means with
95 % bootstrap intervals, matplotlib plots (deletion and insertion curves, GridPG box
plots, randomisation curves, stability against m) and a gallery of heatmaps per method
and layer. Every image is inside the file (base64: PNG plots, JPEG gallery thumbnails) and
the style sheet is inline, so the file needs nothing else: no network, no JavaScript.
:func:`markdown_summary` gives the verdicts and the tables in GitHub Markdown. Both read
the typed :class:`~rsigradcam.app.evaluation.results.EvaluationResults`, so a report can
also be made from an evaluation's files read back with
:func:`~rsigradcam.app.evaluation.storage.load_results`.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

from rsigradcam.app.evaluation.results import ClaimResult, Evaluation, EvaluationResults, Interval
from rsigradcam.files import finite, md_cell
from rsigradcam.methods import METHODS
from rsigradcam.serialization import encode
from rsigradcam.viz import overlay

__all__ = ["METHOD_LABELS", "markdown_summary", "render_report"]

#: How methods are named in the report: each method's own label, and the random reference.
METHOD_LABELS: dict[str, str] = {
    **{name: cls.label for name, cls in METHODS.items()},
    "random": "random order",
}
_THUMB = 128  # gallery thumbnails, pixels
_JPEG_QUALITY = 85
_DPI = 90
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1, h2, h3 { font-weight: 600; }
table { border-collapse: collapse; margin: 0.8em 0 1.6em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f2f2f2; } td.l, th.l { text-align: left; }
.holds { background: #d8f0d8; } .fails { background: #f6d6d6; } .open { background: #f3f3f3; }
.gallery td { padding: 2px; text-align: center; } .gallery img { display: block; }
.note { color: #555; font-size: 0.9em; } code { background: #f4f4f4; padding: 0 0.2em; }
img.plot { max-width: 100%; }
"""


def _label(results: EvaluationResults, key: str) -> str:
    """An arm's caption (a plain method: its label)."""
    if key in METHOD_LABELS:
        return METHOD_LABELS[key]
    return results.arms.get(key, key)


def _missing(value: float | None) -> bool:
    """No number: ``None``, or NaN or infinite (written as ``null`` in results.json)."""
    return value is None or not math.isfinite(value)


def _num(value: float | None) -> str:
    """A number for a table: 3 decimals, or 2 significant digits for tiny values."""
    if value is None or not math.isfinite(value):
        return "–"
    if value == 0 or abs(value) >= 0.01:
        return f"{value:.3f}"
    return f"{value:.1e}"


def _interval(stats: Interval | None) -> str:
    """``mean [low, high]`` (n < 2: the mean alone)."""
    if stats is None or _missing(stats.mean):
        return "–"
    if _missing(stats.low):
        return _num(stats.mean)
    return f"{_num(stats.mean)} [{_num(stats.low)}, {_num(stats.high)}]"


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return buffer.getvalue()


def _img(data: bytes, alt: str, css: str = "", mime: str = "image/png") -> str:
    encoded = base64.b64encode(data).decode("ascii")
    klass = f' class="{css}"' if css else ""
    return f'<img{klass} alt="{html.escape(alt)}" src="data:{mime};base64,{encoded}">'


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], classes: Sequence[str] = ()
) -> str:
    """An HTML table; cells are already escaped. ``classes``: one CSS class per row."""
    head = "".join(f'<th class="l">{h}</th>' if i == 0 else f"<th>{h}</th>"
                   for i, h in enumerate(headers))
    body = []
    for i, row in enumerate(rows):
        klass = f' class="{classes[i]}"' if i < len(classes) and classes[i] else ""
        cells = "".join(f'<td class="l">{c}</td>' if j == 0 else f"<td>{c}</td>"
                        for j, c in enumerate(row))
        body.append(f"<tr{klass}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _columns(results: EvaluationResults, metric: str | None = None) -> list[str]:
    """Layer columns: the CAM layers, then ``input``; those of ``metric`` when given."""
    found = results.metrics
    chosen = [found[metric]] if metric is not None else list(found.values())
    used = {layer for by in chosen for m in by.values() for layer in m}
    return [layer for layer in [*results.config.layers, "input"] if layer in used]


# --------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------


def _panels(count: int, title: str) -> tuple[Figure, list[Axes]]:
    columns = min(count, 4)
    rows = -(-count // columns)
    figure = Figure(figsize=(3.6 * columns, 2.9 * rows), layout="constrained")
    axes = [figure.add_subplot(rows, columns, i + 1) for i in range(count)]
    figure.suptitle(title)
    return figure, axes


def _curves_plot(results: EvaluationResults, kind: str) -> bytes | None:
    found_curves = results.details.curves
    if found_curves is None:
        return None
    curves = found_curves.deletion if kind == "deletion" else found_curves.insertion
    fractions = curves.fractions
    layers = [layer for layer in _columns(results) if layer != "input"] or ["input"]
    figure, axes = _panels(len(layers), f"{kind.capitalize()} curves (mean over images)")
    for ax, layer in zip(axes, layers, strict=True):
        for method, by_layer in curves.curves.items():
            found = by_layer.get(layer, by_layer.get("input") if method in ("ig", "random")
                                 else None)
            if found is None:
                continue
            style = "--" if method in ("ig", "random") else "-"
            ax.plot(fractions, np.mean(found, axis=0), style, label=_label(results, method))
        ax.set_title(layer)
        ax.set_xlabel("fraction of pixels " + ("removed" if kind == "deletion" else "restored"))
        ax.set_ylabel("probability of the class")
    axes[0].legend(fontsize="x-small")
    return _png(figure)


def _gridpg_plot(results: EvaluationResults) -> bytes | None:
    scores = results.metrics.get("gridpg")
    if not scores:
        return None
    layers = _columns(results, "gridpg")
    figure, axes = _panels(len(layers), "GridPG scores per grid cell (chance 0.25)")
    for ax, layer in zip(axes, layers, strict=True):
        methods = [m for m in scores if layer in scores[m]]
        ax.boxplot([scores[m][layer] for m in methods])
        ax.set_xticks(range(1, len(methods) + 1), [_label(results, m) for m in methods],
                      rotation=35, ha="right", fontsize="small")
        ax.axhline(0.25, color="grey", linestyle=":", linewidth=1)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(layer)
    return _png(figure)


def _sanity_plot(results: EvaluationResults) -> bytes | None:
    sanity = results.details.sanity
    if sanity is None or not sanity.correlations:
        return None
    layers = _columns(results, "sanity_spearman")
    stages = sanity.stages
    figure, axes = _panels(len(layers), "Cascading randomisation: Spearman with the trained map")
    for ax, layer in zip(axes, layers, strict=True):
        for method, by_layer in sanity.correlations.items():
            if layer in by_layer:
                ax.plot(range(len(stages)), np.mean(by_layer[layer], axis=1), "o-",
                        label=_label(results, method), markersize=3)
        ax.set_xticks(range(len(stages)), stages, rotation=60, ha="right", fontsize="x-small")
        ax.set_ylim(-1.05, 1.05)
        ax.set_title(layer)
    axes[0].legend(fontsize="x-small")
    return _png(figure)


def _steps_plot(results: EvaluationResults) -> bytes | None:
    stability = results.details.stability
    if stability is None or not stability.steps_spread:
        return None
    layers = _columns(results, "steps_max_abs")
    figure, axes = _panels(len(layers), f"Stability vs m: max |Δ| from the m = "
                           f"{stability.reference} heatmap (mean over images)")
    for ax, layer in zip(axes, layers, strict=True):
        for method, by_layer in stability.steps_spread.items():
            if layer in by_layer:
                found = by_layer[layer]
                ax.plot(found.steps, np.mean(found.max_abs, axis=1), "o-",
                        label=_label(results, method))
        ax.set_xscale("log")
        ax.set_xticks(stability.steps, [str(m) for m in stability.steps])
        ax.minorticks_off()
        ax.set_xlabel("steps m")
        ax.set_ylabel("max |Δ heatmap|")
        ax.set_title(layer)
    axes[0].legend(fontsize="x-small")
    return _png(figure)


# --------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------

_VERDICT_CLASS = {"holds": "holds", "does not hold": "fails", "inconclusive": "open"}


def _claims_section(results: EvaluationResults) -> str:
    parts = []
    info = results.metrics_info
    for claim in results.claims:
        parts.append(f"<h3>“{html.escape(claim.claim)}”: {html.escape(_versus(results, claim))}"
                     "</h3>")
        if not claim.layers:
            parts.append('<p class="note">Not tested: needs both rsi and gradcam, and the '
                         "metrics of this claim.</p>")
            continue
        rows, classes = [], []
        for layer, entry in claim.layers.items():
            rows.append([f"<b>{html.escape(layer)}</b>", "", "", "", "", "",
                         f"<b>{entry.verdict}</b>"])
            classes.append(_VERDICT_CLASS[entry.verdict])
            for m in entry.measures:
                arrow = "↑" if m.better == "higher" else "↓"
                rows.append([
                    f"{html.escape(info[m.metric].label)} {arrow}",
                    m.group, str(m.difference.n), _num(m.rsi), _num(m.gradcam),
                    _interval(m.difference), _num(m.p_holm), m.verdict,
                ])
                classes.append(_VERDICT_CLASS[m.verdict] if m.group == "all" else "")
        parts.append(_table(
            ["layer / metric", "group", "n", html.escape(_label(results, claim.arm)),
             html.escape(_label(results, claim.versus)), "difference [95% CI]", "Holm p",
             "verdict"], rows, classes,
        ))
    return "".join(parts)


def _versus(results: EvaluationResults, claim: ClaimResult) -> str:
    return f"{_label(results, claim.arm)} vs {_label(results, claim.versus)}"


def _family_note(results: EvaluationResults) -> str:
    """How many comparisons were corrected for, and the accuracy on labelled images."""
    count = max((c.comparisons for c in results.claims), default=0)
    found = [f"The measures on all units form one family of {count} comparisons "
             "(claims x metrics x layers x arm pairs), Holm-adjusted together: a verdict "
             "needs an adjusted p below 0.05. The saturated / unsaturated groups and the "
             "bins of p are exploratory (unadjusted)."]
    if results.accuracy is not None:
        found.append(f"Accuracy on the {results.accuracy.labelled} labelled images: "
                     f"{results.accuracy.line}; the claims use the correctly classified ones.")
    return " ".join(found)


def _bins_section(results: EvaluationResults) -> str:
    if not results.p_bins:
        return "<p>None: no probabilities recorded.</p>"
    info = results.metrics_info
    rows = [
        [html.escape(f"{_label(results, r.arm)} − {_label(results, r.versus)}"),
         html.escape(info[r.metric].label), html.escape(r.layer), html.escape(r.bin),
         str(r.difference.n), _interval(r.difference)]
        for r in results.p_bins
    ]
    return ('<p class="note">The paper\'s argument: gradients vanish as the explained '
            "class's probability p approaches 1. Each difference by bins of p (exploratory, "
            "unadjusted 95% intervals).</p>"
            + _table(["comparison", "metric", "layer", "p", "n", "difference [95% CI]"], rows))


def _metric_tables(results: EvaluationResults) -> str:
    parts = []
    for metric, by_method in results.summary.items():
        columns = _columns(results, metric)
        info = results.metrics_info[metric]
        arrow = "↑ higher is better" if info.better == "higher" else "↓ lower is better"
        unit = "grid cells" if results.units[metric].unit == "cell" else "images"
        n = len(results.units[metric].ids)
        parts.append(f"<h3>{html.escape(info.label)}</h3><p class=\"note\">"
                     f"{html.escape(info.description)}; {arrow}; {n} {unit}.</p>")
        rows = [
            [html.escape(_label(results, method))]
            + [_interval(by_method[method].get(layer, {}).get("all")) for layer in columns]
            for method in by_method
        ]
        parts.append(_table(["method", *map(html.escape, columns)], rows))
    return "".join(parts)


def _images_section(results: EvaluationResults) -> str:
    rows = [
        [html.escape(i.name), html.escape(str(i.class_name)), str(i.class_id),
         _num(i.probability), "yes" if i.saturated else "no"]
        for i in results.images
    ]
    return _table(["image", "explained class", "id", "p", f"p > {results.config.saturation}"],
                  rows)


def _thumbnail(rgb: np.ndarray, alt: str) -> str:
    """A gallery thumbnail: a photo with an overlay, so JPEG (a fifth of a PNG's size).

    ``optimize`` fits the Huffman tables to the image: the same pixels in about 8 % fewer
    bytes.
    """
    buffer = io.BytesIO()
    Image.fromarray(rgb).resize((_THUMB, _THUMB), Image.Resampling.BILINEAR).save(
        buffer, format="JPEG", quality=_JPEG_QUALITY, optimize=True
    )
    return _img(buffer.getvalue(), alt, mime="image/jpeg")


def _gallery(evaluation: Evaluation) -> str:
    results = evaluation.results
    limit = results.config.options.gallery_images
    methods = list(dict.fromkeys(m for m, _ in evaluation.heatmaps))
    rows_of = [*results.config.layers]
    if any(layer == "input" for _, layer in evaluation.heatmaps):
        rows_of.append("input")
    parts = []
    for k, rgb in enumerate(evaluation.rgb[:limit]):
        image = results.images[k]
        name = image.name
        head = ["layer", "image", *(html.escape(_label(results, m)) for m in methods)]
        original = _thumbnail(rgb, name)
        rows = []
        for layer in rows_of:
            cells = [html.escape(layer), original]
            for method in methods:
                maps = evaluation.heatmaps.get((method, layer))
                cells.append(
                    "" if maps is None
                    else _thumbnail(overlay(rgb, maps[k]), f"{name} {method} {layer}")
                )
            rows.append(cells)
        parts.append(
            f"<h3>{html.escape(name)}: {html.escape(str(image.class_name))} "
            f"(p = {_num(image.probability)})</h3>"
            + _table(head, rows).replace("<table>", '<table class="gallery">', 1)
        )
    if len(evaluation.rgb) > limit:
        parts.append(f'<p class="note">The first {limit} of {len(evaluation.rgb)} images.</p>')
    return "".join(parts)


def _config_section(results: EvaluationResults) -> str:
    rows = [[html.escape(str(k)), f"<code>{html.escape(str(v))}</code>"]
            for k, v in finite(encode(results.config)).items()]
    timing = [[html.escape(k), f"{v:.1f}"] for k, v in results.timings.items()]
    return _table(["parameter", "value"], rows) + _table(["stage", "seconds"], timing)


def _plots_section(results: EvaluationResults) -> str:
    plots: list[tuple[str, Callable[[EvaluationResults], bytes | None]]] = [
        ("Deletion curves", lambda r: _curves_plot(r, "deletion")),
        ("Insertion curves", lambda r: _curves_plot(r, "insertion")),
        ("GridPG", _gridpg_plot),
        ("Cascading randomisation", _sanity_plot),
        ("Stability vs m", _steps_plot),
    ]
    parts = []
    for title, draw in plots:
        data = draw(results)
        if data is not None:
            parts.append(f"<h3>{title}</h3>" + _img(data, title, "plot"))
    return "".join(parts)


def render_report(evaluation: Evaluation) -> str:
    """The whole report as one HTML document (images inline, no scripts)."""
    results = evaluation.results
    config = results.config
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in results.notes)
    sections = [
        ("Verdicts on the paper's claims", "<p class=\"note\">Paired per image (GridPG: per "
         "grid cell), RSI-Grad-CAM minus Grad-CAM, 95% percentile bootstrap interval of the "
         "mean difference. <i>holds</i>: the interval lies on the better side of 0; <i>does "
         "not hold</i>: on the worse side; <i>inconclusive</i>: it contains 0. A claim holds "
         "at a layer when one of its metrics supports it (all images) and none contradicts "
         f"it. Saturated: top-1 probability above {config.saturation}. "
         f"{html.escape(_family_note(results))}</p>"
         + _claims_section(results)),
        ("Differences by the probability p", _bins_section(results)),
        ("Images", _images_section(results)),
        ("Plots", _plots_section(results)),
        ("Means with 95% bootstrap intervals", _metric_tables(results)),
        ("Gallery", _gallery(evaluation)),
        ("Notes", f"<ul>{notes}</ul>" if notes else "<p>None.</p>"),
        ("Configuration and timings", _config_section(results)),
    ]
    body = "".join(f"<h2>{title}</h2>{content}" for title, content in sections)
    title = (f"rsigradcam evaluate: {html.escape(str(config.options.model))}, "
             f"{len(results.images)} images, m = {config.options.steps}")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{title}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{title}</h1>{body}</body></html>\n"
    )


def markdown_summary(results: EvaluationResults) -> str:
    """The verdicts and the claims' metrics as GitHub Markdown tables."""
    info = results.metrics_info
    lines = [md_cell(_family_note(results)), ""]
    for claim in results.claims:
        lines += [f"**{md_cell(claim.claim)}: {md_cell(_versus(results, claim))}**", "",
                  f"| layer | metric | group | n | {md_cell(_label(results, claim.arm))} | "
                  f"{md_cell(_label(results, claim.versus))} | difference [95% CI] | "
                  "Holm p | verdict |",
                  "|---|---|---|---:|---:|---:|---:|---:|---|"]
        for layer, entry in claim.layers.items():
            for m in entry.measures:
                arrow = "↑" if m.better == "higher" else "↓"
                lines.append(
                    f"| {md_cell(layer)} | {md_cell(info[m.metric].label)} {arrow} | "
                    f"{md_cell(m.group)} | {m.difference.n} | {_num(m.rsi)} | "
                    f"{_num(m.gradcam)} | {_interval(m.difference)} | {_num(m.p_holm)} | "
                    f"{md_cell(m.verdict)} |"
                )
            lines.append(f"| {md_cell(layer)} | **claim** | | | | | | | "
                         f"**{md_cell(entry.verdict)}** |")
        lines.append("")
    if results.p_bins:
        lines += ["**Differences by the probability p of the explained class** (exploratory)",
                  "", "| comparison | metric | layer | p | n | difference [95% CI] |",
                  "|---|---|---|---|---:|---:|"]
        lines += [
            f"| {md_cell(r.arm)} − {md_cell(r.versus)} | {md_cell(info[r.metric].label)} | "
            f"{md_cell(r.layer)} | {md_cell(r.bin)} | {r.difference.n} | "
            f"{_interval(r.difference)} |"
            for r in results.p_bins
        ]
        lines.append("")
    for metric, by_method in results.summary.items():
        columns = _columns(results, metric)
        arrow = "↑" if info[metric].better == "higher" else "↓"
        lines += [f"**{info[metric].label}** {arrow}", "",
                  "| method | " + " | ".join(md_cell(c) for c in columns) + " |",
                  "|---|" + "---:|" * len(columns)]
        for method, by_layer in by_method.items():
            cells = [_interval(by_layer.get(layer, {}).get("all")) for layer in columns]
            lines.append(f"| {md_cell(_label(results, method))} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
