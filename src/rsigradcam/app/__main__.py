"""``python -m rsigradcam.app``: start the explorer, as ``rsigradcam app`` does.

It takes the same options (``--model``, ``--host``, ``--port``, ...).
"""

from __future__ import annotations

import sys

from rsigradcam.app.cli import app


def main() -> None:
    """Run ``rsigradcam app`` with this process's arguments."""
    app(["app", *sys.argv[1:]], prog_name="python -m rsigradcam.app")


if __name__ == "__main__":
    main()
