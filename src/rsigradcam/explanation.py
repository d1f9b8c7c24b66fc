"""The result of an explanation: a frozen dataclass of tensors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor


@dataclass(frozen=True)
class ModelRun:
    """How a call ran the model: as given, or a private copy prepared for speed.

    Attributes:
        copy: Whether a private prepared copy ran (else the user's model as given).
        dtype: The dtype the passes ran in, e.g. ``"float32"``.
        folded: BatchNorms folded into their convolutions in the copy.
        channels_last: Whether the points ran in the NHWC memory format.
        tuned: Whether the copy got CPU tuning (activations in place, modules' own
            :class:`~rsigradcam.core.inference.InferenceCopyHook`).
        compiled: Whether the copy was compiled with ``torch.compile``.
        autocast: The CUDA autocast dtype (e.g. ``"bfloat16"``), or ``None``.
        note: Why the model ran as given although a copy was asked for (it could not be
            built, did not fit the memory budget, or did not match the model's output);
            empty otherwise.

    Example:
        >>> ModelRun().describe()
        'the model as given (float32)'
    """

    copy: bool = False
    dtype: str = "float32"
    folded: int = 0
    channels_last: bool = False
    tuned: bool = False
    compiled: bool = False
    autocast: str | None = None
    note: str = ""

    def describe(self) -> str:
        """One line: what ran, e.g. ``'a private copy (float32, 49 BatchNorms folded, ...)'``."""
        if not self.copy:
            text = f"the model as given ({self.dtype})"
            return f"{text}: {self.note}" if self.note else text
        parts = [self.dtype]
        parts += [f"{self.folded} BatchNorms folded"] if self.folded else []
        parts += ["channels-last"] if self.channels_last else []
        parts += ["CPU-tuned"] if self.tuned else []
        parts += ["compiled"] if self.compiled else []
        parts += [f"autocast {self.autocast}"] if self.autocast else []
        return f"a private copy ({', '.join(parts)})"


@dataclass(frozen=True)
class Explanation:
    """What a CAM method computed for a batch of N images at one layer.

    Every tensor lives on the model's device. Per-image fields have N as their first
    dimension, so ``exp[i]`` gives the explanation of image ``i`` alone.

    Attributes:
        heatmap: (N, *S) float32 in [0, 1], the input's spatial shape ((N, H, W) for
            images, (N, L) for signals, (N, D, H, W) for volumes and video):
            ``layer_map`` upsampled to it (linearly, bilinearly or trilinearly) and
            min-max normalised per image. A map that is zero everywhere stays zero.
        layer_map: (N, *s) the map at the layer's resolution, not normalised; per method
            (``method``): ``ReLU(sum_k weights[:, k] * A^k(x))`` for RSI-Grad-CAM,
            Grad-CAM and Grad-CAM++; ``ReLU(sum_k attributions_k * A^k(x))`` with the
            element-wise weights for LayerCAM; ``ReLU(sum_k attributions_k)``, the path
            sum of Grad-CAM maps against the baseline, for Integrated Grad-CAM; and for
            Integrated Gradients the (N, *S) pixel map ``ReLU(sum_c IG_c)`` (or
            ``|sum_c IG_c|`` with ``pixel_map="absolute"``).
        weights: (N, K) the channel weights ``w_k``; for LayerCAM, Integrated Grad-CAM and
            Integrated Gradients (N, C) the spatial mean of ``attributions``, which the map
            does not use.
        attributions: (N, K, *s) the per-element quantity whose spatial mean gives
            ``weights`` (spatial sum for Grad-CAM++): the Riemann–Stieltjes integrated
            gradient for RSI-Grad-CAM, the gradient at the input for Grad-CAM, its positive
            part for LayerCAM, ``alpha * ReLU(gradient)`` for Grad-CAM++, the per-channel
            parts of the path sum for Integrated Grad-CAM, and (N, C, *S) Integrated
            Gradients at the input pixels for ``method="ig"``.
        targets: (N,) long, the class explained for each image (-1 when the score came
            from a callable).
        scores: (N,) the explained score at the input, y(x).
        baseline_scores: (N,) the score at the baseline, y(x'); NaN for methods that use
            no baseline.
        completeness_error: (N,) ``|sum(attributions) - (y(x) - y(x'))|`` relative to
            ``max(|y(x) - y(x')|, eps)``; NaN for methods without a completeness property,
            and for RSI-Grad-CAM with ``grad_relu=True`` or ``guided=True``, whose clipped
            integrated gradients no longer sum to ``y(x) - y(x')``
            (:data:`rsigradcam.methods.rsi.NO_COMPLETENESS_REASON`), and at a layer the
            score can bypass (:data:`rsigradcam.methods.BYPASSED_LAYER_REASON`): see
            ``completeness_note``.
        layer: the name of the explained layer in the model.
        method: the method's registry name (``rsigradcam.METHODS``), e.g. ``"rsi"``.
        partition: (P,) float64, the path parameters t at which the model was evaluated;
            with ``steps="auto"`` and several images, (N, P): one row per image, shorter
            rows padded by repeating t = 1 (empty intervals).
        n_evaluations: model evaluations per image (path points); with several adaptive
            partitions, the largest.
        model_run: how the model ran: as given, or a private copy prepared for speed
            (:class:`ModelRun`; see ``speed=`` in :class:`~rsigradcam.methods.base.BaseCAM`).
        completeness_note: why ``completeness_error`` is NaN although the method has a
            completeness property, in one line: ``NO_COMPLETENESS_REASON`` (RSI-Grad-CAM
            with ``grad_relu`` or ``guided``) or ``BYPASSED_LAYER_REASON`` (the score can
            reach the input by a path that avoids the layer: a transformer's residual
            stream past a block's norm, a skip connection past a convolution inside a
            residual block), both in :mod:`rsigradcam.methods`. ``""`` where the error is
            computed, and for the methods without a completeness property (Grad-CAM,
            Grad-CAM++, LayerCAM, Integrated Grad-CAM), whose error is always NaN.

    Example:
        >>> exp = cam(images)                      # doctest: +SKIP
        >>> exp.heatmap.shape, exp[0].heatmap.shape  # doctest: +SKIP
        (torch.Size([2, 224, 224]), torch.Size([1, 224, 224]))
    """

    heatmap: Tensor
    layer_map: Tensor
    weights: Tensor
    attributions: Tensor
    targets: Tensor
    scores: Tensor
    baseline_scores: Tensor
    completeness_error: Tensor
    layer: str
    method: str
    partition: Tensor
    n_evaluations: int
    model_run: ModelRun = ModelRun()
    completeness_note: str = ""

    _PER_IMAGE: ClassVar[tuple[str, ...]] = (
        "heatmap",
        "layer_map",
        "weights",
        "attributions",
        "targets",
        "scores",
        "baseline_scores",
        "completeness_error",
    )

    def __len__(self) -> int:
        return int(self.heatmap.shape[0])

    def __getitem__(self, index: int | slice) -> Explanation:
        """Select images, keeping the batch dimension (``exp[0]`` has N = 1)."""
        if isinstance(index, int):
            n = len(self)
            if not -n <= index < n:
                raise IndexError(f"image index {index} is out of range for {n} images")
            index = slice(index, index + 1 if index != -1 else None)
        fields = {name: getattr(self, name)[index] for name in self._PER_IMAGE}
        if self.partition.dim() == 2:  # one adaptive partition per image
            fields["partition"] = self.partition[index]
        return dataclasses.replace(self, **fields)

    def to(self, device: torch.device | str) -> Explanation:
        """Return a copy with every tensor moved to ``device``."""
        fields = {name: getattr(self, name).to(device) for name in self._PER_IMAGE}
        return dataclasses.replace(self, partition=self.partition.to(device), **fields)

    def cpu(self) -> Explanation:
        """Return a copy with every tensor on the CPU."""
        return self.to("cpu")
