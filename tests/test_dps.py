"""DPS (the approximate baseline of ``impute`` / ``solve_inverse``): its guidance gradient is the one of the paper's
residual in the original space, and its bias on a hard condition where the SMC holds."""
import math

import pytest
import torch

from sde_score import get_sde, get_target, impute, solve_inverse
from sde_score.metrics import mean_log_prob, mode_weight_tv, tv_floor
from sde_score.sampling.dps import residual_gradient

from samplers_helpers import between_modes


def test_residual_gradient_in_svd_coordinates_is_the_original_spaces():
    """solve_inverse runs DPS in the SVD coordinates x' = V^T x with the residual weighted by S; the gradient it
    follows, rotated back, must be the gradient of ||y - A x0_hat(x)|| in x (an operator with unequal S)."""
    target, sde = get_target("gmm16d"), get_sde("vp")
    score_fn = target.score_fn(sde)
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(6, 16, generator=gen, dtype=torch.float64)
    U, S, Vh = torch.linalg.svd(A, full_matrices=True)
    x = torch.randn(5, 16, generator=gen, dtype=torch.float64) * 2
    y = torch.randn(5, 6, generator=gen, dtype=torch.float64)
    t = torch.full((5,), 0.4, dtype=torch.float64)
    # the original space, by hand
    xg = x.clone().requires_grad_(True)
    alpha, sigma = sde.alpha_sigma(t)
    x0 = (xg + sigma[:, None] ** 2 * score_fn(xg, t)) / alpha[:, None]
    expect, = torch.autograd.grad((y - x0 @ A.T).norm(dim=1).sum(), xg)
    # the rotated problem as solve_inverse sets it up
    y_rot = torch.zeros(5, 16, dtype=torch.float64)
    y_rot[:, :6] = (y @ U) / S
    weights = torch.cat([S, torch.zeros(10, dtype=torch.float64)]).expand(5, 16)
    _, grad_rot = residual_gradient(lambda xr, tt: score_fn(xr @ Vh, tt) @ Vh.T, sde, x @ Vh.T, t, y_rot, weights)
    torch.testing.assert_close(grad_rot @ Vh, expect)


def test_dps_is_biased_between_modes_where_the_smc_holds():
    """The hard condition of test_impute.py (between modes 0 and 2, exact split 0.5 / 0.5, VP, 500 steps; the SMC
    is within 3 floors + 0.01 there): DPS at the paper's step sizes lands far from the exact conditional, in
    mode weights or in log-density (measured: TV 0.145 / 0.25, gap -2.0 / -65 nats at zeta' = 0.1 / 1)."""
    (target, known, x), sde = between_modes(0, 2), get_sde("vp")
    cond = target.conditional(known, x)
    n = 200
    exact = cond.sample(n, torch.Generator().manual_seed(1), dtype=torch.float64)
    lp_exact, se_exact = mean_log_prob(cond, exact)
    bound = 3 * tv_floor(cond, n) + 0.01
    for scale in (0.1, 1.0):
        out, info = impute(target.score_fn(sde), x[None].expand(n, 16).float().clone(), known, sde, "dps",
                           steps=500, scale=scale, generator=torch.Generator().manual_seed(0), progress=False,
                           return_info=True)
        assert info.nfe == 500 and torch.equal(out[:, known], x[known].float().expand(n, 8))
        xu = out[:, ~known].double()
        lp, se = mean_log_prob(cond, xu)
        tv, gap, gap_se = mode_weight_tv(cond, xu), lp - lp_exact, math.hypot(se, se_exact)
        assert tv > bound and gap < -4 * gap_se, (scale, tv, bound, gap, gap_se)


def test_dps_is_reproducible_runs_solve_inverse_and_checks_its_scale():
    target, sde = get_target("gmm16d"), get_sde("ve")
    A = torch.randn(6, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64) / 4
    y = (target.sample(3, torch.Generator().manual_seed(2), dtype=torch.float64) @ A.T).float()
    opts = dict(method="dps", data_shape=(16,), steps=40, scale=0.3, progress=False)
    a = solve_inverse(target.score_fn(sde), y, A, sde, generator=torch.Generator().manual_seed(0), **opts)
    b = solve_inverse(target.score_fn(sde), y, A, sde, generator=torch.Generator().manual_seed(0), **opts)
    assert a.shape == (3, 16) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="scale must be > 0"):
        solve_inverse(target.score_fn(sde), y, A, sde, **dict(opts, scale=0.0))
