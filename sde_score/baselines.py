"""Closed-form density baselines for bits/dim comparisons: a full-covariance Gaussian and a
per-dimension independent Gaussian fitted by maximum likelihood to (dequantized) training data."""
from __future__ import annotations

import math

import torch

from .transforms import AffineScaler


def gaussian_logp(train: torch.Tensor, test: torch.Tensor, diagonal: bool = False) -> torch.Tensor:
    """log N(test; mean, cov) in nats (B,), with mean/cov the MLE on ``train`` (N, ...); ``diagonal``
    keeps only the variances (independent dimensions)."""
    xt = train.flatten(1).double()
    xs = test.flatten(1).double()
    mean = xt.mean(0)
    if diagonal:
        var = xt.var(0, unbiased=False)
        return (-0.5 * ((xs - mean) ** 2 / var + torch.log(2 * math.pi * var))).sum(1)
    cov = torch.cov(xt.T, correction=0)
    return torch.distributions.MultivariateNormal(mean, covariance_matrix=cov).log_prob(xs)


def gaussian_bpd(train: torch.Tensor, test: torch.Tensor, scaler: AffineScaler, diagonal: bool = False
                 ) -> torch.Tensor:
    """Bits/dim (B,) of ``test`` under the Gaussian fitted to ``train``; both in model space, with the
    same data-space convention (scaler Jacobian, dequantization offset) as ``log_likelihood``."""
    return scaler.bits_per_dim(gaussian_logp(train, test, diagonal), test[0].numel())
