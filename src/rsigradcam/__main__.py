"""``python -m rsigradcam``: the ``rsigradcam`` command (the console script runs it too).

It first checks that the extras the command needs are installed
(:func:`rsigradcam.app.extras.missing_extra`) and otherwise says which one to install in
one line, exit code 1; then it runs the typer app of :mod:`rsigradcam.app.cli`.

Example:
    $ python -m rsigradcam demo --out /tmp/demo
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    """Run the ``rsigradcam`` command line with this process's arguments."""
    from rsigradcam.app.extras import missing_extra

    problem = missing_extra(sys.argv[1:])
    if problem is not None:
        print(problem, file=sys.stderr)
        raise SystemExit(1)
    from rsigradcam.app.cli import app

    app(prog_name="rsigradcam")


if __name__ == "__main__":
    main()
