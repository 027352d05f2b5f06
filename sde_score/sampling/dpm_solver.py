"""DPM-Solver++ (Lu et al. 2022): exponential integrators in lambda = -log sigma_e on the data
prediction D, in scaled coordinates (``denoiser``), every SDE.

With x_hat = x / alpha and lambda = -log sigma_e the PF-ODE is dx_hat/dlambda = D(lambda) - x_hat
(times sigma_e): each update integrates it exactly for a polynomial D through earlier denoiser values.
- multistep (orders 1-3; 2M = DPM-Solver++(2M)): the polynomial through this and earlier levels;
- corrector (multistep, on by default): once D is known at the new level (needed for the next step
  anyway), redo the last step with the polynomial through that node too: one order higher at no
  extra NFE (the UniC idea of UniPC, Zhao et al. 2023);
- single-step (DPM-Solver-2): a midpoint in lambda.
The last level jumps to sigma_e = 0 with D itself: the exact posterior mean.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch

from ..checks import ScoreFn, check_int
from ..sdes import SDE
from .denoiser import Denoiser
from .methods import register_method
from .state import Callback, SamplerStep, check_state, progress_bar

Node = Tuple[float, torch.Tensor]  # (lambda, D at that level)


def _exp_integrator_step(x: torch.Tensor, h: float, derivs: List[torch.Tensor]) -> torch.Tensor:
    """Exact integral of dx/dlam = D(lam) - x over a step h with D(lam_i + tau) Taylor-expanded to
    D + tau D' + tau^2/2 D'':  x e^-h + c1 D + c2 D' + c3 D'', where c_k = int_0^h e^-(h-tau) tau^(k-1)
    / (k-1)! dtau: c1 = 1 - e^-h, c2 = h - c1, c3 = (h^2 - 2h + 2 c1) / 2."""
    c1 = -math.expm1(-h)
    out = math.exp(-h) * x + c1 * derivs[0]
    if len(derivs) > 1:
        out = out + (h - c1) * derivs[1]
    if len(derivs) > 2:
        out = out + 0.5 * (h * h - 2 * h + 2 * c1) * derivs[2]
    return out


def _taylor_at(lams: List[float], Ds: List[torch.Tensor]) -> List[torch.Tensor]:
    """D, dD/dlam, d2D/dlam2 at lams[0] of the polynomial through up to three (lam, D) nodes
    (Newton divided differences on a non-uniform grid; nodes in any order after the first)."""
    if len(Ds) == 1:
        return [Ds[0]]
    d01 = (Ds[1] - Ds[0]) / (lams[1] - lams[0])
    if len(Ds) == 2:
        return [Ds[0], d01]
    d12 = (Ds[2] - Ds[1]) / (lams[2] - lams[1])
    d012 = (d12 - d01) / (lams[2] - lams[0])
    return [Ds[0], d01 + d012 * (lams[0] - lams[1]), 2 * d012]


def _multistep_update(x: torch.Tensor, h: float, history: List[Node], order: int) -> torch.Tensor:
    """Step h in lambda from the newest node, with D's polynomial through the last ``order`` nodes."""
    nodes = history[::-1][:min(order, len(history))]
    return _exp_integrator_step(x, h, _taylor_at([lam for lam, _ in nodes], [d for _, d in nodes]))


def _corrector_update(x_start: torch.Tensor, history: List[Node], new: Node, order: int) -> torch.Tensor:
    """Redo the last step (from x_start at history[-1]) with the polynomial through its start, its end
    ``new`` and the node before its start."""
    nodes = [history[-1], new] + history[-2:-1]
    derivs = _taylor_at([lam for lam, _ in nodes], [d for _, d in nodes])
    return _exp_integrator_step(x_start, new[0] - history[-1][0], derivs[:order + 1])


def _singlestep_update(D: Denoiser, x: torch.Tensor, lam: float, h: float, d_cur: torch.Tensor) -> torch.Tensor:
    """DPM-Solver-2: a first-order half step to the midpoint in lambda, then the full step with D there."""
    s_mid = math.exp(-(lam + 0.5 * h))
    u = _exp_integrator_step(x, 0.5 * h, [d_cur])
    return _exp_integrator_step(x, h, [D(u, s_mid)])


@register_method("dpm_solver", default_steps=20, default_schedule="log_snr")
def dpm_solver_sample(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, sigmas: List[float],
                      generator: Optional[torch.Generator] = None, progress: bool = True,
                      callback: Optional[Callback] = None, order: int = 2, multistep: bool = True,
                      corrector: Optional[bool] = None) -> torch.Tensor:
    """DPM-Solver++ (data prediction) on the noise levels ``sigmas``, from x_T at sigmas[0].

    multistep: NFE = len(sigmas); single-step (``multistep=False``, order 2): NFE = 2 (len - 1) + 1.
    corrector: multistep only, on by default (``False`` gives plain DPM-Solver++).  ``generator`` is
    unused (the solver is deterministic given x_T)."""
    order = check_int("order", order, minimum=1)
    if order > 3 or (not multistep and order != 2):
        raise ValueError(f"order must be 1, 2 or 3 (multistep) or 2 (single-step), got {order}")
    corrector = multistep if corrector is None else bool(corrector)
    if corrector and not multistep:
        raise ValueError("corrector=True needs multistep=True (the corrector reuses the next step's D)")
    steps = len(sigmas)
    lams = [-math.log(s) for s in sigmas]
    D = Denoiser(sde, score_fn)
    x = D.to_scaled(x)
    history: List[Node] = []
    x_start = x
    for i in progress_bar(range(steps - 1), progress, "dpm_solver"):
        h = lams[i + 1] - lams[i]
        d_cur = D(x, sigmas[i])
        if callback is not None:
            callback(SamplerStep(i, float(D.t(sigmas[i], x)[0]), sigmas[i], D.to_model_space(x, sigmas[i]), d_cur))
        if not multistep:
            x = _singlestep_update(D, x, lams[i], h, d_cur)
        else:
            if corrector and history:
                x = _corrector_update(x_start, history, (lams[i], d_cur), order)
            history = (history + [(lams[i], d_cur)])[-3:]
            x_start = x
            x = _multistep_update(x, h, history, order)
        check_state(x, i, D.t(sigmas[i + 1], x)[0])
    d_cur = D(x, sigmas[-1])
    if callback is not None:
        callback(SamplerStep(steps - 1, float(D.t(sigmas[-1], x)[0]), sigmas[-1], D.to_model_space(x, sigmas[-1]),
                             d_cur))
    return d_cur
