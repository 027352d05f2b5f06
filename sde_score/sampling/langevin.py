"""Langevin dynamics: plain (Hyvarinen-score MCMC) and NCSN's annealed version (Song & Ermon 2019)."""
from __future__ import annotations

import math
from typing import Optional

import torch

from ..checks import ScoreFn, check_int, check_number
from ..sdes import SDE, VESDE
from .denoiser import final_denoise
from .methods import register_method
from .pc import pc_sample
from .state import Callback, SamplerStep, check_state, gaussian_like, progress_bar


def uniform_box(shape, init_range: float, generator: Optional[torch.Generator], device=None,
                dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """Starting points uniform in [-init_range, init_range]^D (B, ...)."""
    r = check_number("init_range", init_range, positive=True)
    return (2 * torch.rand(tuple(shape), generator=generator, device=device, dtype=dtype) - 1) * r


@register_method("langevin", prior_start=False)
def langevin_sample(score_fn: ScoreFn, sde: SDE, x: Optional[torch.Tensor], *, eps: float,
                    generator: Optional[torch.Generator] = None, progress: bool = True,
                    callback: Optional[Callback] = None, step_size: float = 0.01, n_steps: int = 1000,
                    init_range: float = 8.0, shape=None, device=None, dtype=None) -> torch.Tensor:
    """Un-annealed Langevin MCMC x <- x + step s(x, eps) + sqrt(2 step) z with the score at the
    smallest noise level only, ``n_steps`` times from x (x_T when one is given; x None: uniform in
    the box [-init_range, init_range]^D of ``shape`` on ``device``, in ``dtype``).  The baseline whose wrong
    mode weights on separated mixtures motivated annealing (NCSN Sec. 3)."""
    step_size = check_number("step_size", step_size, positive=True)
    n_steps = check_int("n_steps", n_steps)
    if x is None:
        x = uniform_box(shape, init_range, generator, device, dtype)
    t = torch.full((x.shape[0],), eps, device=x.device, dtype=x.dtype)
    sigma = float(sde.edm_sigma(torch.tensor([eps], dtype=torch.float64)))
    for i in progress_bar(range(n_steps), progress, "langevin"):
        if callback is not None:
            callback(SamplerStep(i, eps, sigma, x))
        x = x + step_size * score_fn(x, t) + math.sqrt(2 * step_size) * gaussian_like(x, generator)
        check_state(x, i, eps)
    return x


@register_method("annealed_langevin")
def annealed_langevin_sample(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, steps: int,
                             generator: Optional[torch.Generator] = None, progress: bool = True,
                             callback: Optional[Callback] = None, n_steps_each: int = 1, step_lr: float = 2e-5,
                             denoise: bool = False) -> torch.Tensor:
    """NCSN annealed Langevin (Song & Ermon 2019, Alg. 1) from x on ``steps`` geometric noise levels
    sigma_max ... sigma_min (the VE grid from T down to t = 0, where sigma = sigma_min), with
    ``n_steps_each`` Langevin steps of size alpha_i = step_lr sigma_i^2 / sigma_L^2 per level (NCSN
    used 10 levels x 100 steps).

    This is PC sampling with no predictor and the annealed Langevin corrector on the VE SDE: the
    corrector's step 2 (snr sigma_i)^2 equals alpha_i / 2 when snr = sqrt(step_lr) / (2 sigma_L).
    With ``denoise`` a Tweedie step at sigma_min follows (NCSNv2); NCSN itself has none.
    """
    if not isinstance(sde, VESDE):
        raise ValueError(f"annealed_langevin (NCSN) needs the 've' SDE, got {sde.name!r}; "
                         f"use method='pc' with corrector='annealed_langevin' for other SDEs")
    step_lr = check_number("step_lr", step_lr, positive=True)
    snr = math.sqrt(step_lr) / (2 * sde.sigma_min)
    x = pc_sample(score_fn, sde, x, steps=steps, eps=0.0, generator=generator, progress=progress,
                  callback=callback, predictor="none", corrector="annealed_langevin", snr=snr,
                  n_corrector_steps=n_steps_each, denoise=False)
    return final_denoise(sde, score_fn, x, 0.0) if denoise else x
