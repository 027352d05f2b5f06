"""Noise-level schedules fitted to a model: few steps spent where a coarse step errs most.

A pilot batch is solved along the PF-ODE on a fine log-SNR grid (DPM-Solver++(2M), ``fine_levels``
levels).  A coarse first-order exponential-integrator step from fine level i to level j lands at
x_hat' = (s_j / s_i) x_hat_i + (1 - s_j / s_i) D_i, while the fine solution is at x_hat_j; its cost is
the mean KL divergence between N(x_hat', s_j^2 I) and N(x_hat_j, s_j^2 I), |x_hat' - x_hat_j|^2 / (2 s_j^2):
the step's error measured against the noise already present where it lands.  Dynamic programming
picks the ``steps``-level path through the fine grid with the least total cost (the trajectory-based
dynamic programming of GITS, Chen et al. 2024, with this noise-relative cost).  The pilot costs
``fine_levels`` evaluations on ``pilot_samples`` points, once per model; the schedule is then
passed to ``sample(..., schedule=levels)``.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import torch

from ..checks import check_eps, check_int
from ..sdes import SDE
from .api import resolve_model, _resolve_shape
from .fast import dpm_solver_sample, sigma_schedule


def _step_costs(sigmas: List[float], xs: List[torch.Tensor], Ds: List[torch.Tensor]) -> torch.Tensor:
    """(M, M) mean KL cost of a first-order step from fine level i to j > i (inf for j <= i)."""
    M = len(sigmas)
    s = torch.tensor(sigmas, dtype=torch.float64)
    cost = torch.full((M, M), float("inf"), dtype=torch.float64)
    x_all = torch.stack([x.flatten(1).double() for x in xs])  # (M, n, d)
    for i in range(M - 1):
        r = (s[i + 1:] / s[i])[:, None, None]
        x_step = r * x_all[i] + (1 - r) * Ds[i].flatten(1).double()
        err = (x_step - x_all[i + 1:]).pow(2).sum(2).mean(1)
        cost[i, i + 1:] = err / (2 * s[i + 1:] ** 2)
    return cost


def _cheapest_path(cost: torch.Tensor, jumps: int) -> List[int]:
    """Indices 0 = p_0 < ... < p_jumps = M - 1 minimising sum cost[p_k, p_k+1] (dynamic programming)."""
    M = cost.shape[0]
    best = torch.full((M,), float("inf"), dtype=cost.dtype)
    best[0] = 0.0
    back = []
    for _ in range(jumps):
        total = best[:, None] + cost  # total[i, j]: best path to i, then i -> j
        best, arg = total.min(0)
        back.append(arg)
    path = [M - 1]
    for arg in reversed(back):
        path.append(int(arg[path[-1]]))
    return path[::-1]


def optimized_schedule(model, sde: Union[str, SDE, None] = None, steps: int = 20, *,
                       shape: Optional[Sequence[int]] = None, pilot_samples: int = 512, fine_levels: int = 120,
                       eps: Optional[float] = None, generator: Optional[torch.Generator] = None, device=None,
                       progress: bool = True) -> List[float]:
    """``steps`` noise levels sigma_e (decreasing, from sigma_e(T) to sigma_e(eps)) for
    ``sample(..., method="dpm_solver", schedule=levels)``, fitted to ``model`` on a pilot batch of
    ``pilot_samples`` (data shape from the model, or ``shape`` = (B, ...)).  Costs ``fine_levels``
    model evaluations on the pilot batch.  eps: default the SDE's.

    The cost model is the exponential integrator's step, so the levels suit ``dpm_solver`` (on the
    exact mixtures, 20 levels bring 3M + corrector's log-density gap from -0.11 to within the
    statistical error, VE and VP); EDM Heun on them is far worse than on its own schedule."""
    score_fn, sde, data_shape, model_device = resolve_model(model, sde)
    steps = check_int("steps", steps, minimum=2)
    fine_levels = check_int("fine_levels", fine_levels, minimum=steps)
    pilot_samples = check_int("pilot_samples", pilot_samples)
    shape = _resolve_shape(None if shape is None else (pilot_samples,) + tuple(shape)[1:], pilot_samples, data_shape)
    eps = check_eps(eps, sde)
    sigmas = sigma_schedule(sde, fine_levels, eps, "log_snr")
    xs: List[torch.Tensor] = []
    Ds: List[torch.Tensor] = []

    def record(i, sigma, x_hat, denoised):
        xs.append(x_hat)
        Ds.append(denoised)

    with torch.no_grad():
        dpm_solver_sample(score_fn, sde, shape, steps=fine_levels, eps=eps, generator=generator,
                          device=device if device is not None else model_device, progress=progress, order=2,
                          corrector=False, schedule=sigmas, callback=record)
    path = _cheapest_path(_step_costs(sigmas, xs, Ds), steps - 1)
    return [sigmas[p] for p in path]
