"""Controllable generation: imputation / inpainting of unknown coordinates given known ones.

- ``"replacement"`` (Song et al. 2021, Sec. 5 and App. I.2): PC sampling of the whole state with the
  known part replaced, after every step, by a fresh forward-perturbed copy of the observation.
  The baseline; it is biased: the unknown part never sees how likely the observation is under
  each mode, so a bimodal conditional gets the wrong mode weights.
- ``"smc"`` (default): sequential Monte Carlo over the reverse process (SMC-Diff, Trippe et al.
  2022; the particle-filter view of the twisted diffusion sampler, Wu et al. 2023).  Per
  condition, ``num_particles`` particles share one forward-noised path y_t of the observation;
  each reverse Euler-Maruyama step proposes the unknown part, pins the known part to y_t, and
  weights the particle by the reverse kernel's density of y_t (the known part it should have
  produced); resampling when the effective sample size drops below half.  Asymptotically exact
  in the number of particles and steps; one particle per condition is returned, drawn by weight.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch

from ..checks import check_batch, check_choice, check_eps, check_int, check_number
from ..sdes import SDE, bcast
from .denoiser import final_denoise
from .model import counted_run, resolve_model
from .schedules import time_grid
from .state import check_output, check_state, gaussian_like, progress_bar

IMPUTE_METHODS = ("smc", "replacement")


def _check_inputs(x_known: torch.Tensor, mask: torch.Tensor, data_shape) -> torch.Tensor:
    check_batch("x_known", x_known, data_shape, finite=False)  # its unknown entries may be NaN
    if not torch.is_tensor(mask) or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor (True = known), got "
                         f"{getattr(mask, 'dtype', type(mask).__name__)}")
    if tuple(mask.shape) not in (tuple(x_known.shape), tuple(x_known.shape[1:])):
        raise ValueError(f"mask must have shape {tuple(x_known.shape[1:])} or {tuple(x_known.shape)}, "
                         f"got {tuple(mask.shape)}")
    mask = mask.expand_as(x_known)
    if not bool(torch.isfinite(x_known[mask]).all()):
        raise ValueError("x_known has NaN or inf at known (mask=True) entries")
    return mask


def _forward_path(sde: SDE, y0: torch.Tensor, ts: torch.Tensor, generator) -> torch.Tensor:
    """One forward-noised path of the observation on the grid ts (decreasing): y_{ts[j]}, sampled
    from eps upwards with the SDE's exact Gaussian transitions. Returns (len(ts), *y0.shape)."""
    alpha, sigma = sde.alpha_sigma(ts.to(y0.dtype))
    path = torch.empty((len(ts),) + y0.shape, dtype=y0.dtype, device=y0.device)
    j = len(ts) - 1
    path[j] = alpha[j] * y0 + sigma[j] * gaussian_like(y0, generator)
    for j in range(len(ts) - 2, -1, -1):  # from t_{j+1} (smaller) to t_j (larger)
        a = alpha[j] / alpha[j + 1]
        var = (sigma[j] ** 2 - a ** 2 * sigma[j + 1] ** 2).clamp(min=0)
        path[j] = a * path[j + 1] + var.sqrt() * gaussian_like(y0, generator)
    return path


def _systematic_resample(log_w: torch.Tensor, generator) -> torch.Tensor:
    """Indices (R, K) of systematic resampling of each row of log-weights (R, K)."""
    R, K = log_w.shape
    w = torch.softmax(log_w, 1)
    cdf = torch.cumsum(w, 1)
    cdf[:, -1] = 1.0
    u = (torch.rand(R, 1, generator=generator, device=log_w.device, dtype=w.dtype)
         + torch.arange(K, device=log_w.device, dtype=w.dtype)[None]) / K
    return torch.searchsorted(cdf, u).clamp(max=K - 1)


