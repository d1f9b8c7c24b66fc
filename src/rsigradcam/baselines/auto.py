"""AutoBaseline: an image optimised so that the model is as unsure as it can be.

A baseline should carry no evidence for any class. Starting from a black image, the
pixels are optimised so that the model's softmax output is as close to uniform as
possible while staying near black::

    loss(x') = 0.99 * max_c |p_c(x') - 1/C| + 0.01 * MSE(x', black)

with RMSprop (learning rate 0.1, 200 iterations), projecting the pixels back into the
valid range after each step. This is the auto-baseline of the RSI-Grad-CAM authors'
notebooks, done in the model's own (preprocessed) input space.

The result depends only on the model and the input size, so it is computed once per
size and cached; :meth:`AutoBaseline.save` and :meth:`AutoBaseline.from_file` keep it
across runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from rsigradcam.baselines.simple import Baseline, CheckedNormalize, Normalize, channel_affine
from rsigradcam.core.capture import LayerCapture, logits_of, model_device
from rsigradcam.files import write_atomically
from rsigradcam.serialization import JsonKeys

__all__ = ["AutoBaseline", "AutoBaselineFit"]

_FORMAT = "rsigradcam.AutoBaseline/1"


@dataclass(frozen=True)
class AutoBaselineFit:
    """One optimised baseline and how well it worked.

    Attributes:
        baseline: (C, H, W) baseline in the model's preprocessed input space.
        max_prob_before: Largest class probability of the model at the black start.
        max_prob_after: Largest class probability at the optimised baseline.
        iterations: Optimiser steps taken.
        loss: The loss after every step.
    """

    baseline: Tensor
    max_prob_before: float
    max_prob_after: float
    iterations: int
    loss: tuple[float, ...]

    # The JSON form (rsigradcam.serialization.encode): these keys, in this order.
    __json_keys__: ClassVar[JsonKeys] = (
        ("shape", lambda fit: list(fit.baseline.shape)), "max_prob_before", "max_prob_after",
        "iterations", ("final_loss", lambda fit: fit.loss[-1] if fit.loss else None),
    )


class AutoBaseline(Baseline):
    """A baseline optimised to make the model's softmax output uniform.

    Args:
        model: The classifier the baseline is for. May be ``None`` for a baseline loaded
            with :meth:`from_file`; then only the saved input sizes are available.
        iterations: RMSprop steps.
        lr: RMSprop learning rate.
        prob_weight: Weight of ``max_c |p_c - 1/C|``.
        mse_weight: Weight of the mean squared distance to black.
        normalize: ``(mean, std)`` of the model's preprocessing, ``None`` for inputs in
            [0, 1]; left unset, a CAM passes its own.

    Example:
        >>> auto = AutoBaseline(model)                               # doctest: +SKIP
        >>> exp = RSIGradCAM(model, "head", baseline=auto)(images)   # doctest: +SKIP
        >>> auto.fits[(3, 224, 224)].max_prob_after < 0.01            # doctest: +SKIP
        True
        >>> auto.save("auto-baseline.pt")                             # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module | None,
        *,
        iterations: int = 200,
        lr: float = 0.1,
        prob_weight: float = 0.99,
        mse_weight: float = 0.01,
        normalize: Normalize = None,
    ) -> None:
        super().__init__(normalize)
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module or None, not {type(model).__name__}.")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
            raise ValueError(f"iterations must be a non-negative int, got {iterations!r}.")
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}.")
        self.model = model
        self.iterations, self.lr = iterations, float(lr)
        self.prob_weight, self.mse_weight = float(prob_weight), float(mse_weight)
        #: The fitted baselines by input size (C, H, W).
        self.fits: dict[tuple[int, ...], AutoBaselineFit] = {}

    def __repr__(self) -> str:
        return f"AutoBaseline(iterations={self.iterations}, lr={self.lr})"

    def make(self, images: Tensor, normalize: CheckedNormalize, sample: int = 0) -> Tensor:
        """The fitted baseline for the images' size, fitting it on first use."""
        key = tuple(images.shape[1:])
        if key not in self.fits:
            self.fit(key, normalize)
        baseline = self.fits[key].baseline.to(device=images.device, dtype=images.dtype)
        return baseline.unsqueeze(0).expand_as(images).contiguous()

    def fit(self, shape: tuple[int, ...], normalize: CheckedNormalize = None) -> AutoBaselineFit:
        """Optimise the baseline for inputs of ``shape`` (C, H, W) and cache it.

        The model is borrowed as in every explanation: eval mode, parameters frozen, and
        everything restored afterwards.

        Raises:
            ValueError: No model is attached (a baseline loaded from a file without one).
        """
        if self.model is None:
            saved = ", ".join(str(k) for k in self.fits) or "none"
            raise ValueError(
                f"AutoBaseline has no model to fit inputs of size {shape}; it holds sizes "
                f"{saved}. Pass model= to AutoBaseline or AutoBaseline.from_file(path, model)."
            )
        norm = self.normalize or normalize
        device = model_device(self.model)
        dtype = next(
            (t.dtype for t in self.model.parameters() if t.is_floating_point()), torch.float32
        )
        probe = torch.zeros((1, *shape), device=device, dtype=dtype)
        mean, std = channel_affine(norm, probe)
        low, high = (0.0 - mean) / std, (1.0 - mean) / std
        black = low.expand_as(probe).clone()
        x = black.clone().requires_grad_(True)
        optimizer = torch.optim.RMSprop([x], lr=self.lr)
        losses: list[float] = []
        with torch.inference_mode(False), torch.enable_grad(), LayerCapture(self.model) as cap:
            before = self._max_prob(cap.model, black)
            for _ in range(self.iterations):
                optimizer.zero_grad(set_to_none=True)
                probs = torch.softmax(logits_of(cap.model(x)), dim=1)
                uniform = 1.0 / probs.shape[1]
                loss = self.prob_weight * (probs - uniform).abs().amax() + self.mse_weight * (
                    (x - black) ** 2
                ).mean()
                (x.grad,) = torch.autograd.grad(loss, [x])
                optimizer.step()
                with torch.no_grad():
                    x.copy_(torch.maximum(torch.minimum(x, high), low))
                losses.append(float(loss.detach()))
            after = self._max_prob(cap.model, x.detach())
        baseline = x.detach()[0].clone()
        result = AutoBaselineFit(baseline, before, after, self.iterations, tuple(losses))
        self.fits[tuple(shape)] = result
        return result

    @staticmethod
    def _max_prob(model: nn.Module, x: Tensor) -> float:
        with torch.no_grad():
            return float(torch.softmax(logits_of(model(x)), dim=1).amax())

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write every fitted baseline to ``path`` (a ``torch.save`` file, written atomically)."""
        if not self.fits:
            raise ValueError("AutoBaseline has no fitted baseline to save; call it or fit() first.")
        payload = {
            "format": _FORMAT,
            "normalize": self.normalize,
            "fits": [
                {
                    "baseline": f.baseline.detach().cpu(),
                    "max_prob_before": f.max_prob_before,
                    "max_prob_after": f.max_prob_after,
                    "iterations": f.iterations,
                    "loss": list(f.loss),
                }
                for f in self.fits.values()
            ],
        }
        write_atomically(Path(path), lambda tmp: torch.save(payload, tmp))

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], model: nn.Module | None = None, **kwargs: Any
    ) -> AutoBaseline:
        """Load baselines written by :meth:`save` (with ``weights_only=True``).

        Args:
            path: The file.
            model: The model, to fit input sizes the file does not hold.
            **kwargs: Further :class:`AutoBaseline` arguments.

        Raises:
            ValueError: The file is not an AutoBaseline file.
        """
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as err:
            raise ValueError(f"{path}: not a readable AutoBaseline file ({err}).") from err
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(
                f"{path}: not an AutoBaseline file (expected format {_FORMAT!r}); save one "
                "with AutoBaseline.save, or pass a plain (C, H, W) tensor as the baseline."
            )
        kwargs.setdefault("normalize", payload.get("normalize"))
        auto = cls(model, **kwargs)
        for entry in payload["fits"]:
            baseline = entry["baseline"]
            auto.fits[tuple(baseline.shape)] = AutoBaselineFit(
                baseline,
                float(entry["max_prob_before"]),
                float(entry["max_prob_after"]),
                int(entry["iterations"]),
                tuple(float(v) for v in entry["loss"]),
            )
        return auto
