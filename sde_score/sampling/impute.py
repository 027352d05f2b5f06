"""Controllable generation: imputation / inpainting of unknown coordinates given known ones.

- ``"replacement"`` (Song et al. 2021, Sec. 5 and App. I.2): PC sampling of the whole state with the
  known part replaced, after every step, by a fresh forward-perturbed copy of the observation.
  The baseline; it is biased: the unknown part never sees how likely the observation is under
  each mode, so a bimodal conditional gets the wrong mode weights.
- ``"smc"`` (default): particle Gibbs over sequential Monte Carlo passes of the reverse process (SMC-Diff,
  Trippe et al. 2022, made a Markov chain by conditional SMC, Andrieu, Doucet & Holenstein 2010).  Per
  condition, ``num_particles`` particles share one forward-noised path y_t of the observation; each step of
  the ancestral kernel proposes the unknown part, pins the known part to y_t and weights the particle by the
  kernel's density of y_t; resampling only when the effective sample size has collapsed (below 2 % of the
  particles).  One pass is asymptotically exact in the number of particles, but at a practical count it is
  biased where the observation lies between modes: the shared path, at mid noise levels, says more about
  which mode than y does, the particles of a pass follow it into one mode, and no later weight can bring the
  other back (experiments/bench_impute_hard.py, README).  So each further pass is conditional SMC: a fresh
  observation path, and the previous pass's draw as a reference particle (its forward path given the draw:
  ``_reference_path``) that survives every resampling.  Given x_0 the forward paths of the coordinates are
  independent, so this is a Gibbs sampler on (path, trajectory) whose invariant law is the conditional for
  any particle count; the passes are its iterations and the last draw is returned.  The passes step on
  ``schedules.balanced_time_grid``: the paper's spacing where the mode is decided, geometric in sigma/alpha at
  low noise, where thin data directions need the steps (image64 VP, 8 of 64 pixels observed: +10.8 nats to the
  ideal end point on the paper's grid, +1.0 on this one, README).  The kernel is the ancestral one with the
  true transition's variance std^2 + b^2 Cov[x_0 | x_t] in its isotropic form: the second term, the particles'
  mean posterior variance of x_0, is read off the proposal noise by Stein's identity at no extra score
  evaluation (``_stein_posterior_variance``).  Without it the pinned entries' density is too sharp at coarse
  steps and the weights favour one mode (gmm16d obs[0::2] 2|3, VP: 0.60 for an exact 0.5, README).  Its
  anisotropic part is not in the default, and where modes differ in shape on the observed block that leaves a
  bias (obs[0::2] 1|2, VP: 0.595 for an exact 0.5 at 200 steps per pass, README).  ``kernel_variance=
  "anisotropic"`` adds it to first order from one more score evaluation per step, a directional derivative of
  the denoiser (``_anisotropic_correction``), which fixes that condition at twice the evaluations.

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
from ..sdes import SDE
from .denoiser import final_denoise, posterior_covariance_along, tweedie_denoise, tweedie_from_score
from .dps import dps_impute
from .model import counted_run, resolve_model
from .schedules import balanced_time_grid, geometric_times
from .state import check_output, check_state, gaussian_like, hutchinson_probes, progress_bar

IMPUTE_METHODS = ("smc", "replacement", "dps")
KERNEL_VARIANCES = ("stein", "anisotropic", "posterior")  # the SMC kernel's variance (``smc_impute``)
# the SMC's default budget: SMC_SWEEPS passes of SMC_STEPS steps = 1000 score evaluations per particle
SMC_STEPS, SMC_SWEEPS = 200, 5


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


def _conditional_resample(log_w: torch.Tensor, generator) -> torch.Tensor:
    """Indices (R, K) for conditional SMC: slot 0 (the reference) keeps itself, the other K - 1 are drawn
    multinomially from all K by weight (Andrieu, Doucet & Holenstein 2010, Sec. 4.4)."""
    R, K = log_w.shape
    idx = torch.multinomial(torch.softmax(log_w, 1), K, replacement=True, generator=generator)
    idx[:, 0] = 0
    return idx


def _reference_path(sde: SDE, ts: torch.Tensor, x_end: torch.Tensor, y: torch.Tensor, c: torch.Tensor,
                    release: torch.Tensor, generator) -> torch.Tensor:
    """A forward path (len(ts), B, ...) of the chain state x_end (B, ...) at ts[-1], drawn from the forward
    process given x_end and the observations: free Markov increments upwards for every entry; an entry
    observed with noise (release time t_i > ts[-1]) is a Brownian bridge in x / alpha from x_end to y at t_i
    (y = x_{t_i} / alpha(t_i) is what that observation means).  Entries held to the observation path are
    overwritten by the sweep, so their values here do not matter."""
    alpha, sigma = sde.alpha_sigma(ts)
    var = (sigma / alpha) ** 2  # (L,) the variance clock of x / alpha
    shape = (len(ts),) + tuple(x_end.shape)
    free = torch.empty(shape, dtype=torch.float64, device=x_end.device)
    free[-1] = x_end.to(torch.float64) / alpha[-1]
    for j in range(len(ts) - 2, -1, -1):
        free[j] = free[j + 1] + (var[j] - var[j + 1]).sqrt() * gaussian_like(x_end, generator).to(torch.float64)
    v = var.view((-1,) + (1,) * x_end.dim())
    bridged = torch.isfinite(release)
    if bool(bridged.any()):  # pin each noisy entry's free path to y at its release time
        # the clamps below only keep the entries that are not bridged finite (the where drops them): for a
        # bridged entry c^2 > var[-1] and v <= v_i
        v_i = (c.to(torch.float64) ** 2).clamp(min=float(var[-1]))
        j_i = torch.searchsorted(-ts.contiguous(), -release.clamp(min=float(ts[-1])).contiguous().flatten())
        at_release = free.flatten(1).gather(0, j_i.clamp(max=len(ts) - 1)[None]).view_as(x_end)
        frac = ((v - var[-1]) / (v_i - var[-1]).clamp(min=1e-300)).clamp(max=1.0)
        free = torch.where(bridged & (v <= v_i), free + frac * (y.to(torch.float64) - at_release), free)
    return (alpha.view_as(v) * free).to(x_end.dtype)


def _stein_posterior_variance(sde: SDE, t: torch.Tensor, x0: torch.Tensor, probe, B: int, K: int,
                              first: int) -> torch.Tensor:
    """Per condition (B,), float64: the mean over its particles and free entries of the diagonal of
    Cov[x_0 | x_t], from the proposal noise that made the particles (no extra score evaluation).

    ``probe`` = (x0_prev (B K, ...), z (B, K, ...), s (B,), free (B, 1, ...)): the particles x_t were drawn as
    mu + s z with z ~ N(0, I) on the free entries and mu, x0_prev independent of z.  Stein's identity gives
    E[z . (x0_hat(mu + s z) - x0_prev)] = s E[tr_free d x0_hat / d x_t], and Tweedie's second-order identity
    Cov[x_0 | x_t] = (sigma^2 / alpha) d x0_hat / d x_t turns that into the posterior covariance (x0_prev, the
    particle's previous denoised value, only lowers the estimate's variance).  Slots below ``first`` (the
    conditional SMC's reference, which was not drawn so) are left out.  A negative estimate (noise, where the
    covariance is ~0) counts as 0: a variance."""
    x0_prev, z, s, free = probe
    shape = z.shape[2:]
    alpha, sigma = sde.alpha_sigma(t.to(torch.float64))
    prod = ((x0 - x0_prev).view((B, K) + shape) * z * free).flatten(2).sum(2).to(torch.float64)[:, first:]
    n_free = free.flatten(2).sum(2).to(torch.float64)[:, 0]
    trace = prod.mean(1) / s / n_free.clamp(min=1)  # mean diagonal of d x0_hat / d x_t over the free entries
    return (sigma ** 2 / alpha * trace).clamp(min=0)


def _anisotropic_correction(sde: SDE, score_fn, x: torch.Tensor, score: torch.Tensor, t: torch.Tensor,
                            resid: torch.Tensor, pinned: torch.Tensor, mean: torch.Tensor, s: torch.Tensor,
                            b: torch.Tensor, c: torch.Tensor, log_w: torch.Tensor, generator) -> tuple:
    """The kernel's covariance S = s^2 I + b^2 (C - c I), C = Cov[x_0 | x_t] per particle, to first order in
    b^2 (C - c I) / s^2 around the isotropic s^2 = std^2 + b^2 c: the pinned entries' log-density gains
    b^2 / (2 s^2) (u' (C - c I) u - tr (C - c I)) with u = resid / s on the pinned block (the isotropic part is
    already in s^2: counting it again favours particles with large residuals), and the free entries' mean gains
    (b^2 / s) C u, their conditional mean given the pinned ones.  One score evaluation per step: with a
    Rademacher probe v on the pinned block, C (u - v) (``posterior_covariance_along``) gives
    (u + v)' C (u - v) = u' C u - v' C v, Hutchinson's estimate of u' C u - tr C (C is symmetric), and on the free
    entries C u up to the zero-mean C v.  Returns (log_w, mean) updated; resid, pinned and mean (B, K, ...),
    s and c (B,) float64, b the step's coefficient of x_0."""
    B, K = resid.shape[:2]
    s_x = s.to(resid.dtype).view((B, 1) + (1,) * (resid.dim() - 2))
    u = resid / s_x
    v = hutchinson_probes(resid.shape, 1, "rademacher", generator, resid.device, resid.dtype)[0] * pinned
    cw = posterior_covariance_along(sde, score_fn, x, score, (u - v).reshape(x.shape), t).view(resid.shape)
    bracket = ((u + v) * cw * pinned).flatten(2).sum(2).to(torch.float64)
    excess = (u.pow(2) * pinned).flatten(2).sum(2).to(torch.float64) - pinned.flatten(2).sum(2).to(torch.float64)
    log_w = log_w + (b ** 2 / (2 * s ** 2))[:, None] * (bracket - c[:, None] * excess)
    return log_w, mean + (b.to(mean.dtype) ** 2 / s_x) * cw * ~pinned


