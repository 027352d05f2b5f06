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
  produced); resampling only when the effective sample size has collapsed (below 2 % of the particles).
  Asymptotically exact in the number of particles and steps; one particle per condition is returned,
  drawn by weight.  Why so rarely: each step's weights are nearly flat but informative in aggregate, and
  resampling on them adds more noise than they carry; on the hard conditions of
  experiments/bench_impute_hard.py (observations between two modes) resampling at ESS < K/2 left the mode
  weights near the replacement baseline's, at ESS < 0.02 K they reach the exact conditional's on most.

Noisy observations (``noise_std`` c > 0): y = x_0 + c z has the law of x_{t*} / alpha(t*) at the time t* where
sigma(t*)/alpha(t*) = c, because the forward noise is isotropic and independent across coordinates.  So a
noisy entry is a noise-free observation of the diffused state at t*: both methods hold it to its forward path
from there for t >= t* and sample it below (the filtering view of Dou & Song 2024; the same reduction as
SNIPS / DDRM's noisy case).  The SMC stays asymptotically exact: t* is a point of its time grid.
"""
from __future__ import annotations

import inspect
import math
from typing import Optional, Union

import torch

from ..checks import check_batch, check_choice, check_eps, check_int, check_number
from ..sdes import SDE, bcast
from .denoiser import final_denoise
from .dps import dps_impute
from .model import counted_run, resolve_model
from .schedules import time_grid
from .state import check_output, check_state, gaussian_like, progress_bar

IMPUTE_METHODS = ("smc", "replacement", "dps")


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


def _check_noise(noise_std, x_known: torch.Tensor) -> Optional[torch.Tensor]:
    """noise_std as a float64 tensor like x_known (None when it is 0 everywhere)."""
    if not torch.is_tensor(noise_std):
        noise_std = torch.tensor(check_number("noise_std", noise_std, nonneg=True), dtype=torch.float64)
    try:
        c = noise_std.to(torch.float64).to(x_known.device).expand_as(x_known)
    except RuntimeError:
        raise ValueError(f"noise_std must be a number or broadcast to x_known's shape {tuple(x_known.shape)}, "
                         f"got shape {tuple(noise_std.shape)}") from None
    if not bool(torch.isfinite(c).all()) or bool((c < 0).any()):
        raise ValueError("noise_std must be finite and >= 0 everywhere")
    return c if bool((c > 0).any()) else None


def _noise_and_release(sde: SDE, obs_std: Optional[torch.Tensor], x_known: torch.Tensor, mask: torch.Tensor,
                       eps: float):
    """(c, release): the observation noise of every entry (float64 like x_known, 0 = noise-free) and its release
    time (``_release_times``)."""
    c = torch.zeros_like(x_known, dtype=torch.float64) if obs_std is None else obs_std.to(torch.float64)
    return c, _release_times(sde, c, mask, eps)


def _release_times(sde: SDE, obs_std: torch.Tensor, known: torch.Tensor, eps: float) -> torch.Tensor:
    """Per entry, the time t_i at which the SDE's noise level sigma(t)/alpha(t) equals the entry's observation
    noise c_i: y_i = x_0,i + c_i z is distributed as x_{t_i,i} / alpha(t_i), so a noisy observation is a
    noise-free one of the diffused state at t_i (the forward noise is isotropic).  -inf where the entry is
    noise-free (or its noise is below sigma_e(eps): observed through the end), float64 like obs_std."""
    c = obs_std.to(torch.float64)
    s_eps, s_T = (float(sde.edm_sigma(torch.tensor(v, dtype=torch.float64))) for v in (eps, sde.T))
    too_big = known & (c >= s_T)
    if bool(too_big.any()):
        raise ValueError(f"observation noise {float(c[too_big].max()):.4g} (model space) is at or above the SDE's "
                         f"largest noise level sigma(T)/alpha(T) = {s_T:.4g}: such an observation says less than "
                         f"the prior; give noise_std below it (or drop that observation)")
    t = torch.full_like(c, -math.inf)
    inner = known & (c > s_eps)
    if bool(inner.any()):
        t[inner] = sde.t_from_edm_sigma(c[inner]).to(torch.float64)
    return t


def _observation_path(sde: SDE, ts: torch.Tensor, y: torch.Tensor, c: torch.Tensor, generator) -> torch.Tensor:
    """One forward-noised path of the observation y = x_0 + c z on the decreasing grid ts (float64): in scaled
    coordinates x / alpha the forward process adds variance sigma_e(t)^2, so the path starts at y (variance c^2)
    and adds independent increments up to each sigma_e(ts[j])^2 >= c^2.  Returns alpha(ts[j]) times it,
    (len(ts), *y.shape) in y's dtype; entries are only meaningful where sigma_e(ts[j]) >= c."""
    alpha, sigma = sde.alpha_sigma(ts)
    var = (sigma / alpha) ** 2
    xh, reached = y.to(torch.float64), c.to(torch.float64) ** 2
    path = torch.empty((len(ts),) + y.shape, dtype=y.dtype, device=y.device)
    for j in range(len(ts) - 1, -1, -1):  # from eps (smallest noise) upwards
        inc = (var[j] - reached).clamp(min=0)
        xh = xh + inc.sqrt() * gaussian_like(y, generator).to(torch.float64)
        reached = torch.maximum(reached, var[j])
        path[j] = (alpha[j] * xh).to(y.dtype)
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
               obs_std: Optional[torch.Tensor] = None, num_particles: int = 64, generator=None,
               progress: bool = True, denoise: bool = True, ess_threshold: float = 0.02,
               record: Optional[dict] = None) -> torch.Tensor:
    """SMC imputation; returns (B, ...): noise-free known entries equal to x_known, the others sampled.

    ``obs_std`` (like x_known, float; None = all 0): the noise std of each known entry.  An entry with noise
    c > 0 is pinned to its forward path only while sigma_e(t) >= c and sampled below; its release time is
    added to the grid, so the run takes one more step per distinct noise level.  ``record`` receives ``ess``
    (the effective sample size after each step, before resampling, averaged over conditions) and
    ``resampled``: the number of steps at which any condition resampled."""
    K = check_int("num_particles", num_particles)
    ess_threshold = check_number("ess_threshold", ess_threshold, nonneg=True)
    if ess_threshold > 1:
        raise ValueError(f"ess_threshold must lie in [0, 1] (a fraction of num_particles), got {ess_threshold}")
    B, device = x_known.shape[0], x_known.device
    c, release = _noise_and_release(sde, obs_std, x_known, mask, eps)
    ts = time_grid(sde, steps, eps, device).to(torch.float64)
    extra = release[torch.isfinite(release)]
    if extra.numel():  # each noisy entry is released exactly at its own time
        ts = torch.cat([ts, extra]).unique().flip(0)
    shape = tuple(x_known.shape[1:])
    # particles live as (B, K, ...) views: the condition's path and pinned mask broadcast over K, no copies
    pinned = lambda j: (mask & (ts[j] >= release)).unsqueeze(1)  # noqa: E731 - (B, 1, ...) held at ts[j]
    y = torch.where(mask, x_known, torch.zeros_like(x_known))
    path = _observation_path(sde, ts, y, c, generator).unsqueeze(2)  # (L, B, 1, ...): one path per condition
    tx = ts.to(x_known.dtype)
    prior = sde.prior_sampling((B * K,) + shape, generator, device=device, dtype=x_known.dtype)
    x = torch.where(pinned(0), path[0], prior.view((B, K) + shape)).reshape((B * K,) + shape)
    log_w = torch.zeros(B, K, dtype=torch.float64, device=device)
    ess_trace, resampled = [], 0
    rsde = sde.reverse(score_fn)
    for i in progress_bar(range(len(ts) - 1), progress, "impute[smc]"):
        dt = float(ts[i] - ts[i + 1])
        drift, g = rsde.sde(x, tx[i].expand(B * K))
        mean = (x - drift * dt).view((B, K) + shape)
        std = g * math.sqrt(dt)
        m, y_next = pinned(i + 1), path[i + 1]
        # reverse-kernel log-density of the pinned part: log N(y_next; mean_pinned, std^2)
        sq = ((y_next - mean) * m).flatten(2).pow(2).sum(2).to(torch.float64)
        std64 = std.to(torch.float64).view(B, K)
        n_pinned = m.flatten(2).sum(2).to(torch.float64)
        log_w = log_w + (-0.5 * sq / std64 ** 2 - n_pinned * torch.log(std64))
        proposal = mean + bcast(std, x).view((B, K) + (1,) * len(shape)) * gaussian_like(mean, generator)
        x = torch.where(m, y_next, proposal).reshape((B * K,) + shape)
        check_state(x, i, tx[i])
        ess = 1.0 / torch.softmax(log_w, 1).pow(2).sum(1)
        ess_trace.append(ess.mean())
        low = ess < ess_threshold * K
        if bool(low.any()):
            resampled += 1
            idx = _systematic_resample(log_w[low], generator)
            base = (torch.nonzero(low).flatten() * K)[:, None]
            rows = torch.arange(B * K, device=device).reshape(B, K)
            rows[low] = base + idx
            x = x[rows.flatten()]
            log_w[low] = 0.0
    if record is not None:
        record.update(ess=torch.stack(ess_trace).tolist() if ess_trace else [], resampled=resampled, num_particles=K,
                      grid_steps=len(ts))
    if denoise:
        x = final_denoise(sde, score_fn, x, eps)
    pick = torch.multinomial(torch.softmax(log_w, 1), 1, generator=generator).flatten()
    x = x.reshape((B, K) + x.shape[1:])[torch.arange(B, device=device), pick]
    return torch.where(mask & (c == 0), x_known, x)


