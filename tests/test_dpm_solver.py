"""DPM-Solver(++): its variants reach the exact mode weights, and its error falls at the order
it claims on a Gaussian, where the exact PF-ODE map is known."""
import math

import pytest
import torch

from sde_score import get_sde, get_target, sample
from sde_score.metrics import mode_weight_tv, tv_floor

from samplers_helpers import gaussian_ode_error


@pytest.mark.parametrize("opts", [dict(order=1), dict(order=3), dict(multistep=False, steps=11),
                                  dict(schedule="karras"), dict(schedule="time_uniform", steps=40)])
def test_dpm_solver_variants(opts):
    target, sde = get_target("ring8"), get_sde("subvp")
    x = sample(target.score_fn(sde), sde, "dpm_solver", shape=(4000, 2), generator=torch.Generator().manual_seed(2),
               progress=False, **opts)
    assert mode_weight_tv(target, x) < 4 * tv_floor(target, 4000)


@pytest.mark.parametrize("opts,order", [(dict(order=1, corrector=False), 1), (dict(order=2, corrector=False), 2),
                                        (dict(order=1), 2), (dict(order=2), 3)])
def test_dpm_solver_convergence_order(opts, order):
    # halving the log-SNR step divides the global error by about 2^order; the corrector adds one order
    # (measured slopes 1.0, 2.1, 2.2, 3.1 between 24 and 48 levels)
    e1, e2 = gaussian_ode_error(24, **opts), gaussian_ode_error(48, **opts)
    assert math.log2(e1 / e2) > order - 0.5, (e1, e2, math.log2(e1 / e2))


def test_dpm_solver_third_order_corrector_helps():
    # 3M is already high order on a Gaussian (slope ~4); the corrector still lowers its error at 24 levels
    assert gaussian_ode_error(24, order=3) < 0.5 * gaussian_ode_error(24, order=3, corrector=False)
