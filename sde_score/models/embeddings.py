"""Time embeddings for time-conditioned score networks."""
from __future__ import annotations

import math

import torch
from torch import nn


class GaussianFourierEmbedding(nn.Module):
    """Random Fourier features [sin(2 pi W t), cos(2 pi W t)] of a scalar t (Tancik et al. 2020;
    score_sde's GaussianFourierProjection); W ~ N(0, scale^2) is fixed (a buffer, not trained).
    t (B,) -> (B, dim)."""

    def __init__(self, dim: int = 64, scale: float = 16.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        self.register_buffer("W", torch.randn(dim // 2) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        proj = 2 * math.pi * t[:, None] * self.W[None, :]
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)
