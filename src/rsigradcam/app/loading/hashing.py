"""A fingerprint of a model's weights, recorded with the results of a run.

A resumed or merged run compares it to know that it explains the same model.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

__all__ = ["model_sha256"]


def model_sha256(model: nn.Module) -> str:
    """A SHA-256 of every parameter and buffer of ``model``: names, dtypes, shapes, bytes."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
