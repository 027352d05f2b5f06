"""ScoreMLP: a time-conditioned residual MLP for vector data (toy 2-D sets, mixtures)."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..checks import check_int
from .registry import register_net
from .embeddings import GaussianFourierEmbedding, LabelEmbedding, label_term


class _ResBlock(nn.Module):
    def __init__(self, width: int, emb_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.emb = nn.Linear(emb_dim, width)
        self.fc2 = nn.Linear(width, width)
        nn.init.zeros_(self.fc2.weight)  # each block starts as the identity
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        z = torch.nn.functional.silu(self.fc1(self.norm(h)) + self.emb(emb))
        return h + self.fc2(torch.nn.functional.silu(z))


@register_net("score_mlp")
class ScoreMLP(nn.Module):
    """Residual SiLU MLP conditioned on t through Gaussian Fourier features.

    x (B, *data_shape), t (B,) -> (B, *data_shape), or (B,) with ``out_dim=1`` (an energy).  With
    ``num_classes`` it also takes labels (B,) (``LabelEmbedding``: None or ``num_classes`` = no label).
    """

    def __init__(self, data_shape: Sequence[int] = (2,), width: int = 128, depth: int = 3,
                 emb_dim: int = 64, fourier_scale: float = 1.0, out_dim: int | None = None,
                 num_classes: int | None = None) -> None:
        super().__init__()
        self.data_shape = tuple(int(d) for d in data_shape)
        self.init_args = dict(data_shape=list(self.data_shape), width=width, depth=depth, emb_dim=emb_dim,
                              fourier_scale=fourier_scale, out_dim=out_dim, num_classes=num_classes)
        self.num_classes = num_classes
        self.label_embed = LabelEmbedding(num_classes, emb_dim) if num_classes is not None else None
        d = math.prod(self.data_shape)
        width, depth = check_int("width", width), check_int("depth", depth)
        self.embed = nn.Sequential(GaussianFourierEmbedding(emb_dim, fourier_scale), nn.Linear(emb_dim, emb_dim),
                                   nn.SiLU())
        self.inp = nn.Linear(d, width)
        self.blocks = nn.ModuleList(_ResBlock(width, emb_dim) for _ in range(depth))
        self.out_dim = d if out_dim is None else check_int("out_dim", out_dim)
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, self.out_dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(t) + label_term(self.label_embed, labels, x)
        h = self.inp(x.flatten(1))
        for block in self.blocks:
            h = block(h, emb)
        out = self.out(h)
        return out.reshape(x.shape) if self.out_dim == math.prod(self.data_shape) else out.squeeze(-1)
