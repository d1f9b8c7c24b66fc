"""``rsigradcam app``: an interactive explorer of explanations in the browser (Gradio).

:mod:`~rsigradcam.app.web.compute` holds what the page computes (no web framework: it is
tested without a browser), :mod:`~rsigradcam.app.web.plot` draws the score along the
path and the convergence, :mod:`~rsigradcam.app.web.page` builds the page with Gradio and
:mod:`~rsigradcam.app.web.server` starts it. Gradio is an optional extra
(``pip install 'rsigradcam[app]'``); only the page and the server import it.

The explorer works offline: Gradio's usage analytics are turned off here, before Gradio
is imported, and the page loads no asset from elsewhere.
"""

from __future__ import annotations

import os

# Read by Gradio when it is imported: no usage analytics, no version check.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

__all__: list[str] = []
