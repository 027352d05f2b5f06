"""Diffusion posterior sampling (DPS; Chung et al. 2023, Algorithm 1): an approximate baseline for
imputation and linear inverse problems.

Each reverse Euler-Maruyama step is followed by a step down the gradient of the residual norm
||y - A x0_hat(x_t)|| (x0_hat: Tweedie's estimate at x_t, differentiated through the score model),
scaled by ``scale`` (the paper's step size zeta' with zeta_t = zeta' / ||y - A x0_hat||, so the
step is zeta' times the gradient of the norm itself).  Nothing in it weights or corrects the samples:
it replaces the likelihood p(y | x_t) by one of N(y; A x0_hat, r^2) and ignores how wide p(x_0 | x_t)
is, so it is biased wherever that width matters, e.g. an observation between two modes
(experiments/bench_impute_hard.py --dps shows how far; the SMC of ``impute`` is the exact method).
Each step costs one score evaluation and one backward pass through it.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from ..checks import ScoreFn, check_number
from ..sdes import SDE, bcast
from .denoiser import final_denoise
from .schedules import time_grid
from .state import check_state, gaussian_like, progress_bar


def residual_gradient(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
                      weights: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(score at x, gradient in x of ||weights * (y - x0_hat(x))|| per sample), both like x (B, ...).

    ``weights`` (like x, >= 0) select the observed entries and scale them: in SVD coordinates of an operator
    A = U S V^T the weights S make this the gradient of ||y - A x0_hat|| in the original space."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        score = score_fn(x, t)
        alpha, sigma = sde.alpha_sigma(t)
        x0 = (x + bcast(sigma ** 2, x) * score) / bcast(alpha, x)  # Tweedie, as tweedie_denoise
        norm = ((y - x0) * weights).flatten(1).norm(dim=1)
        grad, = torch.autograd.grad(norm.sum(), x)
    return score.detach(), grad


def dps_impute(score_fn: ScoreFn, sde: SDE, x_known: torch.Tensor, mask: torch.Tensor, *, steps: int, eps: float,
               obs_std: Optional[torch.Tensor] = None, scale: float = 1.0, residual_weights=None,
               generator: Optional[torch.Generator] = None, progress: bool = True) -> torch.Tensor:
    """DPS imputation (B, ...): noise-free known entries equal to x_known, every other entry sampled.

    ``scale``: the step size zeta' (> 0; the paper uses 0.3 to 1 on images).  ``residual_weights`` (like
    x_known or None = 1): per-entry weights of the residual (``solve_inverse`` passes the singular values).
    ``obs_std``: DPS treats noisy and noise-free entries alike (only noise-free ones are returned as given)."""
    scale = check_number("scale", scale, positive=True)
    B, device = x_known.shape[0], x_known.device
    y = torch.where(mask, x_known, torch.zeros_like(x_known))
    weights = mask.to(x_known.dtype)
    if residual_weights is not None:
        weights = weights * torch.as_tensor(residual_weights, dtype=x_known.dtype, device=device)
    ts = time_grid(sde, steps, eps, device)
    x = sde.prior_sampling(x_known.shape, generator, device=device, dtype=x_known.dtype)
    for i in progress_bar(range(steps - 1), progress, "impute[dps]"):
        t, dt = ts[i].expand(B), float(ts[i] - ts[i + 1])
        score, grad = residual_gradient(score_fn, sde, x, t, y, weights)
        f, g = sde.sde(x, t)  # not ReverseSDE.sde: that would evaluate the score a second time
        drift = f - bcast(g ** 2, x) * score  # the reverse SDE (eq. 6), forward-time convention
        x = x - drift * dt + bcast(g * math.sqrt(dt), x) * gaussian_like(x, generator) - scale * grad
        check_state(x, i, ts[i])
    with torch.no_grad():  # the last step needs no gradient (the run has them on for the guidance)
        x = final_denoise(sde, score_fn, x, eps)
    noise_free = mask if obs_std is None else mask & (obs_std == 0)
    return torch.where(noise_free, x_known, x)
