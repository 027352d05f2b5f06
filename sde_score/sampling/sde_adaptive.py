"""Adaptive-step reverse SDE solver (Jolicoeur-Martineau et al. 2021, "Gotta Go Fast", Alg. 1)."""
from __future__ import annotations

import math
from typing import Optional

import torch

from ..checks import ScoreFn, check_int, check_number
from ..sdes import SDE, bcast
from .brownian import BrownianPath
from .denoiser import final_denoise
from .methods import register_method
from .state import Callback, SamplerStep, check_state, progress_bar


@register_method("sde_adaptive")
def adaptive_sde_sample(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, eps: float,
                        generator: Optional[torch.Generator] = None, progress: bool = True,
                        callback: Optional[Callback] = None, initial_step: Optional[float] = None,
                        rtol: float = 1e-2, atol: float = 0.0078, safety: float = 0.9,
                        exponent: float = 0.9, denoise: bool = True, max_iters: int = 10000) -> torch.Tensor:
    """Adaptive reverse-SDE solver of Jolicoeur-Martineau et al. 2021 ("Gotta Go Fast", Alg. 1).

    Each sample keeps its own step h (``initial_step``, default (T - eps) / 100): an Euler-Maruyama proposal x'
    and an improved-Euler one x'' share the Brownian increment (drawn from one Brownian path per
    sample, so a retried step reuses the rejected step's noise; see ``brownian.BrownianPath``); the scaled error
    E = ||(x' - x'') / max(atol, rtol max(|x'|, |x_prev|))||_2 / sqrt(D) accepts the step (x <- x'')
    when E <= 1, and h <- min(t - eps, safety h E^-exponent).  ``atol`` defaults to the paper's
    0.0078 (one 8-bit level of data in [-1, 1]): it is a data-space resolution, so set it to your
    data's (scaling it by the prior std instead leaves samples under-dispersed; README has the
    measurements).  NFE = 2 per iteration."""
    rtol = check_number("rtol", rtol, positive=True)
    atol = check_number("atol", atol, positive=True)
    safety = check_number("safety", safety, positive=True)
    if safety > 1:
        raise ValueError(f"safety must lie in (0, 1] (it shrinks the proposed step), got {safety}")
    exponent = check_number("exponent", exponent, positive=True)
    max_iters = check_int("max_iters", max_iters)
    span = sde.T - eps
    initial_step = span / 100 if initial_step is None else check_number("initial_step", initial_step, positive=True)
    B, dim = x.shape[0], x[0].numel()
    t = torch.full((B,), float(sde.T), device=x.device, dtype=x.dtype)
    h = torch.full_like(t, initial_step)
    x_prev = x
    rsde = sde.reverse(score_fn)
    path = BrownianPath(x, generator, tol=1e-12 * sde.T)
    bar = progress_bar(range(max_iters), progress, "sde_adaptive")
    for it in bar:
        active = t > eps + 1e-12
        if not bool(active.any()):
            break
        if callback is not None:  # the state at the start of the iteration; t: the latest sample's time
            t_max = float(t.max())
            callback(SamplerStep(it, t_max, float(sde.edm_sigma(torch.tensor([t_max], dtype=torch.float64))), x))
        h = torch.where(active, torch.minimum(h, t - eps), torch.zeros_like(h))
        z, used = path.increment(h)
        z = z.reshape(x.shape)
        drift, g = rsde.sde(x, t)
        x1 = x - drift * bcast(h, x) + bcast(g, x) * z
        t_next = (t - h).clamp(min=0)
        drift2, g2 = rsde.sde(x1, t_next)
        x2 = 0.5 * (x1 + x - drift2 * bcast(h, x) + bcast(g2, x) * z)
        scale = (rtol * torch.maximum(x1.abs(), x_prev.abs())).clamp(min=atol)
        err = ((x1 - x2) / scale).flatten(1).pow(2).sum(1).sqrt() / math.sqrt(dim)
        accept = active & (err <= 1)
        x_prev = torch.where(bcast(accept, x), x1, x_prev)
        x = torch.where(bcast(accept, x), x2, x)
        t = torch.where(accept, t_next, t)
        path.advance(accept, used)
        h = torch.where(active, safety * h * err.clamp(min=1e-10) ** (-exponent), h)
        check_state(x, it, t.min())
    else:
        raise FloatingPointError(f"sde_adaptive did not reach eps in {max_iters} iterations (t={float(t.max()):.3g})")
    return final_denoise(sde, score_fn, x, eps) if denoise else x
