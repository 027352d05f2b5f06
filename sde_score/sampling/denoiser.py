"""The denoiser D(x_hat; sigma_e) = E[x_0 | x_t] of a score model, in EDM's scaled coordinates.

Each SDE maps t to (alpha(t), sigma(t)); with x_hat = x / alpha and the noise level
sigma_e = sigma / alpha (``SDE.edm_sigma``), VE, VP and sub-VP share one probability-flow ODE
(Karras et al. 2022, eq. 4):  dx_hat / dsigma_e = (x_hat - D(x_hat; sigma_e)) / sigma_e.
D follows from the score by Tweedie's formula, so the few-step samplers are written once for every
registered SDE.  ``final_denoise`` is the noise-free last step every sampler ends with.
"""
from __future__ import annotations

import torch

from ..checks import ScoreFn
from ..sdes import SDE, bcast


def tweedie_denoise(sde: SDE, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Posterior mean E[x_0 | x_t] = (x_t + sigma(t)^2 score(x_t, t)) / alpha(t) (Tweedie's formula)."""
    return tweedie_from_score(sde, x, score_fn(x, t), t)


def tweedie_from_score(sde: SDE, x: torch.Tensor, score: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """E[x_0 | x_t] from the score at x (like x), t (B,): Tweedie's formula."""
    alpha, sigma = sde.alpha_sigma(t)
    return (x + bcast(sigma ** 2, x) * score) / bcast(alpha, x)


def posterior_covariance_along(sde: SDE, score_fn: ScoreFn, x: torch.Tensor, score: torch.Tensor, w: torch.Tensor,
                               t: torch.Tensor) -> torch.Tensor:
    """Cov[x_0 | x_t] w (like x) for directions w (like x), given the score at x: Tweedie's second-order identity
    Cov[x_0 | x_t] = sigma^2 / alpha^2 (I + sigma^2 grad^2 log p_t), with the score's derivative along w by a
    one-sided finite difference (one score evaluation; differenced in the score so that x / alpha's round-off
    does not enter).  Its step, 3 sqrt(machine eps) sigma(t) in x_t, balances truncation (the score bends on the
    scale sigma) against round-off: on gmm16d between two modes the relative error is 4e-3 in float32 and 8e-7
    in float64 (tests/test_denoiser.py).  t (B,)."""
    alpha, sigma = sde.alpha_sigma(t)
    norm = w.flatten(1).norm(dim=1).clamp(min=torch.finfo(w.dtype).tiny)
    h = 3 * torch.finfo(x.dtype).eps ** 0.5 * sigma
    hw = bcast(h / norm, w) * w
    d_score = (score_fn(x + hw, t) - score) * bcast(norm / h, w)
    return bcast(sigma ** 2 / alpha ** 2, w) * (w + bcast(sigma ** 2, w) * d_score)


def final_denoise(sde: SDE, score_fn: ScoreFn, x: torch.Tensor, eps: float) -> torch.Tensor:
    """The exact noise-free final step for samples x (B, ...) that stop at t = eps: E[x_0 | x_eps]."""
    return tweedie_denoise(sde, score_fn, x, torch.full((x.shape[0],), eps, device=x.device, dtype=x.dtype))


class Denoiser:
    """D(x_hat; sigma_e) (like x_hat) for a score model on an SDE, in scaled coordinates x_hat = x / alpha."""

    def __init__(self, sde: SDE, score_fn: ScoreFn) -> None:
        self.sde, self.score_fn = sde, score_fn

    def t(self, sigma_e: float, like: torch.Tensor) -> torch.Tensor:
        """The time (B,) at which the SDE's noise level is ``sigma_e``, in like's dtype and device."""
        t = self.sde.t_from_edm_sigma(torch.tensor(sigma_e, dtype=torch.float64))
        # round-off of the t <-> sigma_e round trip may step a hair outside [eps, T]
        return t.clamp(0, self.sde.T).to(like.dtype).to(like.device).expand(like.shape[0])

    def __call__(self, x_hat: torch.Tensor, sigma_e: float) -> torch.Tensor:
        t = self.t(sigma_e, x_hat)
        alpha, _ = self.sde.alpha_sigma(t)
        return tweedie_denoise(self.sde, self.score_fn, bcast(alpha, x_hat) * x_hat, t)

    def to_model_space(self, x_hat: torch.Tensor, sigma_e: float) -> torch.Tensor:
        """x = alpha(t) x_hat at the level sigma_e."""
        alpha, _ = self.sde.alpha_sigma(self.t(sigma_e, x_hat))
        return bcast(alpha, x_hat) * x_hat

    def to_scaled(self, x: torch.Tensor) -> torch.Tensor:
        """A prior draw x_T in scaled coordinates x_hat = x_T / alpha(T)."""
        # alpha(T) in float64: a float64 state must not carry its float32 round-off (1e-7 relative)
        alpha_T, _ = self.sde.alpha_sigma(torch.full((1,), self.sde.T, dtype=torch.float64))
        return x / float(alpha_T)
