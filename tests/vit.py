"""A tiny vision transformer for the tests: patch embedding, class and register tokens,
two pre-norm blocks, a class-token head. Random weights from a fixed seed."""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    def __init__(
        self, size: int = 32, patch: int = 8, dim: int = 16, classes: int = 5, registers: int = 0
    ) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        n_patches = (size // patch) ** 2
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.registers = nn.Parameter(torch.randn(1, registers, dim) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, 1 + registers + n_patches, dim) * 0.5)
        self.blocks = nn.Sequential(Block(dim, 2), Block(dim, 2))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        n = tokens.shape[0]
        prefix = torch.cat(
            [self.cls_token.expand(n, -1, -1), self.registers.expand(n, -1, -1)], dim=1
        )
        x = torch.cat([prefix, tokens], dim=1) + self.pos
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def make_vit(seed: int = 0, registers: int = 0, dtype: torch.dtype = torch.float32) -> TinyViT:
    torch.manual_seed(seed)
    return TinyViT(registers=registers).to(dtype).eval()
