"""Score-matching objectives.  Each returns a per-sample loss (B,); the caller averages.

- ``dsm``: continuous-time denoising score matching (Song et al. 2021, eq. 7) with
  lambda(t) = sigma(t)^2, or lambda = g(t)^2 (``likelihood_weighting``, Song et al. 2021b, "Maximum
  Likelihood Training of Score-Based Diffusion Models", Thm. 1), optionally with t importance-sampled
  from q(t) ~ g^2/sigma^2 (their Sec. 5, variance reduction).
- ``smld`` / ``ddpm``: the discrete NCSN (Song & Ermon 2019, eq. 5) and DDPM (Ho et al. 2020, eq. 14)
  losses over the SDE's N noise levels (Song 2021, App. B).
- ``ssm``: sliced score matching with variance reduction (Song et al. 2019, eq. 8).
- ``ism``: Hyvarinen's implicit score matching, tr(grad s) + ||s||^2 / 2 with the exact trace.
Random draws use ``generator`` (on x's device) or the global RNG.
``ssm`` and ``ism`` are the noise-free objectives: data used as is (``noise_t=None``) or perturbed
at one fixed small time ``noise_t``; the network is conditioned on that time (or ``eps``).
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional

import torch

from .checks import check_number
from .registry import Registry
from .sdes import SDE, VESDE, VPSDE, bcast

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES: Registry[Callable] = Registry("loss")
register_loss = LOSSES.register


def _reduce(v: torch.Tensor, reduce_mean: bool) -> torch.Tensor:
    v = v.flatten(1)
    return v.mean(1) if reduce_mean else v.sum(1)


def _randn(x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _rand(n: int, x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=x.device, dtype=x.dtype)


class ImportanceTimeSampler:
    """Draws t in [eps, T] with density q(t) = (g(t)^2 / sigma(t)^2) / Z by inverting its CDF,
    tabulated once on a log-spaced grid (the density behaves like 1/t near 0 for VP)."""

    def __init__(self, sde: SDE, eps: float, points: int = 4096) -> None:
        grid = torch.exp(torch.linspace(math.log(eps), math.log(sde.T), points, dtype=torch.float64))
        _, g = sde.sde(torch.zeros(points, 1, dtype=torch.float64), grid)
        _, sigma = sde.alpha_sigma(grid)
        dens = g ** 2 / sigma ** 2
        cdf = torch.cat([torch.zeros(1, dtype=torch.float64),
                         torch.cumsum(0.5 * (dens[1:] + dens[:-1]) * grid.diff(), 0)])
        self.Z = float(cdf[-1])
        self.grid, self.cdf = grid, cdf / cdf[-1]

    def sample(self, n: int, like: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=like.device)
        cdf, grid = self.cdf.to(u.device), self.grid.to(u.device)
        i = torch.searchsorted(cdf, u).clamp(1, len(cdf) - 1)
        w = (u - cdf[i - 1]) / (cdf[i] - cdf[i - 1])
        return (grid[i - 1] + w * (grid[i] - grid[i - 1])).to(device=like.device, dtype=like.dtype)


@register_loss("dsm")
def dsm_loss(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, eps: float = 1e-5,
             likelihood_weighting: bool = False, importance_sampling: bool = False,
             reduce_mean: bool = False, generator: Optional[torch.Generator] = None,
             t_sampler: Optional[ImportanceTimeSampler] = None) -> torch.Tensor:
    """Continuous DSM: lambda(t) || s(x_t, t) + z / sigma(t) ||^2 with x_t = alpha x + sigma z."""
    B = x.shape[0]
    if importance_sampling:
        if not likelihood_weighting:
            raise ValueError("importance_sampling is defined for likelihood_weighting=True only")
        t_sampler = t_sampler or ImportanceTimeSampler(sde, eps)
        t = t_sampler.sample(B, x, generator)
    else:
        t = eps + (sde.T - eps) * _rand(B, x, generator)
    z = _randn(x, generator)
    alpha, sigma = sde.alpha_sigma(t)
    score = score_fn(bcast(alpha, x) * x + bcast(sigma, x) * z, t)
    if importance_sampling:
        # lambda / q = g^2 / (g^2 / sigma^2 / Z) = Z sigma^2; times 1/(T - eps) to match E_{t~U}
        r = _reduce((score * bcast(sigma, x) + z) ** 2, reduce_mean)
        return r * t_sampler.Z / (sde.T - eps)
    if likelihood_weighting:
        _, g = sde.sde(x, t)
        return _reduce((score + z / bcast(sigma, x)) ** 2, reduce_mean) * g ** 2
    return _reduce((score * bcast(sigma, x) + z) ** 2, reduce_mean)


def _discrete_level(sde: SDE, x: torch.Tensor, generator) -> torch.Tensor:
    return torch.randint(0, sde.N, (x.shape[0],), generator=generator, device=x.device)


@register_loss("smld")
def smld_loss(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, reduce_mean: bool = False,
              generator: Optional[torch.Generator] = None, **_) -> torch.Tensor:
    """NCSN loss over the N geometric levels: sigma_i^2 || s(x + sigma_i z, t_i) + z / sigma_i ||^2."""
    if not isinstance(sde, VESDE):
        raise ValueError(f"loss 'smld' needs the 've' SDE (NCSN noise levels), got {sde.name!r}")
    i = _discrete_level(sde, x, generator)
    sigma = sde.discrete_sigma(i).to(x)
    t = i.to(x.dtype) / max(sde.N - 1, 1) * sde.T
    z = _randn(x, generator)
    score = score_fn(x + bcast(sigma, x) * z, t)
    return _reduce((score * bcast(sigma, x) + z) ** 2, reduce_mean)


@register_loss("ddpm")
def ddpm_loss(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, reduce_mean: bool = True,
              generator: Optional[torch.Generator] = None, **_) -> torch.Tensor:
    """DDPM's epsilon loss || sqrt(1 - abar_i) s(x_i, t_i) + z ||^2 with abar_i = prod_j (1 - beta_j)."""
    if not isinstance(sde, VPSDE):
        raise ValueError(f"loss 'ddpm' needs the 'vp' SDE (DDPM betas), got {sde.name!r}")
    i = _discrete_level(sde, x, generator)
    betas = sde.discrete_beta(torch.arange(sde.N)).to(x)
    abar = torch.cumprod(1 - betas, 0)[i]
    # level i has integrated beta ~ int_0^{(i+1)/N} beta(s) ds, so it sits at t = (i + 1) T / N
    # (this keeps t > 0, where the continuous sigma(t) of scale_by_sigma is non-zero)
    t = (i.to(x.dtype) + 1) / sde.N * sde.T
    z = _randn(x, generator)
    std = torch.sqrt(1 - abar)
    score = score_fn(bcast(torch.sqrt(abar), x) * x + bcast(std, x) * z, t)
    return _reduce((score * bcast(std, x) + z) ** 2, reduce_mean)


