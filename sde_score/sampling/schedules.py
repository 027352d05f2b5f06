"""Every time grid and noise-level schedule a sampler steps on.

- ``time_grid``: ``steps`` times equally spaced from T down to eps (the paper's grid; PC, Langevin,
  imputation).
- ``sigma_schedule``: ``steps`` decreasing noise levels sigma_e = sigma(t)/alpha(t) for the few-step
  samplers: ``karras`` (EDM eq. 5), ``log_snr`` (DPM-Solver), ``time_uniform``, or given levels.
- ``optimized_schedule``: levels fitted to a model, few steps spent where a coarse step errs most.

Fitted levels (``optimized_schedule``): a pilot batch is solved along the PF-ODE on a fine log-SNR
grid (DPM-Solver++(2M), ``fine_levels`` levels). A coarse first-order exponential-integrator step
from fine level i to level j lands at x_hat' = (s_j / s_i) x_hat_i + (1 - s_j / s_i) D_i, while the
fine solution is at x_hat_j; its cost is the mean KL divergence between N(x_hat', s_j^2 I) and
N(x_hat_j, s_j^2 I), |x_hat' - x_hat_j|^2 / (2 s_j^2): the step's error measured against the noise
already present where it lands. Dynamic programming picks the ``steps``-level path through the fine
grid with the least total cost (the trajectory-based dynamic programming of GITS, Chen et al. 2024,
with this noise-relative cost). The pilot costs ``fine_levels`` evaluations on ``pilot_samples``
points, once per model; the schedule is then passed to ``sample(..., schedule=levels)``.
``sample(..., schedule="fitted")`` does both: ``fitted_schedule`` runs the pilot the first time (fixed
seed, so the levels never depend on the caller's generator), caches the levels on the model object and
reports the pilot's cost in ``SampleInfo.extra["schedule_pilot"]``.
"""
from __future__ import annotations

import math
import time
import weakref
from typing import List, Optional, Sequence, Tuple, Union

import torch

from ..checks import check_choice, check_eps, check_int, check_number
from ..sdes import SDE
from .model import counted_run, resolve_model, resolve_shape


def time_grid(sde: SDE, steps: int, eps: float, device) -> torch.Tensor:
    """``steps`` equally spaced times from T down to eps (the paper's sampling grid)."""
    return torch.linspace(sde.T, eps, steps, device=device)


def balanced_time_grid(sde: SDE, steps: int, eps: float, device) -> torch.Tensor:
    """``steps`` times (float64) from T down to eps, never coarser than either the paper's grid (uniform in t)
    or the log-SNR grid (uniform in log sigma_e): the step density is the larger of the two grids' densities,
    rescaled to ``steps``.  VE's paper grid is already uniform in log sigma_e, so there it is the paper's grid;
    under VP / sub-VP it keeps the paper's spacing where the mode is decided (mid noise, at 1/M of its density,
    M = 1.27 for the default VP, 1.39 for sub-VP) and is geometric at low noise, where the paper's grid is coarse
    (6 of 200 VP steps below sigma_e = 0.1; here 38) and data of fine scale need the steps (the SMC imputation's
    grid, ``sampling.impute``)."""
    steps = check_int("steps", steps, minimum=2)
    dense = torch.cat([torch.linspace(eps, sde.T, 4001, dtype=torch.float64),
                       geometric_times(sde, eps, sde.T, 4001)[1:-1].clamp(eps, sde.T)]).unique()
    log_s = sde.edm_sigma(dense).log()
    # per interval of the dense grid, the larger of the two grids' fractions of their whole span
    mass = torch.maximum(dense.diff() / (sde.T - eps), log_s.diff() / (log_s[-1] - log_s[0]))
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), mass.cumsum(0)])
    target = torch.linspace(float(cum[-1]), 0.0, steps, dtype=torch.float64)
    j = torch.searchsorted(cum, target).clamp(1, len(cum) - 1)
    frac = (target - cum[j - 1]) / (cum[j] - cum[j - 1]).clamp(min=1e-300)  # VE's coinciding points: 0 mass
    ts = dense[j - 1] + frac * (dense[j] - dense[j - 1])
    ts[0], ts[-1] = sde.T, eps
    return ts.to(device)


