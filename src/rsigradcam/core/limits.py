"""How many path intervals a call may ask for, checked without torch.

The command line checks its step options with :func:`check_steps` before it imports torch,
so a refused value answers at once; the library's path code uses the same check.
"""

from __future__ import annotations

__all__ = ["MAX_AUTO_STEPS", "MAX_STEPS", "STEPS_WHY", "check_steps"]

#: The most intervals m of a path (m + 1 path points, each a forward and a backward pass per
#: image). Larger values are refused before any work: 50-256 converge on every case measured.
MAX_STEPS = 100_000
#: The most intervals of ``steps="auto"``: the adaptive partition keeps every point's
#: activations and gradients in memory (at a 24 x 56 x 56 layer, 1025 points are 0.6 GB per
#: image), and uniform steps beyond this settle any map it would still refine.
MAX_AUTO_STEPS = 1024

#: Why the limit exists, as the messages say it.
STEPS_WHY = (
    "each interval costs a forward and backward pass; 50-256 converge on every case measured"
)


def check_steps(value: object, name: str = "steps") -> int:
    """Validate a number of intervals: a positive int of at most :data:`MAX_STEPS`.

    The one check of ``steps=``, ``max_steps=``, partitions and the command line's step
    options, so that all refuse the same values with the same words, before any work.

    Args:
        value: The number of intervals m (m + 1 path points).
        name: How the message names it (``"steps"``, ``"max_steps"``, ``"--steps"``).

    Returns:
        ``value``.

    Raises:
        ValueError: It is not a positive int, or it is above :data:`MAX_STEPS`.

    Example:
        >>> check_steps(50)
        50
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer (number of intervals), got {value!r}.")
    if value > MAX_STEPS:
        raise ValueError(f"{name} must be at most {MAX_STEPS} ({STEPS_WHY}), got {value}.")
    return value
