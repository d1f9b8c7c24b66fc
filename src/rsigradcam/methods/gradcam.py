"""Grad-CAM: channel weights from the spatial mean of the gradient at the input.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from rsigradcam.core.reshape import ReshapeSpec
from rsigradcam.core.targets import Output
from rsigradcam.methods.base import BaseCAM, LayerSpec

__all__ = ["GradCAM", "GradientAtInput"]


class GradientAtInput:
    """Keep each image's gradient at t = 1 (the only point Grad-CAM evaluates)."""

    def __init__(self, n_images: int) -> None:
        self.n_images = n_images
        self._grad: Tensor | None = None

    def update(self, image_index: Tensor, activations: Tensor, gradients: Tensor) -> None:
        """Store the gradient of every row (each row is one image's input)."""
        if self._grad is None:
            self._grad = gradients.new_zeros((self.n_images, *gradients.shape[1:]))
        self._grad[image_index] = gradients

    def result(self) -> Tensor:
        """The (N, K, h, w) gradients dy/dA at the inputs."""
        if self._grad is None:
            raise RuntimeError("no gradients were captured.")
        return self._grad


class GradCAM(BaseCAM):
    """Grad-CAM, sharing the layer capture and CAM reduction of :class:`RSIGradCAM`.

    ``exp.attributions`` holds the gradient dy/dA at the input (whose spatial mean gives
    the weights); ``baseline_scores`` and ``completeness_error`` are NaN.

    Args:
        model: Any classifier ``images (N, C, H, W) -> logits (N, classes)``.
        layer: Module name, the module itself, ``"auto"``, or a list of these.
        output: ``"logits"`` (Grad-CAM's default) or ``"softmax"``.
        batch_size: Images per forward/backward chunk; ``None`` chooses it from the memory
            budget.
        dtype: Floating dtype of the computation (the model is copied and cast).
        memory_budget_mb: Memory budget of a chunk when ``batch_size=None``.
        reshape_transform: For (N, tokens, D) layers; see :mod:`rsigradcam.core.reshape`.

    Example:
        >>> from rsigradcam import GradCAM
        >>> exp = GradCAM(model, "head")(images, targets=285)  # doctest: +SKIP
    """

    method_name: ClassVar[str] = "gradcam"
    label: ClassVar[str] = "Grad-CAM"
    uses_baseline: ClassVar[bool] = False
    has_completeness: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = "auto",
        output: Output = "logits",
        *,
        batch_size: int | None = None,
        dtype: torch.dtype | None = None,
        memory_budget_mb: float | None = None,
        reshape_transform: ReshapeSpec = None,
    ) -> None:
        super().__init__(
            model,
            layer,
            output=output,
            baseline="zeros",
            normalize=None,
            batch_size=batch_size,
            dtype=dtype,
            memory_budget_mb=memory_budget_mb,
            reshape_transform=reshape_transform,
        )

    def _partition(self) -> Tensor:
        return torch.ones(1, dtype=torch.float64)

    def _accumulator(self, n_images: int, partition: Tensor) -> GradientAtInput:
        return GradientAtInput(n_images)
