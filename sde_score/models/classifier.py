"""NoiseClassifier: a time-conditioned image classifier p_t(y | x_t) for classifier guidance."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..checks import check_int
from .embeddings import GaussianFourierEmbedding
from .registry import register_net
from .unet import _groups, _ResBlock


@register_net("noise_classifier")
class NoiseClassifier(nn.Module):
    """The UNet's encoder (two resolutions, time embedding in every block), mean-pooled into logits
    (Song et al. 2021, App. I.4 use the encoder half of their score network the same way).

    x (B, C, H, W) with H, W even, t (B,) -> logits (B, num_classes).  For vector data use
    ``ScoreMLP(out_dim=num_classes)``."""

    def __init__(self, data_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10, channels: Sequence[int] = (32, 64),
                 emb_dim: int = 128, dropout: float = 0.0, fourier_scale: float = 16.0) -> None:
        super().__init__()
        self.data_shape = tuple(int(d) for d in data_shape)
        self.init_args = dict(data_shape=list(self.data_shape), num_classes=num_classes, channels=list(channels),
                              emb_dim=emb_dim, dropout=dropout, fourier_scale=fourier_scale)
        if len(self.data_shape) != 3 or self.data_shape[1] % 2 or self.data_shape[2] % 2:
            raise ValueError(f"NoiseClassifier needs data_shape (C, H, W) with even H and W, got {self.data_shape}")
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        c1, c2 = channels
        self.embed = nn.Sequential(GaussianFourierEmbedding(emb_dim, fourier_scale), nn.Linear(emb_dim, emb_dim),
                                   nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.inp = nn.Conv2d(self.data_shape[0], c1, 3, padding=1)
        self.block1 = _ResBlock(c1, c1, emb_dim, dropout)
        self.pool = nn.Conv2d(c1, c1, 3, stride=2, padding=1)
        self.block2 = _ResBlock(c1, c2, emb_dim, dropout)
        self.block3 = _ResBlock(c2, c2, emb_dim, dropout)
        self.norm = nn.GroupNorm(_groups(c2), c2)
        self.out = nn.Linear(c2, self.num_classes)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.embed(t)
        h = self.block1(self.inp(x), emb)
        h = self.block3(self.block2(self.pool(h), emb), emb)
        return self.out(F.silu(self.norm(h)).mean(dim=(2, 3)))
