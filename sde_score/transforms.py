"""The map between data space and model space, and what it does to densities (bits/dim).

Convention (as the paper's code, which scales [0, 1] pixels to model space and adds an 8-bit
offset): data values ``x_data`` lie in [0, 1] after dividing by the number of levels; the model
sees ``x_model = scale * x_data + shift``.  Densities change by the log-Jacobian:
    log p_data(x_data) = log p_model(x_model) + D log|scale|        (nats)
and for discrete data with K levels, uniformly dequantized (x_data = (k + u) / K, u ~ U[0, 1)),
    log P(k) >= log p_data(x_data) - D log K                      (a variational lower bound)
so bits/dim = -(log p_model + D log|scale| - D log K) / (D ln 2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from .checks import check_int, check_number


@dataclass(frozen=True)
class AffineScaler:
    """x_model = scale * x_data + shift; ``num_levels`` K of the discrete data (None: continuous)."""

    scale: float = 1.0
    shift: float = 0.0
    num_levels: Optional[int] = None

    def __post_init__(self) -> None:
        check_number("scale", self.scale)
        if self.scale == 0:
            raise ValueError("scale must be non-zero")
        check_number("shift", self.shift)
        if self.num_levels is not None:
            check_int("num_levels", self.num_levels, minimum=2)

    def to_model(self, x_data: torch.Tensor) -> torch.Tensor:
        return self.scale * x_data + self.shift

    def to_data(self, x_model: torch.Tensor) -> torch.Tensor:
        return (x_model - self.shift) / self.scale

    def data_logp(self, logp_model: torch.Tensor, dim: int) -> torch.Tensor:
        """log p of the data (nats): the continuous density on [0, 1]^D, or, with ``num_levels``,
        the dequantization lower bound on the discrete log-probability."""
        out = logp_model + dim * math.log(abs(self.scale))
        if self.num_levels is not None:
            out = out - dim * math.log(self.num_levels)
        return out

    def bits_per_dim(self, logp_model: torch.Tensor, dim: int) -> torch.Tensor:
        """-log2 p_data / D for log p_model in nats (B,) -> (B,)."""
        return -self.data_logp(logp_model, dim) / (dim * math.log(2))


IDENTITY = AffineScaler()
