"""The probability-flow ODE (Song et al. 2021, eq. 13) and its solvers.

One definition of the PF-ODE drift (``SDE.reverse(..., probability_flow=True)``) serves the ODE
sampler, :func:`ode_encode` and the likelihood.  The ODE can be integrated in t (as the paper's
code does), in the EDM noise level sigma_e = sigma(t)/alpha(t), or in u = log sigma_e.  For every
linear SDE du/dt = g(t)^2 / (2 sigma(t)^2), so dx/du = (f - g^2 s / 2) * 2 sigma^2 / g^2 and
dx/dsigma_e = dx/du / sigma_e.  On the exact mixtures none of the three needs clearly fewer
steps than t (measured by experiments/bench_likelihood.py), so t stays the default.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import torch

from ..checks import ScoreFn, check_choice, check_number
from ..sdes import SDE, bcast
from .denoiser import final_denoise
from .methods import register_method
from .state import Callback, SamplerStep, check_state

TIME_VARIABLES = ("t", "sigma", "log_sigma")
TORCH_SOLVERS = ("dopri5", "bosh3", "adaptive_heun", "dopri8")
SOLVERS = TORCH_SOLVERS + ("rk45",)


class PFODE:
    """dx/dv of the probability-flow ODE in the integration variable v ('t', 'sigma', 'log_sigma')."""

    def __init__(self, sde: SDE, score_fn: ScoreFn, time_variable: Optional[str] = None,
                 callback: Optional[Callback] = None) -> None:
        self.sde = sde
        self.rsde = sde.reverse(score_fn, probability_flow=True)
        # None: the SDE's own choice (a noise table's piecewise-constant beta(t) has a kink at every grid
        # point, which an adaptive solver in t must step through; sigma never sees them)
        time_variable = sde.ode_time_variable if time_variable is None else time_variable
        self.time_variable = check_choice("time_variable", time_variable, TIME_VARIABLES)
        self.calls, self.callback = 0, callback

    def to_var(self, t: float) -> float:
        if self.time_variable == "t":
            return float(t)
        s = float(self.sde.edm_sigma(torch.tensor([float(t)], dtype=torch.float64)))
        return s if self.time_variable == "sigma" else math.log(s)

    def to_t(self, v: torch.Tensor) -> torch.Tensor:
        if self.time_variable == "t":
            return v
        u = v.double()
        s = u if self.time_variable == "sigma" else torch.exp(u)
        return self.sde.t_from_edm_sigma(s).to(v.dtype)

    def __call__(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # clamp: u -> t round-off can land a hair outside [0, T] at the ends of the span
        t = self.to_t(v.to(x.dtype)).reshape(()).expand(x.shape[0]).clamp(0, self.sde.T)
        if self.callback is not None:
            t0 = float(t[0])
            self.callback(SamplerStep(self.calls, t0, float(self.sde.edm_sigma(torch.tensor([t0]).double())), x))
        drift, _ = self.rsde.sde(x, t)
        self.calls += 1
        check_state(drift, self.calls, t[0])
        if self.time_variable == "t":
            return drift
        g = self.sde.diffusion(t)
        alpha, sigma = self.sde.alpha_sigma(t)
        dt_du = 2 * sigma ** 2 / g ** 2
        if self.time_variable == "sigma":  # du/dsigma_edm = 1 / sigma_edm
            dt_du = dt_du * alpha / sigma
        return drift * bcast(dt_du, x)


def _per_sample_rms(err: torch.Tensor) -> torch.Tensor:
    """Largest per-sample RMS of the scaled local error.  torchdiffeq's default RMS over the whole
    batch lets single samples drift far past the tolerance (a batch of B independent ODEs is
    controlled as one); this controls each sample as if it were solved alone."""
    return err.reshape(err.shape[0], -1).pow(2).mean(1).sqrt().max() if err.dim() > 1 else err.pow(2).mean().sqrt()


def integrate(func: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], y0: torch.Tensor,
              v0: float, v1: float, *, solver: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-5
              ) -> Tuple[torch.Tensor, int]:
    """Integrate dy/dv = func(v, y) from v0 to v1; returns (y(v1), number of func calls).
    ``func`` checks its own output (it knows the SDE time, the solver does not).

    ``solver`` is a torchdiffeq adaptive method (stays on y's device) or ``"rk45"``
    (scipy.integrate.solve_ivp on CPU float64, the paper's code path, kept for comparison).
    """
    check_choice("solver", solver, SOLVERS)
    rtol = check_number("rtol", rtol, positive=True)
    atol = check_number("atol", atol, positive=True)
    calls = [0]
    lo, hi = min(v0, v1), max(v0, v1)

    def counted(v, y):
        calls[0] += 1
        # the first-step heuristic (Hairer et al., Sec. II.4) probes at v0 + h0 with h0 unbounded by the
        # span; such probes only size the first step, so they are evaluated at the span's end
        return func(v.clamp(lo, hi), y)

    if solver == "rk45":
        from scipy.integrate import solve_ivp

        shape, dtype, device = y0.shape, y0.dtype, y0.device

        def f_np(v, y):
            y_t = torch.from_numpy(y).reshape(shape).to(device=device, dtype=dtype)
            return counted(torch.tensor(v, dtype=dtype, device=device), y_t).detach().cpu().double().numpy().ravel()

        sol = solve_ivp(f_np, (v0, v1), y0.detach().cpu().double().numpy().ravel(), rtol=rtol, atol=atol,
                        method="RK45")
        if not sol.success:
            raise FloatingPointError(f"scipy RK45 failed: {sol.message}")
        return torch.from_numpy(sol.y[:, -1]).reshape(shape).to(device=device, dtype=dtype), calls[0]

    from torchdiffeq import odeint

    vs = torch.tensor([v0, v1], dtype=torch.float64 if y0.dtype == torch.float64 else torch.float32,
                      device=y0.device)
    # step_t: land on v1 exactly; by default torchdiffeq steps past it and interpolates back, which
    # evaluates the model outside [eps, T] (at t <= 0 a sigma-scaled network returns inf)
    y = odeint(counted, y0, vs, method=solver, rtol=rtol, atol=atol,
               options={"norm": _per_sample_rms, "step_t": vs[1:]})[-1]
    return y, calls[0]


@register_method("ode")
def ode_sample(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, eps: float,
               generator: Optional[torch.Generator] = None, progress: bool = True,
               callback: Optional[Callback] = None, solver: str = "dopri5", rtol: float = 1e-5,
               atol: float = 1e-5, time_variable: Optional[str] = None, denoise: bool = True) -> torch.Tensor:
    """Sample by integrating the PF-ODE from x_T = x at T down to eps (adaptive steps; ``callback``
    sees every drift evaluation, stages included), then, with ``denoise``, Tweedie's posterior mean
    at eps.  ``generator`` is unused (deterministic given x_T).  Returns (B, ...)."""
    ode = PFODE(sde, score_fn, time_variable, callback)
    x, _ = integrate(ode, x, ode.to_var(sde.T), ode.to_var(eps), solver=solver, rtol=rtol, atol=atol)
    return final_denoise(sde, score_fn, x, eps) if denoise else x
