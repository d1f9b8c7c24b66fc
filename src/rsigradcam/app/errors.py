"""The application's error type, in a module light enough for the command line to import.

:mod:`rsigradcam.app.options` imports it before any argument is read, so it imports
nothing heavy (no torch): ``rsigradcam --help`` and a usage error answer at once.
"""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """An argument that cannot work: unknown model, layer or class, unwritable folder.

    Its message is one line that names the problem and the fix; the command line prints
    it as ``error: MESSAGE`` and exits with code 2.

    Example:
        >>> from rsigradcam.app.loading.classes import resolve_class
        >>> try:
        ...     resolve_class("1000", None, 1000)
        ... except InputError as error:
        ...     print(error)
        class id 1000 is out of range: the model has 1000 classes (ids 0 to 999)
    """
