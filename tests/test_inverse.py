"""solve_inverse: the SVD reduction of a linear inverse problem (noise-free or noisy) to imputation, against the
exact posterior of a mixture (``GaussianMixture.posterior``)."""
import math

import pytest
import torch

from sde_score import GaussianMixture, get_sde, get_target, impute, solve_inverse
from sde_score.metrics import mean_log_prob, mode_weight_tv, tv_floor

from samplers_helpers import assert_mode_moments


def _image_target():
    g = get_target("gmm16d")
    return GaussianMixture(g.weights, g.means, g.covs, data_shape=(1, 4, 4))


def _pool2x2() -> torch.Tensor:
    """2 x 2 average pooling of a (1, 4, 4) image: super-resolution's observation, (4, 16)."""
    A = torch.zeros(4, 16, dtype=torch.float64)
    for bi in range(2):
        for bj in range(2):
            for di in range(2):
                for dj in range(2):
                    A[bi * 2 + bj, (2 * bi + di) * 4 + 2 * bj + dj] = 0.25
    return A


@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_super_resolution_matches_the_exact_posterior(sde_name):
    """A low-resolution observation of a draw: its posterior is one component (weights 0/0/0/1), whose mean and
    covariance on the plane A x = y the samples must reproduce (4.5 SE), exactly satisfying A x = y."""
    target, A, sde = _image_target(), _pool2x2(), get_sde(sde_name)
    y = A @ target.sample(1, torch.Generator().manual_seed(1), dtype=torch.float64).reshape(16)
    post = target.posterior(A, y)
    n = 1000
    x = solve_inverse(target.score_fn(sde), y[None].expand(n, 4).float(), A, sde, data_shape=(1, 4, 4), steps=300,
                      num_particles=8, sweeps=1, generator=torch.Generator().manual_seed(0), progress=False)
    assert x.shape == (n, 1, 4, 4)
    assert (x.reshape(n, 16).double() @ A.T - y).abs().max() < 1e-5
    assert post.distance(x.double()).max() < 1e-5
    assert_mode_moments(post.latent, post.coordinates(x.double()), n_se=4.5)


def test_operator_objects_and_matrices_give_the_same_samples():
    target, A, sde = _image_target(), _pool2x2(), get_sde("vp")

    class Pool:
        def A(self, x):
            return torch.nn.functional.avg_pool2d(x, 2).flatten(1)

    y = (A @ target.sample(2, torch.Generator().manual_seed(3), dtype=torch.float64).reshape(2, 16).T).T.float()
    opts = dict(data_shape=(1, 4, 4), steps=30, num_particles=4, progress=False)
    a = solve_inverse(target.score_fn(sde), y, A, sde, generator=torch.Generator().manual_seed(0), **opts)
    b = solve_inverse(target.score_fn(sde), y, Pool(), sde, generator=torch.Generator().manual_seed(0), **opts)
    torch.testing.assert_close(a, b)


def _colorize() -> torch.Tensor:
    """The channel mean of a (3, 2, 2) image: colorization's observation, (4, 12)."""
    A = torch.zeros(4, 12, dtype=torch.float64)
    for p in range(4):
        A[p, [p, 4 + p, 8 + p]] = 1 / 3
    return A


def _operator(name: str):
    g = get_target("gmm16d")
    if name == "colorize":  # gmm16d's first 12 coordinates as a (3, 2, 2) colour image
        return GaussianMixture(g.weights, g.means[:, :12], g.covs[:, :12, :12], data_shape=(3, 2, 2)), _colorize()
    if name == "pool":
        return _image_target(), _pool2x2()
    return _image_target(), torch.randn(6, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64) / 4


@pytest.mark.parametrize("op,noise_std,sde_name", [
    ("colorize", 0.5, "vp"), ("colorize", 0.1, "ve"), ("pool", 0.1, "vp"), ("pool", 0.5, "ve"),
    ("projection", 0.5, "vp"), ("projection", 0.1, "ve")])
