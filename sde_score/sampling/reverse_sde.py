"""Reverse-time SDE integrated with torchsde (fixed-step or adaptive), Song et al. 2021 eq. 6."""
from __future__ import annotations

import warnings
from typing import Optional

import torch

from ..checks import ScoreFn, check_choice, check_number
from ..sdes import SDE, bcast
from .denoiser import final_denoise
from .methods import register_method
from .state import Callback, SamplerStep, check_state

SDE_SOLVERS = ("euler", "milstein", "srk")


class _ReverseInS(torch.nn.Module):
    """The reverse SDE in forward time s = T - t, in torchsde's flat (B, D) convention:
    dx = -[f - g^2 s](x, T - s) ds + g(T - s) dW_s (diagonal noise, g the same on every axis)."""

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, sde: SDE, score_fn: ScoreFn, shape, callback: Optional[Callback] = None) -> None:
        super().__init__()
        self.sde, self.rsde, self.shape = sde, sde.reverse(score_fn), tuple(shape)
        self.calls, self.callback = 0, callback

    def _t(self, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (self.sde.T - s).to(y.dtype).clamp(0, self.sde.T).expand(y.shape[0])

    def f(self, s, y):
        self.calls += 1
        t = self._t(s, y)
        if self.callback is not None:
            t0 = float(t[0])
            self.callback(SamplerStep(self.calls - 1, t0, float(self.sde.edm_sigma(torch.tensor([t0]).double())),
                                      y.reshape(self.shape)))
        drift, _ = self.rsde.sde(y.reshape(self.shape), t)
        check_state(drift, self.calls, self.sde.T - s)
        return -drift.reshape(y.shape)

    def g(self, s, y):
        return bcast(self.sde.diffusion(self._t(s, y)), y).expand_as(y)


@register_method("sde")
def sde_sample(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, steps: int, eps: float,
               generator: Optional[torch.Generator] = None, progress: bool = True,
               callback: Optional[Callback] = None, solver: str = "euler", adaptive: bool = False,
               rtol: float = 1e-3, atol: float = 1e-3, denoise: bool = True) -> torch.Tensor:
    """Integrate the reverse SDE from x_T = x at T to eps with ``torchsde.sdeint``: ``steps`` fixed
    steps, or adaptive steps (``adaptive=True``, tolerances ``rtol``/``atol``, starting from
    (T - eps)/steps).  The Brownian path is seeded from ``generator``; ``callback`` sees every drift
    evaluation.  Returns (B, ...)."""
    import torchsde

    check_choice("solver", solver, SDE_SOLVERS)
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=generator.device if generator else None))
    rev = _ReverseInS(sde, score_fn, x.shape, callback)
    y0 = x.reshape(x.shape[0], -1)
    span = sde.T - eps
    ts = torch.tensor([0.0, span], dtype=y0.dtype, device=y0.device)
    bm = torchsde.BrownianInterval(t0=ts[0], t1=ts[1], size=y0.shape, dtype=y0.dtype, device=y0.device,
                                   entropy=seed, levy_area_approximation="space-time" if solver == "srk" else "none")
    options = {"grad_free": True} if solver == "milstein" else None
    with warnings.catch_warnings():
        # torchsde warns about adaptive Euler with non-additive noise; ours is additive (g does
        # not depend on x) but is declared diagonal to avoid (B, D, D) diffusion matrices.
        warnings.filterwarnings("ignore", message="Numerical solution is not guaranteed")
        ys = torchsde.sdeint(rev, y0, ts, bm=bm, method=solver, dt=span / steps, adaptive=adaptive,
                             rtol=check_number("rtol", rtol, positive=True),
                             atol=check_number("atol", atol, positive=True), options=options)
    x = ys[-1].reshape(x.shape)
    return final_denoise(sde, score_fn, x, eps) if denoise else x