def smc_impute(score_fn, sde: SDE, x_known: torch.Tensor, mask: torch.Tensor, *, steps: int, eps: float,
               num_particles: int = 16, generator=None, progress: bool = True, denoise: bool = True,
               ess_threshold: float = 0.5, record: Optional[dict] = None) -> torch.Tensor:
    """SMC imputation; returns (B, ...) with the known entries equal to x_known.  ``record`` receives
    ``ess`` (steps - 1,): the effective sample size after each step (before resampling), averaged over
    conditions, and ``resampled``: the number of steps at which any condition resampled."""
    K = check_int("num_particles", num_particles)
    ess_threshold = check_number("ess_threshold", ess_threshold, nonneg=True)
    if ess_threshold > 1:
        raise ValueError(f"ess_threshold must lie in [0, 1] (a fraction of num_particles), got {ess_threshold}")
    B = x_known.shape[0]
    rep = lambda v: v.repeat_interleave(K, 0)  # noqa: E731 - (B, ...) -> (B*K, ...)
    m = rep(mask)
    ts = time_grid(sde, steps, eps, x_known.device)
    y = torch.where(mask, x_known, torch.zeros_like(x_known))
    path = rep(_forward_path(sde, y, ts, generator).transpose(0, 1)).transpose(0, 1)  # shared within a run
    x = torch.where(m, path[0], sde.prior_sampling((B * K,) + x_known.shape[1:], generator, device=x_known.device,
                                                   dtype=x_known.dtype))
    log_w = torch.zeros(B, K, dtype=torch.float64, device=x.device)
    ess_trace, resampled = [], 0
    rsde = sde.reverse(score_fn)
    n_known = m.flatten(1).sum(1).to(torch.float64)
    for i in progress_bar(range(steps - 1), progress, "impute[smc]"):
        dt = float(ts[i] - ts[i + 1])
        drift, g = rsde.sde(x, ts[i].expand(B * K))
        mean = x - drift * dt
        std = g * math.sqrt(dt)
        y_next = path[i + 1]
        # reverse-kernel log-density of the known part: log N(y_next; mean_known, std^2)
        sq = ((y_next - mean) * m).flatten(1).pow(2).sum(1).to(torch.float64)
        std64 = std.to(torch.float64)
        log_w = log_w + (-0.5 * sq / std64 ** 2 - n_known * torch.log(std64)).reshape(B, K)
        x = torch.where(m, y_next, mean + bcast(std, x) * gaussian_like(x, generator))
        check_state(x, i, ts[i])
        ess = 1.0 / torch.softmax(log_w, 1).pow(2).sum(1)
        ess_trace.append(ess.mean())
        low = ess < ess_threshold * K
        if bool(low.any()):
            resampled += 1
            idx = _systematic_resample(log_w[low], generator)
            base = (torch.nonzero(low).flatten() * K)[:, None]
            rows = torch.arange(B * K, device=x.device).reshape(B, K)
            rows[low] = base + idx
            x = x[rows.flatten()]
            log_w[low] = 0.0
    if record is not None:
        record.update(ess=torch.stack(ess_trace).tolist() if ess_trace else [], resampled=resampled, num_particles=K)
    if denoise:
        x = final_denoise(sde, score_fn, x, eps)
    pick = torch.multinomial(torch.softmax(log_w, 1), 1, generator=generator).flatten()
    x = x.reshape((B, K) + x.shape[1:])[torch.arange(B, device=x.device), pick]
    return torch.where(mask, x_known, x)


def replacement_impute(score_fn, sde: SDE, x_known: torch.Tensor, mask: torch.Tensor, *, steps: int, eps: float,
                       generator=None, progress: bool = True, **pc_options) -> torch.Tensor:
    """The paper's PC imputation with replacement of the known part (biased baseline)."""
    from .pc import pc_sample

    y = torch.where(mask, x_known, torch.zeros_like(x_known))

    def replace(x: torch.Tensor, x_mean: torch.Tensor, t_next: float):
        # the known part, forward-noised to t_next (Song 2021, App. I); x_mean takes its noise-free mean
        t = torch.full((x.shape[0],), t_next, device=x.device, dtype=x.dtype)
        mean, std = sde.marginal_prob(y, t)
        return torch.where(mask, mean + bcast(std, y) * gaussian_like(y, generator), x), torch.where(mask, mean, x_mean)

    x_T = sde.prior_sampling(x_known.shape, generator, device=x_known.device)
    x = pc_sample(score_fn, sde, x_T, steps=steps, eps=eps, generator=generator, progress=progress,
                  after_step=replace, **pc_options)
    return torch.where(mask, x_known, x)


def impute(model, x_known: torch.Tensor, mask: torch.Tensor, sde: Union[str, SDE, None] = None,
           method: str = "smc", *, steps: Optional[int] = None, eps: Optional[float] = None,
           generator: Optional[torch.Generator] = None, progress: bool = True, return_info: bool = False,
           **options):
    """Fill the unknown entries (mask False) of x_known (B, ...) from p(x_unknown | x_known).

    Args:
        model: score model (ScoreModule, nn.Module or callable); sde: name/instance (model's by default).
        mask: bool, True = known; shape of one sample (shared) or of x_known.  Unknown entries of
            x_known are ignored (NaN allowed there).
        method: "smc" (default; options num_particles, ess_threshold, denoise) or "replacement"
            (options of the PC sampler: predictor, corrector, snr, ...).
        steps: reverse-time steps (default sde.N); eps: final time (default sde.default_eps).
    Returns (B, ...) with the known entries equal to x_known, or (samples, SampleInfo); for "smc"
    ``info.extra`` holds ``ess`` (the effective sample size after each step, mean over conditions),
    ``resampled`` and ``num_particles``.
    """
    check_choice("method", method, IMPUTE_METHODS)
    score_fn, sde, data_shape, device = resolve_model(model, sde)
    mask = _check_inputs(x_known, mask, data_shape)
    steps = sde.N if steps is None else check_int("steps", steps, minimum=2)
    eps = check_eps(eps, sde)
    fn = smc_impute if method == "smc" else replacement_impute
    if method == "smc":
        options["record"] = {}
    with counted_run(score_fn, f"impute[{method}]") as (counter, info):
        x = fn(counter, sde, x_known, mask, steps=steps, eps=eps, generator=generator, progress=progress, **options)
    info.extra.update(options.get("record", {}))  # smc: the ESS after each step, mean over conditions
    check_output(x, f"impute[{method}]")  # its known entries are x_known's, checked finite above
    return (x, info) if return_info else x
