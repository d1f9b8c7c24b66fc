"""One run at a time per output folder: an advisory lock on ``OUT/.lock``.

Rank 0 holds the lock (``flock``) from its checks to the final merge, so a second run
into the same folder is refused, naming the process that holds it. The run removes the
file as it ends, so a finished output holds no ``.lock``; the system drops the lock when
the process ends, however it ends, so a killed run (whose file stays) never blocks the
next one. (On systems without ``fcntl``, and on file systems that ignore ``flock``, there
is no lock.)

Example:
    >>> with run_lock(Path("out")):  # doctest: +SKIP
    ...     pass
"""

from __future__ import annotations

import contextlib
import getpass
import importlib.util
import os
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from rsigradcam.app.errors import InputError

__all__ = ["LOCK", "run_lock"]

#: The lock file that rank 0 holds in OUT while a run writes there.
LOCK = ".lock"


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` for a run, or refuse when another process holds it.

    Raises:
        InputError: Another run is writing into ``out``; the message names its process.

    Example:
        >>> with run_lock(Path("out")):  # doctest: +SKIP
        ...     pass
    """
    if importlib.util.find_spec("fcntl") is None:  # no flock here (Windows): no lock
        yield
        return
    path = out / LOCK
    handle = _locked(path, out)
    if handle is None:  # a file system without flock: no lock
        yield
        return
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(
            f"pid {os.getpid()} on {socket.gethostname()} by {_user()}, since "
            f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}\n"
        )
        handle.flush()
        yield
    finally:
        # Removed while still held, so that a finished output keeps no lock file: a run
        # that opened the file before this must find it gone and try again (see _locked).
        with contextlib.suppress(OSError):
            path.unlink()
        handle.close()  # releases the lock


def _locked(path: Path, out: Path) -> IO[str] | None:
    """``path`` opened and locked by this process; ``None`` where flock does not work.

    Raises:
        InputError: Another process holds the lock.
    """
    import fcntl

    while True:
        handle = path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = " ".join(handle.read().split()) or "another process"
            handle.close()
            raise InputError(
                f"another run is writing into --out '{out}' ({holder}); wait for it to "
                "finish, or choose another --out"
            ) from None
        except OSError:
            handle.close()
            return None
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:  # removed by the run that held it, as it finished
            same = False
        if same:
            return handle
        handle.close()


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment
        return "unknown user"
