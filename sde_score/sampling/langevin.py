"""Langevin dynamics: plain (Hyvarinen-score MCMC) and NCSN's annealed version (Song & Ermon 2019)."""
from __future__ import annotations

import math
from typing import Optional, Union

import torch

from ..checks import check_int, check_number
from ..sdes import SDE, VESDE
from .common import ScoreFn, check_state, gaussian_like, progress_bar, tweedie_denoise
from .pc import pc_sample


def langevin_sample(score_fn: ScoreFn, sde: SDE, shape, *, steps: int, eps: float,
                    generator: Optional[torch.Generator] = None, device=None, progress: bool = True,
                    step_size: float = 0.01, n_steps: Optional[int] = None,
                    init: Union[str, torch.Tensor] = "uniform", init_range: float = 8.0) -> torch.Tensor:
    """Un-annealed Langevin MCMC x <- x + step s(x, eps) + sqrt(2 step) z with the score at the
    smallest noise level only, from a uniform box [-init_range, init_range]^D or a given tensor.
    The baseline whose wrong mode weights on separated mixtures motivated annealing (NCSN Sec. 3)."""
    step_size = check_number("step_size", step_size, positive=True)
    n_steps = check_int("n_steps", steps if n_steps is None else n_steps)
    if isinstance(init, str):
        if init != "uniform":
            raise ValueError(f"init must be 'uniform' or a tensor, got {init!r}")
        r = check_number("init_range", init_range, positive=True)
        x = (2 * torch.rand(tuple(shape), generator=generator, device=device) - 1) * r
    else:
        if tuple(init.shape) != tuple(shape):
            raise ValueError(f"init must have shape {tuple(shape)}, got {tuple(init.shape)}")
        x = init.to(device) if device is not None else init.clone()
    t = torch.full((x.shape[0],), eps, device=x.device, dtype=x.dtype)
    for i in progress_bar(range(n_steps), progress, "langevin"):
        x = x + step_size * score_fn(x, t) + math.sqrt(2 * step_size) * gaussian_like(x, generator)
        check_state(x, i, eps)
    return x


def annealed_langevin_sample(score_fn: ScoreFn, sde: SDE, shape, *, steps: int, eps: float,
                             generator: Optional[torch.Generator] = None, device=None,
                             progress: bool = True, n_steps_each: int = 1, step_lr: float = 2e-5,
                             denoise: bool = False) -> torch.Tensor:
    """NCSN annealed Langevin (Song & Ermon 2019, Alg. 1) on ``steps`` geometric noise levels
    sigma_max ... sigma_min, ``n_steps_each`` Langevin steps of size alpha_i = step_lr sigma_i^2 /
    sigma_L^2 per level (NCSN used 10 levels x 100 steps).

    This is PC sampling with no predictor and the annealed Langevin corrector on the VE SDE: the
    corrector's step 2 (snr sigma_i)^2 equals alpha_i / 2 when snr = sqrt(step_lr) / (2 sigma_L).
    With ``denoise`` a Tweedie step at sigma_min follows (NCSNv2); NCSN itself has none.
    """
    if not isinstance(sde, VESDE):
        raise ValueError(f"annealed_langevin (NCSN) needs the 've' SDE, got {sde.name!r}; "
                         f"use method='pc' with corrector='annealed_langevin' for other SDEs")
    step_lr = check_number("step_lr", step_lr, positive=True)
    snr = math.sqrt(step_lr) / (2 * sde.sigma_min)
    x = pc_sample(score_fn, sde, shape, steps=steps, eps=eps, generator=generator, device=device,
                  progress=progress, predictor="none", corrector="annealed_langevin", snr=snr,
                  n_corrector_steps=n_steps_each, denoise=False)
    if denoise:
        x = tweedie_denoise(sde, score_fn, x, torch.full((x.shape[0],), eps, device=x.device, dtype=x.dtype))
    return x
