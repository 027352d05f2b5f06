"""DDPM's weight initialisation (Ho et al. 2020 code; kept by NCSN++): variance scaling, fan average, uniform."""
from __future__ import annotations

import math

import torch


def variance_scaling_(weight: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Fill ``weight`` in place from U(-a, a) with a^2 = 3 scale / ((fan_in + fan_out) / 2), the fans counting
    the receptive field (dims 2 and up); ``scale`` 0 means 1e-10 (a layer that starts as nearly zero but
    still trains).  Returns ``weight``."""
    scale = 1e-10 if scale == 0 else float(scale)
    if weight.dim() < 2:
        raise ValueError(f"variance scaling needs a weight with >= 2 dims, got shape {tuple(weight.shape)}")
    receptive = weight[0][0].numel()
    fan_avg = (weight.shape[0] + weight.shape[1]) * receptive / 2
    bound = math.sqrt(3 * scale / fan_avg)
    with torch.no_grad():
        return weight.uniform_(-bound, bound)