def _noise_free_input(sde: SDE, x: torch.Tensor, noise_t: Optional[float], eps: float, generator):
    t_val = eps if noise_t is None else check_number("noise_t", noise_t, positive=True)
    t = torch.full((x.shape[0],), t_val, device=x.device, dtype=x.dtype)
    if noise_t is not None:
        mean, std = sde.marginal_prob(x, t)
        x = mean + bcast(std, x) * _randn(x, generator)
    return x.detach().requires_grad_(True), t


@register_loss("ssm")
def ssm_loss(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, eps: float = 1e-5, noise_t: Optional[float] = None,
             n_slices: int = 1, reduce_mean: bool = False, generator: Optional[torch.Generator] = None,
             **_) -> torch.Tensor:
    """Sliced score matching (variance-reduced): v^T (d s / dx) v + ||s||^2 / 2, v ~ N(0, I)."""
    xin, t = _noise_free_input(sde, x, noise_t, eps, generator)
    s = score_fn(xin, t)
    total = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    for _ in range(n_slices):
        v = _randn(x, generator)
        gv = torch.autograd.grad((s * v).sum(), xin, create_graph=True)[0]
        total = total + (gv * v).flatten(1).sum(1)
    out = total / n_slices + 0.5 * s.flatten(1).pow(2).sum(1)
    return out / x[0].numel() if reduce_mean else out


@register_loss("ism")
def ism_loss(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, eps: float = 1e-5, noise_t: Optional[float] = None,
             reduce_mean: bool = False, generator: Optional[torch.Generator] = None, **_) -> torch.Tensor:
    """Implicit score matching (Hyvarinen 2005): tr(d s / dx) + ||s||^2 / 2, exact trace (D passes)."""
    xin, t = _noise_free_input(sde, x, noise_t, eps, generator)
    s = score_fn(xin, t)
    sf = s.flatten(1)
    trace = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    for i in range(sf.shape[1]):
        trace = trace + torch.autograd.grad(sf[:, i].sum(), xin, create_graph=True)[0].flatten(1)[:, i]
    out = trace + 0.5 * sf.pow(2).sum(1)
    return out / x[0].numel() if reduce_mean else out


def loss_options(name: str) -> Dict[str, object]:
    """Keyword options the named loss accepts (for config validation)."""
    import inspect

    fn = LOSSES.get(name)
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.kind == p.KEYWORD_ONLY}
