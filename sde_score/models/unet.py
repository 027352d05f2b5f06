"""A small time-conditioned UNet for image-shaped data such as 8x8 digits."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .registry import register_net
from .embeddings import GaussianFourierEmbedding, LabelEmbedding, label_term


def _groups(ch: int) -> int:
    return min(8, ch // 4) if ch >= 8 else 1


class _ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, time embedding added, twice, plus a skip (DDPM/NCSN++ style)."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(_groups(cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.n2, self.c2 = nn.GroupNorm(_groups(cout), cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)

    def forward(self, x, emb):
        h = self.c1(F.silu(self.n1(x))) + self.emb(emb)[:, :, None, None]
        h = self.c2(self.drop(F.silu(self.n2(h))))
        return self.skip(x) + h


class _Attention(nn.Module):
    """Single-head self-attention over pixels."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return x + self.proj(a.transpose(1, 2).reshape(b, c, h, w))


@register_net("unet")
class UNet(nn.Module):
    """Two resolutions (H, H/2), ``channels`` per level, optional attention at the lowest.

    x (B, C, H, W) with H, W even, t (B,) -> (B, C, H, W) (or (B,) with ``out_dim=1``: an energy).  With
    ``num_classes`` it also takes labels (B,) (``LabelEmbedding``: None or ``num_classes`` = no label).
    """

    def __init__(self, data_shape: Sequence[int] = (1, 8, 8), channels: Sequence[int] = (32, 64),
                 emb_dim: int = 128, attention: bool = True, dropout: float = 0.0,
                 fourier_scale: float = 1.0, out_dim: int | None = None, num_classes: int | None = None) -> None:
        super().__init__()
        self.data_shape = tuple(int(d) for d in data_shape)
        self.init_args = dict(data_shape=list(self.data_shape), channels=list(channels), emb_dim=emb_dim,
                              attention=attention, dropout=dropout, fourier_scale=fourier_scale, out_dim=out_dim,
                              num_classes=num_classes)
        self.num_classes = num_classes
        self.label_embed = LabelEmbedding(num_classes, emb_dim) if num_classes is not None else None
        if len(self.data_shape) != 3 or self.data_shape[1] % 2 or self.data_shape[2] % 2:
            raise ValueError(f"UNet needs data_shape (C, H, W) with even H and W, got {self.data_shape}")
        c_in = self.data_shape[0]
        c1, c2 = channels
        self.embed = nn.Sequential(GaussianFourierEmbedding(emb_dim, fourier_scale), nn.Linear(emb_dim, emb_dim),
                                   nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.inp = nn.Conv2d(c_in, c1, 3, padding=1)
        self.down1 = _ResBlock(c1, c1, emb_dim, dropout)
        self.pool = nn.Conv2d(c1, c1, 3, stride=2, padding=1)
        self.down2 = _ResBlock(c1, c2, emb_dim, dropout)
        self.mid1 = _ResBlock(c2, c2, emb_dim, dropout)
        self.attn = _Attention(c2) if attention else nn.Identity()
        self.mid2 = _ResBlock(c2, c2, emb_dim, dropout)
        self.up2 = _ResBlock(c2 + c2, c2, emb_dim, dropout)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.up1 = _ResBlock(c2 + c1, c1, emb_dim, dropout)
        self.out_norm = nn.GroupNorm(_groups(c1), c1)
        self.energy = out_dim == 1
        self.out = nn.Conv2d(c1, c_in, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(t) + label_term(self.label_embed, labels, x)
        h1 = self.down1(self.inp(x), emb)
        h2 = self.down2(self.pool(h1), emb)
        m = self.mid2(self.attn(self.mid1(h2, emb)), emb)
        u = self.up2(torch.cat([m, h2], 1), emb)
        u = self.up1(torch.cat([self.upsample(u), h1], 1), emb)
        out = self.out(F.silu(self.out_norm(u)))
        # energy: E(x) = 1/2 <x, out> sums the per-pixel map to a scalar (score_sde's energy trick)
        return 0.5 * (x * out).flatten(1).sum(1) if self.energy else out