def _smc_sweep(score_fn, sde: SDE, ts: torch.Tensor, kernel, path: torch.Tensor, pinned, shape, K: int,
               generator, ess_threshold: float, reference: Optional[torch.Tensor], bar,
               kernel_variance: str) -> tuple:
    """One SMC pass over the grid ts for B conditions of K particles sharing the observation path
    (len(ts), B, 1, ...); ``kernel`` = ``sde.posterior_coeffs(ts[:-1], ts[1:])`` (the same for every pass).
    With ``reference`` (len(ts), B, ...) it is conditional SMC: slot 0 follows the reference (its pinned
    entries on the path) and survives every resampling.  ``kernel_variance`` as ``smc_impute``'s.  Returns the
    final states (B, K, ...) at ts[-1], their log-weights (B, K), the ESS (B,) after each step and the kernel's
    std over the forward posterior's (len(ts) - 1, B)."""
    B, device, dtype = path.shape[1], path.device, path.dtype
    tx = ts.to(dtype)
    first = 0 if reference is None else 1
    x = sde.prior_sampling((B, K) + shape, generator, device=device, dtype=dtype)
    # the prior draw is the first step's probe: x_T = prior_std z, with 0 as the control variate
    probe = (torch.zeros_like(x).reshape((B * K,) + shape), x / sde.prior_std,
             torch.full((B,), sde.prior_std, dtype=torch.float64, device=device), (~pinned(0)).to(dtype))
    if reference is not None:
        x[:, 0] = reference[0]
    x = torch.where(pinned(0), path[0], x).reshape((B * K,) + shape)
    log_w = torch.zeros(B, K, dtype=torch.float64, device=device)
    ess_trace, inflation = [], []
    resample = _systematic_resample if reference is None else _conditional_resample
    a, b = (v.to(dtype) for v in kernel[:2])  # the states' dtype; the variances stay float64
    for i in range(len(ts) - 1):
        # ancestral kernel q(x_{i+1} | x_i, x0_hat) (``SDE.posterior_coeffs``): the proposal of the free
        # entries and the density of the pinned ones.  Its mean is the true transition's for any data (so the
        # forward-drawn reference is nearly distributed like the particles; with Euler steps it was not and
        # the chain drifted, README #13); the true variance is std^2 I + b^2 Cov[x_0 | x_t] (total variance).
        # Without the second term the pinned entries' density is too sharp at coarse steps and the weights
        # over-favour one mode (a 0.40 / 0.60 split for an exact 0.5 / 0.5, README); its isotropic part (the
        # variance Analytic-DPM, Bao et al. 2022, derives for unconditional sampling) removes that bias there;
        # where the modes differ in shape on the pinned block the anisotropic part matters too (``anisotropic``).
        t_i = tx[i].expand(x.shape[0])
        score = score_fn(x, t_i)
        x0 = tweedie_from_score(sde, x, score, t_i)
        mean = (a[i] * x + b[i] * x0).view((B, K) + shape)
        s, c = kernel[2][i].expand(B), None  # c: the isotropic part of Cov[x_0 | x_t] that s^2 holds
        if kernel_variance != "posterior":
            c = _stein_posterior_variance(sde, ts[i], x0, probe, B, K, first)
            s = (s ** 2 + kernel[1][i] ** 2 * c).sqrt()
        inflation.append(s / kernel[2][i])
        m, y_next = pinned(i + 1), path[i + 1]
        resid = (y_next - mean) * m
        sq = resid.flatten(2).pow(2).sum(2).to(torch.float64)
        n_pinned = m.flatten(2).sum(2).to(torch.float64)
        log_w = log_w + (-0.5 * sq / s[:, None] ** 2 - n_pinned * torch.log(s)[:, None])
        if kernel_variance == "anisotropic":
            log_w, mean = _anisotropic_correction(sde, score_fn, x, score, t_i, resid, m, mean, s, kernel[1][i], c,
                                                  log_w, generator)
        z = gaussian_like(mean, generator)
        x = mean + s.to(dtype).view((B, 1) + (1,) * len(shape)) * z
        if reference is not None:
            x[:, 0] = reference[i + 1]
        x = torch.where(m, y_next, x).reshape((B * K,) + shape)
        check_state(x, i, tx[i])
        ess = 1.0 / torch.softmax(log_w, 1).pow(2).sum(1)
        ess_trace.append(ess)
        low = ess < ess_threshold * K
        if bool(low.any()):
            idx = resample(log_w[low], generator)
            rows = torch.arange(B * K, device=device).reshape(B, K)
            rows[low] = (torch.nonzero(low).flatten() * K)[:, None] + idx
            rows = rows.flatten()
            x, x0 = x[rows], x0[rows]
            z = z.reshape((B * K,) + shape)[rows].view((B, K) + shape)
            log_w[low] = 0.0
        probe = (x0, z, s, (~m).to(dtype))
        bar.update(1)
    return x.view((B, K) + shape), log_w, torch.stack(ess_trace), torch.stack(inflation)


