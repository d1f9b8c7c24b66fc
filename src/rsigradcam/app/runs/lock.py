"""One run at a time per output folder: an advisory lock on ``OUT/.lock``.

Rank 0 holds the lock (``flock``) from its checks to the final merge, so a second run
into the same folder is refused, naming the process that holds it. The system drops the
lock when that process ends, however it ends, so a killed run never leaves a stale lock
behind. (On systems without ``fcntl``, and on file systems that ignore ``flock``, there
is no lock.)

Example:
    >>> with run_lock(Path("out")):  # doctest: +SKIP
    ...     pass
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

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
    try:
        import fcntl
    except ImportError:  # no flock here (Windows): no lock
        yield
        return
    path = out / LOCK
    handle = path.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = " ".join(handle.read().split()) or "another process"
            raise InputError(
                f"another explain-dataset run is writing into --out '{out}' ({holder}); wait "
                "for it to finish, or choose another --out"
            ) from None
        except OSError:  # a file system without flock: no lock
            yield
            return
        handle.seek(0)
        handle.truncate()
        handle.write(
            f"pid {os.getpid()} on {socket.gethostname()} by {_user()}, since "
            f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}\n"
        )
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment
        return "unknown user"
