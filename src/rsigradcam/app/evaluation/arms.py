"""The arms of an evaluation: a method, the score it explains, and the authors' variants.

An arm is written ``METHOD[+VARIANT][@OUTPUT]``: ``rsi`` (the run's output), ``rsi@logits``,
``rsi+grad_relu`` (the authors' PyTorch variant), ``gradcam@softmax``. Its key in the
results is that text without the output when the output is the run's own, so that a run
of plain methods keeps the method names as keys.

The paper's claims are judged for each RSI-Grad-CAM arm against the Grad-CAM arm that
explains the same output (:func:`comparisons`), so that a difference can be put down to
the integration (same output) rather than to the target (softmax against logits).

Example:
    >>> parse_arm("rsi+grad_relu@logits", "softmax").key
    'rsi+grad_relu@logits'
    >>> [a.key for a in run_arms((), PRESET_ARMS["claims"], "softmax", Variants())]
    ['gradcam@logits', 'gradcam', 'rsi', 'rsi@logits', 'rsi+grad_relu']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rsigradcam.app.errors import InputError
from rsigradcam.app.settings import Variants
from rsigradcam.core.targets import Output
from rsigradcam.methods import METHODS, method_class
from rsigradcam.serialization import encode

__all__ = ["PRESET_ARMS", "Arm", "comparisons", "parse_arm", "run_arms"]

_OUTPUTS: tuple[Output, ...] = ("softmax", "logits")

#: The arms of each ``--preset``: the four of the claims (Grad-CAM and RSI-Grad-CAM, each
#: on the softmax and on the logits), and the authors' PyTorch variant on the softmax.
PRESET_ARMS: dict[str, tuple[str, ...]] = {
    "claims": ("gradcam@logits", "gradcam@softmax", "rsi@softmax", "rsi@logits",
               "rsi+grad_relu@softmax"),
}


@dataclass(frozen=True)
class Arm:
    """One arm: a registry method, the score it explains, and its variants.

    Attributes:
        key: The arm's name in the results, e.g. ``"rsi"`` or ``"rsi+grad_relu@logits"``.
        method: The registry name of the method (:data:`rsigradcam.methods.METHODS`).
        output: The explained score, ``"softmax"`` or ``"logits"``.
        variants: The authors' variants (``rsi`` only).
    """

    key: str
    method: str
    output: Output
    variants: Variants = field(default_factory=Variants)

    @property
    def label(self) -> str:
        """A caption: ``"RSI-Grad-CAM (logits, grad_relu)"``."""
        settings = ", ".join((self.output, *self.variants.chosen))
        return f"{method_class(self.method).label} ({settings})"

    def cam_options(self) -> dict[str, Any]:
        """The variants as ``create_cam`` takes them."""
        return {"variants": encode(self.variants)}


def _key(method: str, variants: Variants, output: Output, default: Output) -> str:
    tail = "".join(f"+{name}" for name in variants.chosen)
    return f"{method}{tail}" + ("" if output == default else f"@{output}")


def parse_arm(text: str, default_output: Output) -> Arm:
    """Read ``METHOD[+VARIANT...][@OUTPUT]``.

    Raises:
        InputError: An unknown method, variant or output, or a variant the method lacks.

    Example:
        >>> parse_arm("gradcam@logits", "softmax").output
        'logits'
    """
    body, _, output = text.strip().partition("@")
    output = output or default_output
    if output not in _OUTPUTS:
        raise InputError(f"arm {text!r}: the output after @ is softmax or logits, not {output!r}")
    method, *chosen = body.split("+")
    if method not in METHODS:
        raise InputError(f"arm {text!r}: unknown method {method!r}; use {', '.join(METHODS)}")
    takes = method_class(method).variants
    wrong = [name for name in chosen if name not in ("grad_relu", "guided") or name not in takes]
    if wrong:
        offered = ", ".join(f"+{v}" for v in takes) or "none"
        raise InputError(f"arm {text!r}: {method} has no variant {wrong[0]!r} (it takes {offered})")
    variants = Variants("grad_relu" in chosen, "guided" in chosen)
    variants.check((method,))
    return Arm(_key(method, variants, output, default_output), method, output, variants)


def run_arms(
    methods: Sequence[str], arms: Sequence[str], output: Output, variants: Variants
) -> list[Arm]:
    """The run's arms: ``arms`` when given, else each method on ``output`` with ``variants``.

    Raises:
        InputError: An arm that cannot be read, or the same arm twice.
    """
    if arms:
        found = [parse_arm(text, output) for text in arms]
    else:
        found = [
            Arm(m, m, output, variants if variants.applies_to(m) else Variants()) for m in methods
        ]
    keys = [arm.key for arm in found]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise InputError(f"arm {twice[0]!r} is given twice; name each arm once")
    return found


def comparisons(arms: Sequence[Arm]) -> list[tuple[Arm, Arm]]:
    """(RSI-Grad-CAM arm, Grad-CAM arm on the same output) for every RSI arm that has one.

    Example:
        >>> found = run_arms((), PRESET_ARMS["claims"], "softmax", Variants())
        >>> [(a.key, b.key) for a, b in comparisons(found)]
        [('rsi', 'gradcam'), ('rsi@logits', 'gradcam@logits'), ('rsi+grad_relu', 'gradcam')]
    """
    plain = {a.output: a for a in arms if a.method == "gradcam" and not a.variants.chosen}
    return [(a, plain[a.output]) for a in arms if a.method == "rsi" and a.output in plain]