def geometric_times(sde: SDE, t_from: float, t_to: float, num: int) -> torch.Tensor:
    """``num`` times (float64) from t_from to t_to whose noise levels sigma(t)/alpha(t) are geometric, the end
    points exact (the round trip through sigma_e may move them a hair)."""
    ends = sde.edm_sigma(torch.tensor([t_from, t_to], dtype=torch.float64))
    levels = torch.logspace(float(ends[0].log10()), float(ends[1].log10()), num, dtype=torch.float64)
    ts = sde.t_from_edm_sigma(levels).to(torch.float64)
    ts[0], ts[-1] = t_from, t_to
    return ts


SCHEDULES = ("karras", "log_snr", "time_uniform")
FITTED = "fitted"  # sample()'s name for fitted_schedule's levels (it needs the model, so sigma_schedule cannot)
# Karras levels are dense near sigma_max^(1/rho): from VP's sigma_e(T) ~ 7e10 (beta_max = 100) all but one
# of 18 levels lay above 150, far above any data scale (mode TV 0.10 vs 0.016 at beta_max = 20).  Above this
# level the schedule takes one step from sigma_e(T) (at such noise levels x_hat is nearly pure noise and
# the step is nearly exact) and spaces the rest from here; no SDE here reaches it by default (VE 50, VP 152).
KARRAS_TOP = 1e4


def sigma_schedule(sde: SDE, steps: Optional[int], eps: float, schedule: Union[str, Sequence[float]] = "karras",
                   rho: float = 7.0) -> List[float]:
    """``steps`` decreasing noise levels sigma_e from edm_sigma(T) to edm_sigma(eps) (``steps`` None:
    as many as a given sequence holds).

    karras: uniform in sigma^(1/rho) (EDM eq. 5; above ``KARRAS_TOP`` one step from sigma_e(T));
    log_snr: uniform in log sigma_e (DPM-Solver's 'logSNR'); time_uniform: uniform in t (the paper's grid).
    A sequence is taken as the levels
    themselves (e.g. from ``sampling.schedules.optimized_schedule``): ``steps`` of them, strictly
    decreasing and positive, the first edm_sigma(T) (where the prior sample lives)."""
    if steps is None and not isinstance(schedule, str) and hasattr(schedule, "__len__"):
        steps = len(schedule)  # explicit noise levels say how many there are
    steps = check_int("steps", steps, minimum=2)
    t = torch.tensor([sde.T, eps], dtype=torch.float64)
    s_max, s_min = (float(v) for v in sde.edm_sigma(t))
    if not isinstance(schedule, str):
        return _check_levels(schedule, steps, s_max)
    if schedule == FITTED:
        raise ValueError("schedule='fitted' is fitted to a model: pass it to sample(), or build the levels with "
                         "optimized_schedule(model, ...)")
    check_choice("schedule", schedule, SCHEDULES)
    i = torch.linspace(0, 1, steps, dtype=torch.float64)
    if schedule == "karras":
        rho = check_number("rho", rho, positive=True)
        top = min(s_max, KARRAS_TOP)
        head = [s_max] if top < s_max else []  # above the top: the prior's level, then karras from the top
        i = torch.linspace(0, 1, steps - len(head), dtype=torch.float64)
        s = (top ** (1 / rho) + i * (s_min ** (1 / rho) - top ** (1 / rho))) ** rho
        s = torch.cat([torch.tensor(head, dtype=torch.float64), s])
    elif schedule == "log_snr":
        s = torch.exp(math.log(s_max) + i * (math.log(s_min) - math.log(s_max)))
    else:
        s = sde.edm_sigma(sde.T + i * (eps - sde.T))
    return s.tolist()


