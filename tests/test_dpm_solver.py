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


@pytest.mark.parametrize("sde_name", ["ve", "vp", "subvp"])
@pytest.mark.parametrize("order", [2, 3])
def test_gaussian_response_is_the_samplers_own_linear_map(sde_name, order):
    # on N(0, diag v) data the sampler maps x_T linearly; gaussian_response predicts the ratio of its output std to
    # the ideal end point's from the levels alone (no score calls), so it must agree with a run to round-off
    from sde_score.sampling.dpm_solver import gaussian_response
    from sde_score.sampling.schedules import sigma_schedule
    from sde_score.targets import GaussianMixture

    sde = get_sde(sde_name)
    v = torch.tensor([1e-3, 0.03, 0.5, 4.0], dtype=torch.float64)
    gauss = GaussianMixture([1.0], torch.zeros(1, 4, dtype=torch.float64), torch.diag(v)[None])
    levels = sigma_schedule(sde, 12, sde.default_eps, "log_snr")
    alpha_T = float(sde.alpha_sigma(torch.tensor([sde.T], dtype=torch.float64))[0][0])
    x = sample(gauss.score_fn(sde), sde, "dpm_solver", x_T=torch.full((1, 4), alpha_T, dtype=torch.float64),
               schedule=levels, order=order, progress=False)[0]  # x_hat_T = 1
    s0, s1 = levels[0], levels[-1]
    ratio = x * (v + s0 ** 2).sqrt() / (v / (v + s1 ** 2).sqrt())
    lams = torch.tensor([-math.log(s) for s in levels], dtype=torch.float64)
    predicted = gaussian_response(lams, v, order)
    assert torch.allclose(ratio, predicted, rtol=1e-9, atol=0), (ratio / predicted - 1)
    assert (predicted - 1).abs().max() > 1e-4  # 12 levels are not exact: the comparison is not trivial
    # and it is differentiable in the levels (what polishing a schedule needs)
    lams.requires_grad_(True)
    gaussian_response(lams, v, order).sum().backward()
    assert torch.isfinite(lams.grad).all() and lams.grad.abs().sum() > 0


def test_default_order_is_3m_from_20_levels_and_2m_below():
    # the default follows the measured crossover (README): 3M + corrector from ORDER3_FROM levels, 2M below
    from sde_score.sampling.dpm_solver import ORDER3_FROM

    target, sde = get_target("gmm16d"), get_sde("vp")
    run = lambda **kw: sample(target.score_fn(sde), sde, "dpm_solver", shape=(64, 16),  # noqa: E731
                              generator=torch.Generator().manual_seed(0), progress=False, **kw)
    assert ORDER3_FROM == 20
    assert torch.equal(run(steps=20), run(steps=20, order=3)) and not torch.equal(run(steps=20), run(steps=20, order=2))
    assert torch.equal(run(steps=19), run(steps=19, order=2))
    assert torch.equal(run(steps=11, multistep=False), run(steps=11, multistep=False, order=2))


@pytest.mark.parametrize("sde_name", ["ve", "vp", "subvp"])
def test_default_order_is_the_more_accurate_one_on_image_shaped_gaussian_directions(sde_name):
    # where the few-step samplers are hardest (image64: 60 of 64 directions 0.03 wide), the error that the
    # Gaussian response predicts crosses over as the default does: 3M + corrector is the closer at 20 log-SNR
    # levels (README: -0.25 / -0.55 / -0.55 against 2M's -0.66 / -0.83 / -2.57 nats), 2M at 10
    from sde_score.benchmarks import gaussian_response_gap
    from sde_score.sampling import default_order, sigma_schedule

    sde = get_sde(sde_name)
    for levels, better, worse in ((20, 3, 2), (10, 2, 3)):
        sigmas = sigma_schedule(sde, levels, sde.default_eps, "log_snr")
        gap = {order: abs(gaussian_response_gap("image64", sigmas, order)) for order in (2, 3)}
        assert default_order(levels) == better and gap[better] < gap[worse], (levels, gap)
