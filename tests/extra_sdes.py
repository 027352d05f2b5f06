"""An SDE defined outside the package, with only the four members a new SDE must state.

Imported by conftest.py so that it is registered before the tests are collected: every oracle test
parametrised over ``SDES.names()`` then runs on it too, unedited (issue 12's acceptance)."""
import math

import torch

from sde_score.sdes import SDE, register_sde


@register_sde("vp_const_test")
class ConstantBetaVPSDE(SDE):
    """VP SDE with constant beta: dx = -beta/2 x dt + sqrt(beta) dw, so alpha(t) = exp(-beta t / 2) and
    sigma(t)^2 = 1 - exp(-beta t) in closed form.  No discretisation, no inverse of sigma/alpha:
    the SDE base class supplies Euler-Maruyama and the bisection."""

    name = "vp_const_test"

    def __init__(self, beta: float = 12.0, N: int = 1000) -> None:
        super().__init__(N)
        self.beta = float(beta)

    @property
    def default_eps(self) -> float:
        return 1e-3

    @property
    def hparams(self) -> dict:
        return {"beta": self.beta, "N": self.N}

    def _drift_diffusion(self, x, t):
        return -0.5 * self.beta * x, torch.full_like(t, math.sqrt(self.beta))

    def _alpha_sigma(self, t):
        return torch.exp(-0.5 * self.beta * t), torch.sqrt(-torch.expm1(-self.beta * t))