def _check_levels(levels: Sequence[float], steps: int, s_max: float) -> List[float]:
    try:
        s = [float(v) for v in levels]
    except (TypeError, ValueError):
        raise ValueError(f"schedule must be one of {SCHEDULES} or a sequence of noise levels, got {levels!r}") from None
    if len(s) != steps:
        raise ValueError(f"the schedule has {len(s)} noise levels but steps={steps}; leave steps out or match them")
    if not all(math.isfinite(v) and v > 0 for v in s) or any(b >= a for a, b in zip(s, s[1:])):
        raise ValueError(f"noise levels must be positive, finite and strictly decreasing, got {s}")
    if abs(s[0] - s_max) > 1e-6 * s_max:
        raise ValueError(f"the first noise level must be the SDE's sigma_e(T) = {s_max:.6g} (the prior's level), "
                         f"got {s[0]:.6g}")
    return s


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

    The cost model is the exponential integrator's step, so the levels suit ``dpm_solver`` (README
    compares them with the built-in schedules); EDM Heun is far worse on them than on its own."""
    from .dpm_solver import dpm_solver_sample  # the fine solve is a sampler run; samplers import this module

    score_fn, sde, data_shape, model_device = resolve_model(model, sde)
    steps = check_int("steps", steps, minimum=2)
    fine_levels = check_int("fine_levels", fine_levels, minimum=steps)
    pilot_samples = check_int("pilot_samples", pilot_samples)
    shape = resolve_shape(None if shape is None else (pilot_samples,) + tuple(shape)[1:], pilot_samples, data_shape)
    eps = check_eps(eps, sde)
    sigmas = sigma_schedule(sde, fine_levels, eps, "log_snr")
    xs: List[torch.Tensor] = []
    Ds: List[torch.Tensor] = []

    def record(step):  # the state in scaled coordinates and D at each fine level
        xs.append(step.x / float(sde.alpha_sigma(torch.tensor([step.t], dtype=torch.float64))[0]))
        Ds.append(step.denoised)

    x_T = sde.prior_sampling(shape, generator, device=device if device is not None else model_device)
    with counted_run(score_fn, "optimized_schedule") as (counter, _):  # checked score calls, no graph
        dpm_solver_sample(counter, sde, x_T, sigmas=sigmas, generator=generator, progress=progress, order=2,
                          corrector=False, callback=record)
    path = _cheapest_path(_step_costs(sigmas, xs, Ds), steps - 1)
    return [sigmas[p] for p in path]


FITTED_PILOT = dict(pilot_samples=512, fine_levels=120, seed=0)  # the pilot behind schedule="fitted"
_FITTED_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _parameter_version(model) -> tuple:
    """Changes whenever a network's parameters are replaced or modified in place (training, load_state_dict)."""
    if isinstance(model, torch.nn.Module):
        return tuple((p.data_ptr(), p._version) for p in model.parameters())
    return ()


def fitted_schedule(model, sde: SDE, steps: int, eps: float, shape: Sequence[int], device,
                    progress: bool = True) -> Tuple[List[float], dict]:
    """``optimized_schedule``'s ``steps`` levels for ``model`` on ``sde`` down to ``eps`` (one sample's shape
    from ``shape`` (B, ...)), and what the pilot cost: {"nfe", "pilot_samples", "seconds", "cached"}.

    The pilot (``FITTED_PILOT``: 512 points, 120 levels, seed 0) runs once per model object, SDE, steps, eps,
    data shape and device; a network whose parameters change (``_parameter_version``) gets a new one."""
    key = (repr(sde), int(steps), float(eps), tuple(shape[1:]), str(device), _parameter_version(model))
    try:
        cache = _FITTED_CACHE.setdefault(model, {})
    except TypeError:  # a callable that cannot be weakly referenced: fitted each time
        cache = {}
    if key in cache:
        levels, pilot = cache[key]
        return list(levels), dict(pilot, cached=True)
    start = time.perf_counter()
    gen = torch.Generator(device=device).manual_seed(FITTED_PILOT["seed"])
    levels = optimized_schedule(model, sde, steps, shape=(1,) + tuple(shape[1:]), eps=eps, generator=gen,
                                device=device, progress=progress, pilot_samples=FITTED_PILOT["pilot_samples"],
                                fine_levels=FITTED_PILOT["fine_levels"])
    pilot = dict(nfe=FITTED_PILOT["fine_levels"], pilot_samples=FITTED_PILOT["pilot_samples"],
                 seconds=time.perf_counter() - start)
    cache[key] = (tuple(levels), pilot)
    return levels, dict(pilot, cached=False)
