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

__all__ = ["INSTALL_HINT", "MAX_UPLOAD", "check_gradio", "check_port", "serve"]

#: What to run when Gradio is missing.
INSTALL_HINT = install_command("app")
#: The largest upload Gradio accepts; the pixel limit of load_image applies after it.
MAX_UPLOAD = "100mb"


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
    echo: Callable[[str], None] = print,
) -> None:
    """Serve the explorer for ``model`` on ``host:port`` until Ctrl+C or SIGTERM.

    The model is loaded once; samples and downloads live in a private temporary folder,
    removed on exit. No share link, no analytics, nothing loaded from elsewhere.

    Raises:
        InputError: Gradio is missing, the port is taken, or the model cannot be loaded.
    """
    check_gradio()
    check_port(host, port)
    from rsigradcam.app.web.compute import open_explorer

    work_dir = Path(tempfile.mkdtemp(prefix="rsigradcam-app-"))
    page = None
    try:
        echo(f"Loading {model} ...")
        explorer = open_explorer(model, device, input_format, work_dir=work_dir)
        from rsigradcam.app.web.page import build_page

        page = build_page(explorer)
        with terminated_as_interrupt():
            page.launch(
                server_name=host,
                server_port=port,
                share=False,
                inbrowser=False,
                quiet=True,
                prevent_thread_lock=True,
                max_file_size=MAX_UPLOAD,
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
