"""Few-step samplers for every SDE, in EDM's scaled coordinates.

Each SDE maps t to (alpha(t), sigma(t)); with x_hat = x / alpha and the noise level
sigma_e = sigma / alpha (``SDE.edm_sigma``), VE, VP and sub-VP share one probability-flow ODE
(Karras et al. 2022, eq. 4):  dx_hat / dsigma_e = (x_hat - D(x_hat; sigma_e)) / sigma_e,
where D is the denoiser E[x_0 | x_t] (Tweedie's formula, ``tweedie_denoise``).  So the samplers
below are written once and work for every registered SDE.

- ``heun_sample``: EDM Algorithm 1 (2nd-order Heun on the Karras rho-schedule), with optional
  stochastic churn (Algorithm 2).
- ``dpm_solver_sample``: exponential integrators in lambda = -log sigma_e (Lu et al. 2022):
  multistep (DPM-Solver++(2M), and a 3rd-order multistep) or single-step DPM-Solver-2.
- ``adaptive_sde_sample``: adaptive-step reverse SDE (Jolicoeur-Martineau et al. 2021).

The last step of every sampler jumps to sigma_e = 0 with D itself: the exact posterior mean
(the noise-free denoising step), not an extrapolation.
"""
from __future__ import annotations

import math
from typing import List, Optional

import torch

from ..checks import check_choice, check_int, check_number
from ..sdes import SDE, bcast
from .common import ScoreFn, check_state, gaussian_like, progress_bar, tweedie_denoise

SCHEDULES = ("karras", "log_snr", "time_uniform")


