"""Start the explorer: load the model once, build the page, serve it until stopped.

Example:
    >>> serve("efficientnet_lite0", "127.0.0.1", 7860)  # doctest: +SKIP
    The explorer runs at http://127.0.0.1:7860/ (Ctrl+C to stop)
"""

from __future__ import annotations

import errno
import importlib
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rsigradcam.app.errors import InputError
from rsigradcam.app.extras import install_command
from rsigradcam.app.options import terminated_as_interrupt
from rsigradcam.app.settings import InputFormat
from rsigradcam.app.web.compute import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_QUEUE,
    MAX_UPLOAD_BYTES,
    open_explorer,
)

__all__ = ["INSTALL_HINT", "check_gradio", "check_port", "serve"]

#: What to run when Gradio is missing.
INSTALL_HINT = install_command("app")


def check_gradio() -> None:
    """Raise :class:`InputError` with the install command when Gradio is not installed."""
    try:
        importlib.import_module("gradio")
    except ImportError:
        raise InputError(
            f"the app needs Gradio, which is not installed: {INSTALL_HINT}"
        ) from None


def check_port(host: str, port: int) -> None:
    """Refuse, in one line, a port that is taken or a host this machine does not have.

    Raises:
        InputError: The address cannot be bound.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputError(f"--host {host!r} is not an address of this machine ({exc})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError(
                    f"port {port} on {host} is in use (another explorer?); pass --port with "
                    "a free port"
                ) from None
            raise InputError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; pass another --host "
                "or --port"
            ) from None


def serve(
    model: str = "efficientnet_lite0",
    host: str = "127.0.0.1",
    port: int = 7860,
    device: str = "cpu",
    input_format: InputFormat | None = None,
    *,
    echo: Callable[[str], None] = print,
    max_queue: int = DEFAULT_MAX_QUEUE,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> None:
    """Serve the explorer for ``model`` on ``host:port`` until Ctrl+C or SIGTERM.

    The model is loaded once (``concurrency`` copies); samples and downloads live in a
    private temporary folder, removed on exit. No share link, no analytics, nothing loaded
    from elsewhere. ``concurrency`` requests run at once, ``max_queue`` more wait, any
    other is refused at once; uploads over
    :data:`~rsigradcam.app.web.compute.MAX_UPLOAD_BYTES` are refused by the server.

    Raises:
        InputError: Gradio is missing, the port is taken, the model cannot be loaded, or
            ``max_queue`` or ``concurrency`` is not a positive integer.
    """
    check_gradio()
    check_port(host, port)

    work_dir = Path(tempfile.mkdtemp(prefix="rsigradcam-app-"))
    page = None
    try:
        echo(f"Loading {model} ...")
        explorer = open_explorer(model, device, input_format, work_dir=work_dir)
        from rsigradcam.app.web.page import PAGE_CSS, build_page

        page = build_page(explorer, concurrency=concurrency, max_queue=max_queue)
        with terminated_as_interrupt():
            page.launch(
                server_name=host,
                server_port=port,
                share=False,
                inbrowser=False,
                quiet=True,
                prevent_thread_lock=True,
                max_file_size=MAX_UPLOAD_BYTES,
                css=PAGE_CSS,
            )
            shown = f"[{host}]" if ":" in host else host
            echo(f"The explorer runs at http://{shown}:{port}/ (Ctrl+C to stop)")
            try:
                while True:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                echo("Stopping the explorer.")
    finally:
        if page is not None:
            page.close()
        shutil.rmtree(work_dir, ignore_errors=True)