def _last_weighted_time(release: torch.Tensor, mask: torch.Tensor) -> Optional[float]:
    """The smallest release time of the known entries when every known entry is observed with noise (below
    it no entry is pinned, so no step carries a weight); None when some entry is noise-free or none is known."""
    known = release[mask]
    if known.numel() == 0 or not bool(torch.isfinite(known).all()):
        return None
    return float(known.min())


def _descent_grid(sde: SDE, t_last: float, eps: float, steps: int, device) -> torch.Tensor:
    """``steps`` + 1 times (float64) from t_last down to eps, geometric in the noise level sigma(t)/alpha(t).
    Below the last release the draw is unconditional sampling from a state at a small noise level, where the
    data's finest scales are resolved and the ancestral kernel's missing b^2 Cov[x_0 | x_t] narrows the draw
    unless the steps are fine.  One descent of the chosen draw costs one chain, not K particles times the passes,
    so it affords ``steps`` steps there (the passes' grid has 38 of 200 VP steps below sigma_e = 0.1)."""
    return geometric_times(sde, t_last, eps, steps + 1).to(device)


def _ancestral_descent(score_fn, sde: SDE, ts: torch.Tensor, x: torch.Tensor, generator, bar) -> torch.Tensor:
    """The ancestral kernel (``SDE.posterior_coeffs`` with Tweedie's x_0) from x (B, ...) at ts[0] down the
    decreasing grid ts (float64) to ts[-1]; no entry pinned."""
    a, b, std = (v.to(x.dtype) for v in sde.posterior_coeffs(ts[:-1], ts[1:]))
    tx = ts.to(x.dtype)
    for i in range(len(ts) - 1):
        x0 = tweedie_denoise(sde, score_fn, x, tx[i].expand(x.shape[0]))
        x = a[i] * x + b[i] * x0 + std[i] * gaussian_like(x, generator)
        check_state(x, i, tx[i])
        bar.update(1)
    return x


