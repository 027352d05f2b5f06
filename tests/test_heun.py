"""EDM's Heun sampler: stochastic churn keeps the mode weights; its error on a Gaussian is its own
second-order truncation."""
import math

import torch

from sde_score import get_sde, get_target, sample
from sde_score.metrics import mode_weight_tv, tv_floor

from samplers_helpers import gaussian_ode_error


def test_heun_churn():
    target, sde = get_target("ring8"), get_sde("vp")
    x = sample(target.score_fn(sde), sde, "heun", steps=30, churn=10.0, shape=(4000, 2),
               generator=torch.Generator().manual_seed(3), progress=False)
    assert mode_weight_tv(target, x) < 4 * tv_floor(target, 4000)


def test_heun_error_is_its_own_second_order_truncation():
    # Heun's samples of a Gaussian are a linear map of x_T, so its error needs no sampling statistics:
    # at 10 levels (19 NFE) it stretches the std by 32 % here (19-28 % for variances 0.09-1: the
    # covariance misses of test_fast_samplers_*); the stretch falls at second order with the number
    # of levels (measured: 10 / 20 / 40 levels 0.32 / 0.064 / 0.014, slope 2.2)
    e10, e20, e40 = (gaussian_ode_error(n, "heun", relative=True) for n in (10, 20, 40))
    assert e10 > 0.15
    assert math.log2(e20 / e40) > 1.5, (e20, e40)


def test_heun_on_an_extreme_vp_sde():
    """VP with beta_max = 100 has sigma_e(T) ~ 7e10: karras levels above 1e4 and the trapezoid on the first
    step gave absmax 1.8e3 and mode TV 0.10 (floor 0.016 at n = 4000); the trapezoid alone 0.64."""
    target, sde = get_target("ring8"), get_sde("vp", beta_max=100.0)
    n = 4000
    x, info = sample(target.score_fn(sde), sde, "heun", shape=(n, 2), steps=18, return_info=True,
                     generator=torch.Generator().manual_seed(0), progress=False)
    assert info.nfe == 2 * 18 - 2  # the first step is Euler
    assert x.abs().max() < 8
    # 2 x floor: at beta_max = 20 the same 18 levels give 0.016, Heun's own truncation at the floor
    assert mode_weight_tv(target, x) < 2 * tv_floor(target, n)