def replacement_impute(score_fn, sde: SDE, x_known: torch.Tensor, mask: torch.Tensor, *, steps: int, eps: float,
                       obs_std: Optional[torch.Tensor] = None, generator=None, progress: bool = True,
                       **pc_options) -> torch.Tensor:
    """The paper's PC imputation with replacement of the known part (biased baseline); an entry observed
    with noise c is replaced only while sigma_e(t) >= c (as ``smc_impute``), then sampled."""
    from .pc import pc_sample

    c, release = _noise_and_release(sde, obs_std, x_known, mask, eps)
    y = torch.where(mask, x_known, torch.zeros_like(x_known))

    def replace(x: torch.Tensor, x_mean: torch.Tensor, t_next: float):
        # the known part, forward-noised to t_next from its observed noise level (Song 2021, App. I)
        t = torch.tensor(t_next, dtype=torch.float64)
        alpha, sigma = sde.alpha_sigma(t)
        held = mask & (t >= release)
        std = (sigma ** 2 - (alpha * c) ** 2).clamp(min=0).sqrt().to(y.dtype)
        mean = (alpha * y.to(torch.float64)).to(y.dtype)
        return torch.where(held, mean + std * gaussian_like(y, generator), x), torch.where(held, mean, x_mean)

    x_T = sde.prior_sampling(x_known.shape, generator, device=x_known.device)
    x = pc_sample(score_fn, sde, x_T, steps=steps, eps=eps, generator=generator, progress=progress,
                  after_step=replace, **pc_options)
    return torch.where(mask & (c == 0), x_known, x)


