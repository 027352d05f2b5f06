"""Sample-quality measures against an exact mixture target.

All use the mixture's posterior responsibilities r_k(x) = p(k | x): for x ~ p,
E[r_k(x)] = w_k, E[r_k(x) x] / w_k = mu_k and E[r_k(x)(x - mu_k)(x - mu_k)^T] / w_k = Sigma_k
exactly, so these estimators are unbiased for true samples even when modes overlap.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch

from .targets import GaussianMixture


def mode_weights(target: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    """Estimated component weights (K,) of samples x: the mean responsibility."""
    return target.responsibilities(x).mean(0)


def mode_weight_tv(target: GaussianMixture, x: torch.Tensor) -> float:
    """Total variation 1/2 sum_k |w_hat_k - w_k| between estimated and true mode weights."""
    return 0.5 * float((mode_weights(target, x) - target.weights).abs().sum())


def tv_floor(target: GaussianMixture, n: int) -> float:
    """Expected TV of n exact samples, 1/2 sum_k sqrt(2 w_k(1-w_k)/(pi n)) (mean absolute error of a
    binomial proportion; an upper bound with soft responsibilities): the statistical floor below
    which no sampler can be told apart at this sample size."""
    w = target.weights
    return float(0.5 * torch.sqrt(2 * w * (1 - w) / (torch.pi * n)).sum())


def mode_moments(target: GaussianMixture, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Responsibility-weighted per-mode means (K, D) and covariances (K, D, D) of samples x,
    centred on the true means (so they estimate mu_k and Sigma_k without bias for true samples)."""
    r = target.responsibilities(x)
    xf = x.reshape(x.shape[0], -1).to(torch.float64)
    wsum = r.sum(0)
    means = (r.T @ xf) / wsum[:, None]
    d = xf[:, None, :] - target.means[None]
    covs = torch.einsum("bk,bkd,bke->kde", r, d, d) / wsum[:, None, None]
    return means, covs


def mean_se(values: torch.Tensor) -> Tuple[float, float]:
    """Mean of a 1-D tensor and its standard error std / sqrt(n)."""
    v = values.detach().double().flatten()
    if v.numel() < 2:
        raise ValueError(f"a standard error needs at least 2 values, got {v.numel()}")
    return float(v.mean()), float(v.std()) / math.sqrt(v.numel())


def mean_log_prob(target: GaussianMixture, x: torch.Tensor) -> Tuple[float, float]:
    """Mean exact log p of samples x (nats) and its standard error."""
    return mean_se(target.log_prob(x.double()))


def log_density_gap(target: GaussianMixture, x: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean exact log p of samples x minus that of reference samples (nats); 0 for a perfect sampler,
    negative when samples sit in lower-density regions (e.g. blurred modes)."""
    return mean_log_prob(target, x)[0] - mean_log_prob(target, reference)[0]