def test_noisy_inverse_problems_match_the_exact_posterior(op, noise_std, sde_name):
    """y = A x + noise_std z for a draw x, A colorization / 2 x 2 pooling / a random projection: mode-weight TV
    within 3 floors + 0.01 and the mean exact log-density of the samples within 4 standard errors of exact
    draws'.  Noisy entries are released from their forward path at the time their noise level is reached, so
    they are sampled, not fixed.  Observations between two modes, with noise, are measured in
    experiments/bench_impute_hard.py --noise-std."""
    target, A = _operator(op)
    sde, n = get_sde(sde_name), 400
    x0 = target.sample(1, torch.Generator().manual_seed(5), dtype=torch.float64).reshape(-1)
    y = A @ x0 + noise_std * torch.randn(A.shape[0], generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    post = target.posterior(A, y, noise_std)
    x = solve_inverse(target.score_fn(sde), y[None].expand(n, -1).float(), A, sde, noise_std=noise_std,
                      data_shape=target.data_shape, sweeps=2, generator=torch.Generator().manual_seed(0),
                      progress=False)  # the default 64 particles and 200 steps per pass; 2 passes (a draw's y)
    x = x.double()
    tv, floor = mode_weight_tv(post, x), tv_floor(post, n)
    assert tv <= 3 * floor + 0.01, (tv, floor, post.weights)
    lp, se = mean_log_prob(post, x)
    lp_exact, se_exact = mean_log_prob(post, post.sample(n, torch.Generator().manual_seed(1), dtype=torch.float64))
    assert abs(lp - lp_exact) < 4 * math.hypot(se, se_exact), (lp - lp_exact, math.hypot(se, se_exact))
    resid = (x.reshape(n, -1) @ A.T - y).std(0)  # the samples' misfit is the noise's scale, not 0
    assert bool((resid > 0.2 * noise_std).all() and (resid < 3 * noise_std).all()), resid


def test_impute_with_noisy_entries_resamples_them():
    """A noisy known entry is sampled (its posterior spread is below the noise, not 0); noise-free ones are kept.
    One 2-D Gaussian component: x_1 known exactly, x_0 observed with noise 0.3: exact posterior of x_0 by hand.
    At the default 200 steps per pass: the SMC kernel's variance includes the particles' posterior variance of
    x_0 (Stein), without which the released entry came out too narrow (sd ratio VP / VE / sub-VP 0.931 / 0.973 /
    0.927 at n = 8000, 4 SE 0.032; 1000 steps per pass were needed; with it 0.986 / 1.012 / 1.012; the test's
    4 SE at n = 2000 is 0.063).  With a noise-free entry the
    weights go on to eps, so there is no single descent below the release (next test)."""
    target = GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.6], [0.6, 1.0]]])
    sde, n = get_sde("vp"), 2000
    x_known = torch.tensor([[0.8, 0.5]]).expand(n, 2).clone()
    noise = torch.tensor([0.3, 0.0])
    out = impute(target.score_fn(sde), x_known, torch.tensor([True, True]), sde, noise_std=noise,
                 num_particles=4, generator=torch.Generator().manual_seed(0), progress=False).double()
    assert torch.equal(out[:, 1], x_known[:, 1].double())
    # prior of x_0 given x_1 = 0.5: N(0.3, 0.64); with y_0 = 0.8 observed with var 0.09: Gaussian posterior
    prec = 1 / 0.64 + 1 / 0.09
    mean, sd = (0.3 / 0.64 + 0.8 / 0.09) / prec, prec ** -0.5
    assert abs(float(out[:, 0].mean()) - mean) < 4 * sd / math.sqrt(n)
    assert abs(float(out[:, 0].std()) / sd - 1) < 4 / math.sqrt(2 * n)


@pytest.mark.parametrize("sde_name", ["vp", "ve", "subvp"])
def test_every_entry_noisy_descends_once_below_the_last_release(sde_name):
    """Every known entry noisy: the passes stop at the last release time and one geometric descent finishes the
    draw, at the default 200 steps per pass.  A 2-D correlated Gaussian observed with noise 0.3 in both
    entries: the exact posterior by hand.  On the paper's grid alone the released entries came out too narrow
    (sd ratio 0.90 at 200 steps, above); 4 standard errors of the sd ratio are 4 / sqrt(2 n) = 0.063."""
    target = GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.6], [0.6, 1.0]]])
    sde, n = get_sde(sde_name), 2000
    y = torch.tensor([0.8, 0.5], dtype=torch.float64)
    out, info = impute(target.score_fn(sde), y.float()[None].expand(n, 2).clone(), torch.tensor([True, True]), sde,
                       noise_std=0.3, num_particles=4, generator=torch.Generator().manual_seed(0), progress=False,
                       return_info=True)
    assert info.extra["descent_steps"] == 200
    t_release = float(sde.t_from_edm_sigma(torch.tensor(0.3, dtype=torch.float64)))
    assert info.extra["weighted_until"] == pytest.approx(t_release)
    cov = torch.tensor([[1.0, 0.6], [0.6, 1.0]], dtype=torch.float64)
    post_cov = torch.linalg.inv(torch.linalg.inv(cov) + torch.eye(2, dtype=torch.float64) / 0.09)
    post_mean = post_cov @ y / 0.09
    sd = post_cov.diagonal().sqrt()
    out = out.double()
    assert bool(((out.mean(0) - post_mean).abs() < 4 * sd / math.sqrt(n)).all()), (out.mean(0), post_mean)
    assert bool(((out.std(0) / sd - 1).abs() < 4 / math.sqrt(2 * n)).all()), out.std(0) / sd


@pytest.mark.parametrize("kwargs,match", [
    (dict(noise_std=-0.1), "noise_std must be"),
    (dict(noise_std=1e6), r"noise_std / \(smallest singular value of the operator\) = 2e\+06 reaches"),
    (dict(operator=torch.zeros(4, 9)), r"operator must be \(m, 16\)"),
    (dict(operator=torch.zeros(4, 16)), "full row rank"),
    (dict(y=torch.zeros(2, 3)), r"y must have shape \(B, 4\)"),
    (dict(data_shape=None), "give data_shape"),
])
def test_solve_inverse_errors(kwargs, match):
    target, sde = _image_target(), get_sde("vp")
    args = dict(y=torch.zeros(2, 4), operator=_pool2x2(), data_shape=(1, 4, 4))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        solve_inverse(target.score_fn(sde), args.pop("y"), args.pop("operator"), sde, steps=5, progress=False, **args)
