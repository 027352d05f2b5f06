"""DPM-Solver++ (Lu et al. 2022): exponential integrators in lambda = -log sigma_e on the data
prediction D, in scaled coordinates (``denoiser``), every SDE.

With x_hat = x / alpha and lambda = -log sigma_e the PF-ODE is dx_hat/dlambda = D(lambda) - x_hat
(times sigma_e): each update integrates it exactly for a polynomial D through earlier denoiser values.
- multistep (orders 1-3; 2M = DPM-Solver++(2M)): the polynomial through this and earlier levels;
- corrector (multistep, on by default): once D is known at the new level (needed for the next step
  anyway), redo the last step with the polynomial through that node too: one order higher at no
  extra NFE (the UniC idea of UniPC, Zhao et al. 2023);
- single-step (DPM-Solver-2): a midpoint in lambda.
By default 3M + corrector from ``ORDER3_FROM`` (20) levels, 2M + corrector below (``default_order``).
``gaussian_response`` runs the same multistep update on Gaussian data, where it is a linear map of x_T.
The last level jumps to sigma_e = 0 with D itself: the exact posterior mean.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple, Union

import torch

from ..checks import ScoreFn, check_int
from ..sdes import SDE
from .denoiser import Denoiser
from .methods import register_method
from .state import Callback, SamplerStep, check_state, progress_bar

Node = Tuple[float, torch.Tensor]  # (lambda, D at that level)


def _exp_integrator_step(x: torch.Tensor, h: Union[float, torch.Tensor], derivs: List[torch.Tensor]) -> torch.Tensor:
    """Exact integral of dx/dlam = D(lam) - x over a step h with D(lam_i + tau) Taylor-expanded to
    D + tau D' + tau^2/2 D'':  x e^-h + c1 D + c2 D' + c3 D'', where c_k = int_0^h e^-(h-tau) tau^(k-1)
    / (k-1)! dtau: c1 = 1 - e^-h, c2 = h - c1, c3 = (h^2 - 2h + 2 c1) / 2."""
    if torch.is_tensor(h):  # levels as tensors (gaussian_response differentiates through them)
        c1, decay = -torch.expm1(-h), torch.exp(-h)
    else:
        c1, decay = -math.expm1(-h), math.exp(-h)
    out = decay * x + c1 * derivs[0]
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


class _Multistep:
    """The multistep update and its history of (lambda, D) nodes: ``advance`` steps from one level to the next."""

    def __init__(self, order: int, corrector: bool) -> None:
        self.order, self.corrector = order, corrector
        self.history: List[Node] = []
        self.x_start: Optional[torch.Tensor] = None

    def advance(self, x: torch.Tensor, lam, d_cur: torch.Tensor, lam_next) -> torch.Tensor:
        """x at level lam (where D is d_cur) to the level lam_next; first corrects the step that led to lam."""
        if self.corrector and self.history:
            x = _corrector_update(self.x_start, self.history, (lam, d_cur), self.order)
        self.history = (self.history + [(lam, d_cur)])[-3:]
        self.x_start = x
        return _multistep_update(x, lam_next - lam, self.history, self.order)


def gaussian_response(lams: torch.Tensor, variances: torch.Tensor, order: int = 3,
                      corrector: bool = True) -> torch.Tensor:
    """The multistep solver's error on Gaussian data, per direction: data N(0, v) along each of ``variances`` (V,),
    levels sigma_e = exp(-lams) (K,) (increasing lambda, a tensor that may require grad).  On such data the solver
    is a linear map of x_T; returns (V,) the std of its samples over the std of the ideal end point (exact p at
    the last level, then its Tweedie step: v / sqrt(v + sigma_K^2)); 1 is exact.  A direction of ratio r costs
    (r^2 - 1) / 2 nats of mean log-density (experiments/linear_response.py sums that over a mixture's directions)."""
    v = variances.to(torch.float64)
    x = torch.ones_like(v)  # x_hat_T = 1 stands for a draw of std sqrt(v + sigma_0^2)
    solver = _Multistep(order, corrector)
    for i in range(len(lams) - 1):
        x = solver.advance(x, lams[i], v / (v + torch.exp(-2 * lams[i])) * x, lams[i + 1])
    s2_end = torch.exp(-2 * lams[-1])
    out = v / (v + s2_end) * x
    return out * (v + torch.exp(-2 * lams[0])).sqrt() / (v / (v + s2_end).sqrt())


def _singlestep_update(D: Denoiser, x: torch.Tensor, lam: float, h: float, d_cur: torch.Tensor) -> torch.Tensor:
    """DPM-Solver-2: a first-order half step to the midpoint in lambda, then the full step with D there."""
    s_mid = math.exp(-(lam + 0.5 * h))
    u = _exp_integrator_step(x, 0.5 * h, [d_cur])
    return _exp_integrator_step(x, h, [D(u, s_mid)])


# From this many levels the default multistep order is 3, below it 2.  Measured against the ideal end point with
# exact scores (ring8 / gmm16d / image64 x VE / VP / sub-VP, 5000 samples, README): at 20 levels 3M + corrector is
# closer than 2M + corrector on 7 of 9 (gmm16d 2.2x, image64 1.5-3.7x; ring8 VP and sub-VP worse), and 2x closer to
# the PF-ODE solution on the digits UNet; at 10-15 levels 3M overshoots on the image-like target (10 levels: -4.9 /
# -7.7 / -140 nats against 2M's -1.3 / -0.6 / -14), its extrapolation over the long steps being the larger error.
ORDER3_FROM = 20


def default_order(levels: int, multistep: bool = True) -> int:
    """The order ``dpm_solver`` uses when none is given: 3 on ``ORDER3_FROM`` levels or more (multistep), else 2."""
    return 3 if multistep and levels >= ORDER3_FROM else 2


@register_method("dpm_solver", default_steps=20, default_schedule="log_snr")
def dpm_solver_sample(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, sigmas: List[float],
                      generator: Optional[torch.Generator] = None, progress: bool = True,
                      callback: Optional[Callback] = None, order: Optional[int] = None, multistep: bool = True,
                      corrector: Optional[bool] = None) -> torch.Tensor:
    """DPM-Solver++ (data prediction) on the noise levels ``sigmas``, from x_T at sigmas[0].

    multistep: NFE = len(sigmas); single-step (``multistep=False``, order 2): NFE = 2 (len - 1) + 1.
    order: None is ``default_order(len(sigmas), multistep)``: 3 from ``ORDER3_FROM`` levels, else 2.
    corrector: multistep only, on by default (``False`` gives plain DPM-Solver++).  ``generator`` is
    unused (the solver is deterministic given x_T)."""
    order = default_order(len(sigmas), multistep) if order is None else check_int("order", order, minimum=1)
    if order > 3 or (not multistep and order != 2):
        raise ValueError(f"order must be 1, 2 or 3 (multistep) or 2 (single-step), got {order}")
    corrector = multistep if corrector is None else bool(corrector)
    if corrector and not multistep:
        raise ValueError("corrector=True needs multistep=True (the corrector reuses the next step's D)")
    steps = len(sigmas)
    lams = [-math.log(s) for s in sigmas]
    D = Denoiser(sde, score_fn)
    x = D.to_scaled(x)
    solver = _Multistep(order, corrector)
    for i in progress_bar(range(steps - 1), progress, "dpm_solver"):
        h = lams[i + 1] - lams[i]
        d_cur = D(x, sigmas[i])
        if callback is not None:
            callback(SamplerStep(i, float(D.t(sigmas[i], x)[0]), sigmas[i], D.to_model_space(x, sigmas[i]), d_cur))
        if not multistep:
            x = _singlestep_update(D, x, lams[i], h, d_cur)
        else:
            x = solver.advance(x, lams[i], d_cur, lams[i + 1])
        check_state(x, i, D.t(sigmas[i + 1], x)[0])
    d_cur = D(x, sigmas[-1])
    if callback is not None:
        callback(SamplerStep(steps - 1, float(D.t(sigmas[-1], x)[0]), sigmas[-1], D.to_model_space(x, sigmas[-1]),
                             d_cur))
    return d_cur