def smc_impute(score_fn, sde: SDE, x_known: torch.Tensor, mask: torch.Tensor, *, steps: int, eps: float,
               obs_std: Optional[torch.Tensor] = None, num_particles: int = 64, sweeps: int = SMC_SWEEPS,
               generator=None, progress: bool = True, denoise: bool = True, ess_threshold: float = 0.02,
               kernel_variance: str = "stein", record: Optional[dict] = None) -> torch.Tensor:
    """SMC imputation (particle Gibbs over ``sweeps`` passes); returns (B, ...): noise-free known entries equal
    to x_known, the others sampled.

    ``obs_std`` (like x_known, float; None = all 0): the noise std of each known entry.  An entry with noise
    c > 0 is pinned to its forward path only while sigma_e(t) >= c and sampled below; its release time is
    added to the grid, so a pass takes one more step per distinct noise level.  When every known entry is
    noisy, no step below the last release carries a weight: the passes stop there (the chain's state is the
    draw at that time; given it the forward paths above are independent of x_0, so the Gibbs argument holds)
    and the chosen draw descends once, ``steps`` ancestral steps geometric in sigma_e (``_descent_grid``), to
    eps.  ``kernel_variance``: "stein" (default) adds to the ancestral kernel's variance b^2 times the particles'
    mean posterior variance of x_0 (``_stein_posterior_variance``, no extra score evaluations); "anisotropic"
    adds, on top, the first-order anisotropic part of b^2 Cov[x_0 | x_t] per particle (``_anisotropic_correction``:
    one more score evaluation per step, so twice the evaluations); "posterior" keeps the forward posterior's
    variance alone (SMC-Diff's kernel; biased toward one mode at 200 steps, README).
    ``record`` receives ``ess``
    (the effective sample size after each step of every pass, before resampling, mean over conditions),
    ``resampled`` (steps at which any condition resampled), ``sweeps`` and ``moved``: per conditional pass,
    the fraction of conditions whose draw is not the reference particle (the chain's move rate),
    ``weighted_until`` (the passes' last time), ``descent_steps`` (0 when the passes reach eps) and
    ``kernel_inflation`` (the kernel's std over the forward posterior's after each step of every pass, mean over
    conditions)."""
    K = check_int("num_particles", num_particles)
    sweeps = check_int("sweeps", sweeps)
    ess_threshold = check_number("ess_threshold", ess_threshold, nonneg=True)
    check_choice("kernel_variance", kernel_variance, KERNEL_VARIANCES)
    if ess_threshold > 1:
        raise ValueError(f"ess_threshold must lie in [0, 1] (a fraction of num_particles), got {ess_threshold}")
    if sweeps > 1 and K < 2:
        raise ValueError(f"sweeps={sweeps} (particle Gibbs) needs num_particles >= 2, got {K}")
    B, device = x_known.shape[0], x_known.device
    c, release = _noise_and_release(sde, obs_std, x_known, mask, eps)
    ts = balanced_time_grid(sde, steps, eps, device)
    extra = release[torch.isfinite(release)]
    if extra.numel():  # each noisy entry is released exactly at its own time
        ts = torch.cat([ts, extra]).unique().flip(0)
    t_last = _last_weighted_time(release, mask)
    descent = None
    if t_last is not None:  # no weight below t_last: the passes stop there, one descent finishes the draw
        ts = ts[ts >= t_last]
        descent = _descent_grid(sde, t_last, eps, steps, device)
    shape = tuple(x_known.shape[1:])
    # particles live as (B, K, ...) views: the condition's path and pinned mask broadcast over K, no copies
    pinned = lambda j: (mask & (ts[j] >= release)).unsqueeze(1)  # noqa: E731 - (B, 1, ...) held at ts[j]
    y = torch.where(mask, x_known, torch.zeros_like(x_known))
    ess, inflation, moved, resampled, state, reference = [], [], [], 0, None, None
    rows = torch.arange(B, device=device)
    kernel = sde.posterior_coeffs(ts[:-1], ts[1:])  # float64 (a, b, std) of every step
    total = sweeps * (len(ts) - 1) + (0 if descent is None else len(descent) - 1)
    with progress_bar(range(total), progress, "impute[smc]") as bar:
        for sweep in range(sweeps):
            # each pass draws a fresh observation path: given x_0 the forward paths of the coordinates are
            # independent, so (fresh path, reference from the chain state) is a Gibbs step of the joint
            path = _observation_path(sde, ts, y, c, generator).unsqueeze(2)  # (L, B, 1, ...)
            if state is not None:
                reference = _reference_path(sde, ts, state, y, c, release, generator)
            x, log_w, trace, gain = _smc_sweep(score_fn, sde, ts, kernel, path, pinned, shape, K, generator,
                                               ess_threshold, reference, bar, kernel_variance)
            pick = torch.multinomial(torch.softmax(log_w, 1), 1, generator=generator).flatten()
            if reference is not None:
                moved.append(float((pick != 0).to(torch.float64).mean()))
            state = x[rows, pick]
            ess.extend(trace.mean(1).tolist())
            inflation.extend(gain.mean(1).tolist())
            resampled += int((trace < ess_threshold * K).any(1).sum())
        if descent is not None:
            state = _ancestral_descent(score_fn, sde, descent, state, generator, bar)
    if record is not None:
        record.update(ess=ess, resampled=resampled, num_particles=K, grid_steps=len(ts), sweeps=sweeps, moved=moved,
                      descent_steps=0 if descent is None else len(descent) - 1,
                      weighted_until=float(ts[-1]), kernel_inflation=inflation)
    x = final_denoise(sde, score_fn, state, eps) if denoise else state
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
        method: "smc" (default; options num_particles, sweeps, ess_threshold, denoise, kernel_variance: "stein",
            "anisotropic" (twice the evaluations) or "posterior"), "replacement"
            (options of the PC sampler: predictor, corrector, snr, ...) or "dps" (approximate baseline,
            ``sampling.dps``; option scale).
        steps: reverse-time steps (per pass for "smc": default 200, times 5 passes; else default sde.N);
            eps: final time (default sde.default_eps).
    Returns (B, ...) with the noise-free known entries equal to x_known, or (samples, SampleInfo); for "smc"
    ``info.extra`` holds ``ess`` (the effective sample size after each step of each pass, mean over
    conditions), ``resampled``, ``num_particles``, ``sweeps``, ``moved`` and ``kernel_inflation`` (see
    ``smc_impute``).
    """
    check_choice("method", method, IMPUTE_METHODS)
    score_fn, sde, data_shape, device = resolve_model(model, sde)
    mask = _check_inputs(x_known, mask, data_shape)
    obs_std = _check_noise(noise_std, x_known)
    if steps is None:
        steps = SMC_STEPS if method == "smc" else sde.N
    steps = check_int("steps", steps, minimum=2)
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
