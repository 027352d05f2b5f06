"""A new SDE states four members and gets the rest: the defaults of ``SDE`` checked against the closed
forms of the constant-beta VP SDE (tests/extra_sdes.py), which the shared oracle tests also run on."""
import math

import torch

import sde_score
from extra_sdes import ConstantBetaVPSDE


def test_registered_and_in_every_oracle_list():
    assert "vp_const_test" in sde_score.SDES.names()
    sde = sde_score.get_sde("vp_const_test", beta=8.0)
    assert isinstance(sde, ConstantBetaVPSDE) and sde.with_N(50).hparams == {"beta": 8.0, "N": 50}


def test_default_inverse_of_sigma_over_alpha_is_the_closed_form():
    sde = ConstantBetaVPSDE(beta=12.0)
    t = torch.linspace(1e-3, 1.0, 50, dtype=torch.float64)
    s = sde.edm_sigma(t)
    # sigma/alpha = sqrt(exp(beta t) - 1)  =>  t = log(1 + s^2) / beta
    torch.testing.assert_close(sde.t_from_edm_sigma(s), torch.log1p(s ** 2) / 12.0, rtol=1e-12, atol=1e-14)


def test_default_discretisation_is_euler_maruyama_and_diffusion_is_public():
    sde = ConstantBetaVPSDE(beta=12.0, N=100)
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = torch.full((5,), 0.4, dtype=torch.float64)
    f, G = sde.discretize(x, t)
    torch.testing.assert_close(f, -0.5 * 12.0 * x / 100)
    torch.testing.assert_close(G, torch.full((5,), math.sqrt(12.0 / 100), dtype=torch.float64))
    torch.testing.assert_close(sde.diffusion(t), torch.full((5,), math.sqrt(12.0), dtype=torch.float64))