def sigma_schedule(sde: SDE, steps: int, eps: float, schedule: str = "karras", rho: float = 7.0) -> List[float]:
    """``steps`` decreasing noise levels sigma_e from edm_sigma(T) to edm_sigma(eps).

    karras: uniform in sigma^(1/rho) (EDM eq. 5); log_snr: uniform in log sigma_e (DPM-Solver's
    'logSNR'); time_uniform: uniform in t (the paper's grid)."""
    check_choice("schedule", schedule, SCHEDULES)
    steps = check_int("steps", steps, minimum=2)
    t = torch.tensor([sde.T, eps], dtype=torch.float64)
    s_max, s_min = (float(v) for v in sde.edm_sigma(t))
    i = torch.linspace(0, 1, steps, dtype=torch.float64)
    if schedule == "karras":
        rho = check_number("rho", rho, positive=True)
        s = (s_max ** (1 / rho) + i * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    elif schedule == "log_snr":
        s = torch.exp(math.log(s_max) + i * (math.log(s_min) - math.log(s_max)))
    else:
        s = sde.edm_sigma(sde.T + i * (eps - sde.T))
    return s.tolist()


class _Denoiser:
    """D(x_hat; sigma_e) for a score model on an SDE, in scaled coordinates."""

    def __init__(self, sde: SDE, score_fn: ScoreFn) -> None:
        self.sde, self.score_fn = sde, score_fn

    def t(self, sigma_e: float, like: torch.Tensor) -> torch.Tensor:
        t = self.sde.t_from_edm_sigma(torch.tensor(sigma_e, dtype=torch.float64))
        # round-off of the t <-> sigma_e round trip may step a hair outside [eps, T]
        return t.clamp(0, self.sde.T).to(like.dtype).to(like.device).expand(like.shape[0])

    def __call__(self, x_hat: torch.Tensor, sigma_e: float) -> torch.Tensor:
        t = self.t(sigma_e, x_hat)
        alpha, _ = self.sde.alpha_sigma(t)
        return tweedie_denoise(self.sde, self.score_fn, bcast(alpha, x_hat) * x_hat, t)


def _prior_scaled(sde: SDE, shape, generator, device) -> torch.Tensor:
    """x_T ~ prior, mapped to scaled coordinates x_hat = x_T / alpha(T)."""
    x = sde.prior_sampling(shape, generator, device=device)
    alpha_T, _ = sde.alpha_sigma(torch.full((1,), sde.T, device=x.device))
    return x / float(alpha_T)


def heun_sample(score_fn: ScoreFn, sde: SDE, shape, *, steps: int, eps: float,
                generator: Optional[torch.Generator] = None, device=None, progress: bool = True,
                schedule: str = "karras", rho: float = 7.0, churn: float = 0.0, s_tmin: float = 0.0,
                s_tmax: float = float("inf"), s_noise: float = 1.0) -> torch.Tensor:
    """EDM Algorithm 1 (``churn=0``) or 2: Heun steps between ``steps`` noise levels, then the exact
    denoising jump to sigma_e = 0.  NFE = 2 steps - 1.  ``churn`` adds noise back on levels in
    [s_tmin, s_tmax] (gamma = min(churn / steps, sqrt 2 - 1)); a churned level may not exceed the
    SDE's largest level sigma_e(T), so such steps are left unchurned."""
    churn = check_number("churn", churn, nonneg=True)
    sigmas = sigma_schedule(sde, steps, eps, schedule, rho)
    D = _Denoiser(sde, score_fn)
    x = _prior_scaled(sde, shape, generator, device)
    gamma = min(churn / steps, math.sqrt(2) - 1)
    for i in progress_bar(range(steps - 1), progress, "heun"):
        s_cur, s_next = sigmas[i], sigmas[i + 1]
        s_hat = s_cur * (1 + gamma) if s_tmin <= s_cur <= s_tmax else s_cur
        if gamma > 0 and s_hat > sigmas[0]:
            s_hat = s_cur
        if s_hat > s_cur:
            x = x + math.sqrt(s_hat ** 2 - s_cur ** 2) * s_noise * gaussian_like(x, generator)
        d = (x - D(x, s_hat)) / s_hat
        x_next = x + (s_next - s_hat) * d
        d_next = (x_next - D(x_next, s_next)) / s_next
        x = x + (s_next - s_hat) * 0.5 * (d + d_next)
        check_state(x, i, D.t(s_next, x)[0])
    return D(x, sigmas[-1])  # sigma_e -> 0: the posterior mean at the last level (alpha(0) = 1)


def _exp_integrator_step(x: torch.Tensor, h: float, derivs: List[torch.Tensor]) -> torch.Tensor:
    """Exact integral of dx/dlam = D(lam) - x over a step h with D(lam_i + tau) Taylor-expanded to
    D + tau D' + tau^2/2 D'':  x e^-h + c1 D + c2 D' + c3 D'', where c_k = int_0^h e^-(h-tau) tau^(k-1)
    / (k-1)! dtau: c1 = 1 - e^-h, c2 = h - c1, c3 = (h^2 - 2h + 2 c1) / 2."""
    c1 = -math.expm1(-h)
    out = math.exp(-h) * x + c1 * derivs[0]
    if len(derivs) > 1:
        out = out + (h - c1) * derivs[1]
    if len(derivs) > 2:
        out = out + 0.5 * (h * h - 2 * h + 2 * c1) * derivs[2]
    return out


def _taylor_from_history(lams: List[float], Ds: List[torch.Tensor], order: int) -> List[torch.Tensor]:
    """D, dD/dlam, d2D/dlam2 at the newest node from the last ``order`` values (Newton divided
    differences on the non-uniform lambda grid)."""
    k = min(order, len(Ds))
    if k == 1:
        return [Ds[-1]]
    d1 = (Ds[-1] - Ds[-2]) / (lams[-1] - lams[-2])
    if k == 2:
        return [Ds[-1], d1]
    d0 = (Ds[-2] - Ds[-3]) / (lams[-2] - lams[-3])
    second = 2 * (d1 - d0) / (lams[-1] - lams[-3])
    return [Ds[-1], d1 + 0.5 * (lams[-1] - lams[-2]) * second, second]


def dpm_solver_sample(score_fn: ScoreFn, sde: SDE, shape, *, steps: int, eps: float,
                      generator: Optional[torch.Generator] = None, device=None, progress: bool = True,
                      order: int = 2, multistep: bool = True, schedule: str = "log_snr", rho: float = 7.0
                      ) -> torch.Tensor:
    """DPM-Solver++ (data prediction) in lambda = -log sigma_e with ``steps`` noise levels.

    multistep: orders 1-3 reuse earlier denoiser values (2M = DPM-Solver++(2M)); NFE = steps.
    single-step (``multistep=False``, order 2): DPM-Solver-2 with a midpoint in lambda;
    NFE = 2 (steps - 1) + 1.  The final jump to sigma_e = 0 is the exact denoising step."""
    order = check_int("order", order, minimum=1)
    if order > 3 or (not multistep and order != 2):
        raise ValueError(f"order must be 1, 2 or 3 (multistep) or 2 (single-step), got {order}")
    sigmas = sigma_schedule(sde, steps, eps, schedule, rho)
    lams = [-math.log(s) for s in sigmas]
    D = _Denoiser(sde, score_fn)
    x = _prior_scaled(sde, shape, generator, device)
    hist_l: List[float] = []
    hist_D: List[torch.Tensor] = []
    for i in progress_bar(range(steps - 1), progress, "dpm_solver"):
        h = lams[i + 1] - lams[i]
        d_cur = D(x, sigmas[i])
        if multistep:
            hist_l, hist_D = (hist_l + [lams[i]])[-3:], (hist_D + [d_cur])[-3:]
            x = _exp_integrator_step(x, h, _taylor_from_history(hist_l, hist_D, order))
        else:
            s_mid = math.exp(-(lams[i] + 0.5 * h))
            u = _exp_integrator_step(x, 0.5 * h, [d_cur])
            x = _exp_integrator_step(x, h, [D(u, s_mid)])
        check_state(x, i, D.t(sigmas[i + 1], x)[0])
    return D(x, sigmas[-1])


def adaptive_sde_sample(score_fn: ScoreFn, sde: SDE, shape, *, steps: int, eps: float,
                        generator: Optional[torch.Generator] = None, device=None, progress: bool = True,
                        rtol: float = 1e-2, atol: Optional[float] = None, safety: float = 0.9,
                        exponent: float = 0.9, denoise: bool = True, max_iters: int = 10000) -> torch.Tensor:
    """Adaptive reverse-SDE solver of Jolicoeur-Martineau et al. 2021 ("Gotta Go Fast", Alg. 1).

    Each sample keeps its own step h (initial (T - eps) / steps): an Euler-Maruyama proposal x'
    and an improved-Euler one x'' share the Brownian increment; the scaled error
    E = ||(x' - x'') / max(atol, rtol max(|x'|, |x_prev|))||_2 / sqrt(D) accepts the step (x <- x'')
    when E <= 1, and h <- min(t - eps, safety h E^-exponent).  ``atol`` defaults to the paper's
    choice for data in [-1, 1] scaled by the prior std.  NFE = 2 per iteration."""
    rtol = check_number("rtol", rtol, positive=True)
    atol = check_number("atol", atol if atol is not None else 0.0078 * sde.prior_std, positive=True)
    x = sde.prior_sampling(shape, generator, device=device)
    B, dim = x.shape[0], x[0].numel()
    t = torch.full((B,), float(sde.T), device=x.device, dtype=x.dtype)
    h = torch.full_like(t, (sde.T - eps) / steps)
    x_prev = x
    rsde = sde.reverse(score_fn)
    bar = progress_bar(range(max_iters), progress, "sde_adaptive")
    for it in bar:
        active = t > eps + 1e-12
        if not bool(active.any()):
            break
        h = torch.where(active, torch.minimum(h, t - eps), torch.zeros_like(h))
        z = gaussian_like(x, generator) * bcast(h.sqrt(), x)
        drift, g = rsde.sde(x, t)
        x1 = x - drift * bcast(h, x) + bcast(g, x) * z
        t_next = (t - h).clamp(min=0)
        drift2, g2 = rsde.sde(x1, t_next)
        x2 = 0.5 * (x1 + x - drift2 * bcast(h, x) + bcast(g2, x) * z)
        scale = torch.maximum(torch.full_like(x1, atol), rtol * torch.maximum(x1.abs(), x_prev.abs()))
        err = ((x1 - x2) / scale).flatten(1).pow(2).sum(1).sqrt() / math.sqrt(dim)
        accept = active & (err <= 1)
        x_prev = torch.where(bcast(accept, x), x1, x_prev)
        x = torch.where(bcast(accept, x), x2, x)
        t = torch.where(accept, t_next, t)
        h = torch.where(active, safety * h * err.clamp(min=1e-10) ** (-exponent), h)
        check_state(x, it, t.min())
    else:
        raise FloatingPointError(f"sde_adaptive did not reach eps in {max_iters} iterations (t={float(t.max()):.3g})")
    if denoise:
        x = tweedie_denoise(sde, score_fn, x, torch.full((B,), eps, device=x.device, dtype=x.dtype))
    return x