# arguments impute (or the PC sampler under replacement) sets itself; the last two come from internal callers
_IMPUTE_INTERNAL = ("record", "residual_weights")
_IMPUTE_PROVIDED = ("score_fn", "sde", "x_known", "mask", "steps", "eps", "obs_std", "generator", "progress", "x",
                    "callback", "after_step") + _IMPUTE_INTERNAL


def _check_options(method: str, fn, options: dict) -> None:
    """An unknown option of an imputation method is an error naming the ones it accepts."""
    if method == "replacement":
        from .pc import pc_sample
        fn = pc_sample  # replacement passes its options on to the PC sampler
    accepted = [p for p in inspect.signature(fn).parameters if p not in _IMPUTE_PROVIDED]
    unknown = sorted(set(options) - set(accepted) - set(_IMPUTE_INTERNAL))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for impute method {method!r}; accepted: "
                         f"{', '.join(accepted)}")


def impute(model, x_known: torch.Tensor, mask: torch.Tensor, sde: Union[str, SDE, None] = None,
           method: str = "smc", *, noise_std: Union[float, torch.Tensor] = 0.0, steps: Optional[int] = None,
           eps: Optional[float] = None,
           generator: Optional[torch.Generator] = None, progress: bool = True, return_info: bool = False,
           **options):
    """Fill the unknown entries (mask False) of x_known (B, ...) from p(x_unknown | x_known).

    Args:
        model: score model (ScoreModule, nn.Module or callable); sde: name/instance (model's by default).
        mask: bool, True = known; shape of one sample (shared) or of x_known.  Unknown entries of
            x_known are ignored (NaN allowed there).
        noise_std: the known entries are x_0 + noise_std z (model space): a number or a tensor broadcastable
            to x_known, >= 0 (0: noise-free, returned as given; > 0: those entries are sampled as well).
        method: "smc" (default; options num_particles, ess_threshold, denoise), "replacement"
            (options of the PC sampler: predictor, corrector, snr, ...) or "dps" (approximate baseline,
            ``sampling.dps``; option scale).
        steps: reverse-time steps (default sde.N); eps: final time (default sde.default_eps).
    Returns (B, ...) with the noise-free known entries equal to x_known, or (samples, SampleInfo); for "smc"
    ``info.extra`` holds ``ess`` (the effective sample size after each step, mean over conditions),
    ``resampled`` and ``num_particles``.
    """
    check_choice("method", method, IMPUTE_METHODS)
    score_fn, sde, data_shape, device = resolve_model(model, sde)
    mask = _check_inputs(x_known, mask, data_shape)
    obs_std = _check_noise(noise_std, x_known)
    steps = sde.N if steps is None else check_int("steps", steps, minimum=2)
    eps = check_eps(eps, sde)
    fn = {"smc": smc_impute, "replacement": replacement_impute, "dps": dps_impute}[method]
    _check_options(method, fn, options)
    if method == "smc":
        options["record"] = {}
    with counted_run(score_fn, f"impute[{method}]", grad=method == "dps") as (counter, info):
        x = fn(counter, sde, x_known, mask, steps=steps, eps=eps, obs_std=obs_std, generator=generator,
               progress=progress, **options)
    info.extra.update(options.get("record", {}))  # smc: the ESS after each step, mean over conditions
    check_output(x, f"impute[{method}]")  # its known entries are x_known's, checked finite above
    return (x, info) if return_info else x
