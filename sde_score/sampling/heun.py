"""EDM's Heun sampler (Karras et al. 2022, Algorithms 1 and 2) in scaled coordinates, every SDE."""
from __future__ import annotations

import math
from typing import List, Optional

import torch

from ..checks import ScoreFn, check_number
from ..sdes import SDE
from .denoiser import Denoiser
from .methods import register_method
from .state import Callback, SamplerStep, check_state, gaussian_like, progress_bar


EULER_RATIO = 1e-3


@register_method("heun", default_steps=10, default_schedule="karras")
def heun_sample(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, sigmas: List[float],
                generator: Optional[torch.Generator] = None, progress: bool = True,
                callback: Optional[Callback] = None, churn: float = 0.0, s_tmin: float = 0.0,
                s_tmax: float = float("inf"), s_noise: float = 1.0) -> torch.Tensor:
    """EDM Algorithm 1 (``churn=0``) or 2: Heun steps between the noise levels ``sigmas`` (from x_T at
    sigmas[0] = sigma_e(T)), then the exact denoising jump to sigma_e = 0.  NFE = 2 len(sigmas) - 1
    (one fewer for a step from an extreme sigma_e(T), taken by Euler).
    ``churn`` adds noise back on levels in [s_tmin, s_tmax] (gamma = min(churn / steps, sqrt 2 - 1));
    a churned level may not exceed the SDE's largest level sigma_e(T), so such steps are left unchurned."""
    churn = check_number("churn", churn, nonneg=True)
    s_noise = check_number("s_noise", s_noise, nonneg=True)
    s_tmin = check_number("s_tmin", s_tmin, nonneg=True)
    if not s_tmax >= s_tmin:  # s_tmax may be inf (churn at every level), not NaN
        raise ValueError(f"s_tmax must be a number >= s_tmin={s_tmin}, got {s_tmax!r}")
    steps = len(sigmas)
    D = Denoiser(sde, score_fn)
    x = D.to_scaled(x)
    gamma = min(churn / steps, math.sqrt(2) - 1)
    for i in progress_bar(range(steps - 1), progress, "heun"):
        s_cur, s_next = sigmas[i], sigmas[i + 1]
        s_hat = s_cur * (1 + gamma) if s_tmin <= s_cur <= s_tmax else s_cur
        if gamma > 0 and s_hat > sigmas[0]:
            s_hat = s_cur
        if s_hat > s_cur:
            x = x + math.sqrt(s_hat ** 2 - s_cur ** 2) * s_noise * gaussian_like(x, generator)
        denoised = D(x, s_hat)
        if callback is not None:
            callback(SamplerStep(i, float(D.t(s_hat, x)[0]), s_hat, D.to_model_space(x, s_hat), denoised))
        d = (x - denoised) / s_hat
        x_next = x + (s_next - s_hat) * d
        if s_next < s_hat * EULER_RATIO:
            # A step that shrinks sigma more than 1/EULER_RATIO-fold (the first from an extreme sigma_e(T), see
            # schedules.KARRAS_TOP) stays Euler, where it is nearly exact, while the trapezoid multiplies the
            # change of slope by s_hat / 2 (mode TV 0.64 on VP, beta_max = 100).  Written as
            # D + (s_next / s_hat)(x - D): x + (s_next - s_hat) d cancels to float32's ulp of x (~4e3 at 7e10)
            x = denoised + (s_next / s_hat) * (x - denoised)
        else:
            d_next = (x_next - D(x_next, s_next)) / s_next
            x = x + (s_next - s_hat) * 0.5 * (d + d_next)
        check_state(x, i, D.t(s_next, x)[0])
    denoised = D(x, sigmas[-1])  # sigma_e -> 0: the posterior mean at the last level (alpha(0) = 1)
    if callback is not None:
        callback(SamplerStep(steps - 1, float(D.t(sigmas[-1], x)[0]), sigmas[-1], D.to_model_space(x, sigmas[-1]),
                             denoised))
    return denoised
