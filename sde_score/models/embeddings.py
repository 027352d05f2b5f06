"""Time embeddings for time-conditioned score networks."""
from __future__ import annotations

import math
from typing import Optional

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


class LabelEmbedding(nn.Module):
    """Learned class embeddings plus one for the null label (index ``num_classes``), which stands for
    "no label": classifier-free guidance trains it by label dropout and uses it for the unconditional
    score.  labels (B,) with values in [0, num_classes] or None (all null) -> (B, dim)."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes + 1, dim)

    def forward(self, labels, batch: int, device) -> torch.Tensor:
        return self.embed(network_labels(self.num_classes, labels, batch, device))


def network_labels(num_classes: Optional[int], labels, batch: int, device) -> Optional[torch.Tensor]:
    """The labels a network with ``num_classes`` classes embeds: None (all null, index ``num_classes``) or
    (B,) indices in [0, num_classes]; None for an unconditional network, which refuses labels."""
    if num_classes is None:
        if labels is not None:
            raise ValueError("this network is unconditional (num_classes=None) and takes no labels")
        return None
    if labels is None:
        return torch.full((batch,), num_classes, dtype=torch.long, device=device)
    if labels.shape != (batch,) or labels.is_floating_point() or bool(((labels < 0) | (labels > num_classes)).any()):
        raise ValueError(f"labels must be class indices of shape ({batch},) in [0, {num_classes}] "
                         f"({num_classes} = no label), got {labels!r}")
    return labels.long()


def label_term(embedding: "LabelEmbedding | None", labels, x: torch.Tensor):
    """The label embedding to add to the time embedding, or 0 for an unconditional network (which
    refuses labels)."""
    if embedding is None:
        network_labels(None, labels, x.shape[0], x.device)
        return 0.0
    return embedding(labels, x.shape[0], x.device)


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """DDPM's sinusoidal (transformer positional) embedding of t (B,) -> (B, dim): [sin(t f_k), cos(t f_k)]
    with f_k = max_period^(-k / (dim/2 - 1)), k = 0 .. dim/2 - 1 (an odd dim gets a zero column)."""
    half = dim // 2
    if half < 2:
        raise ValueError(f"sinusoidal embedding dim must be >= 4, got {dim}")
    freqs = torch.exp(-math.log(max_period) / (half - 1) * torch.arange(half, dtype=torch.float32, device=t.device))
    arg = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)
    return nn.functional.pad(emb, (0, dim % 2))
