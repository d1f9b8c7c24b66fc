"""MkDocs hook: the command-line reference, generated from the typer app at build time.

``docs/reference/cli.md`` holds the marker ``<!-- cli-reference -->``; this hook replaces
it with one section per command (its help text, usage and a table of its arguments and
options), read from the ``rsigradcam`` command itself, so the page is never out of date.
"""

from __future__ import annotations

from typing import Any

MARKER = "<!-- cli-reference -->"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def cli_markdown() -> str:
    """Markdown for every command of ``rsigradcam``, in the order ``--help`` lists them."""
    import typer.main
    from typer._click import Context  # typer's own click: the commands' context class

    from rsigradcam.app.cli import app

    group: Any = typer.main.get_command(app)
    root = Context(group, info_name="rsigradcam")
    lines: list[str] = []
    for name in group.list_commands(root):
        command = group.get_command(root, name)
        if command is None or command.hidden:
            continue
        ctx = Context(command, info_name=name, parent=root)
        lines += [f"## `rsigradcam {name}`", ""]
        lines += [(command.help or "").strip(), ""]
        pieces = command.collect_usage_pieces(ctx)
        lines += ["```text", f"rsigradcam {name} {' '.join(pieces)}", "```", ""]
        rows = []
        for param in command.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                if param.param_type_name == "argument":
                    rows.append((f"`{param.human_readable_name}`", "argument"))
                continue
            names, text = record
            rows.append((f"`{_cell(names)}`", _cell(text)))
        if rows:
            lines += ["| argument or option | meaning |", "|---|---|"]
            lines += [f"| {a} | {b} |" for a, b in rows]
            lines.append("")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Fill the marker of the command-line reference page."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_markdown())
