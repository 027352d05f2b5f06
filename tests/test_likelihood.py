"""PF-ODE likelihoods against the exact log p_eps of perturbed mixtures, with the method's two
errors separated: the prior mismatch (N(0, s(T)^2 I) is not p_T) and the ODE solver's error."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from sde_score import SDES, GaussianMixture, get_sde, get_target
from sde_score.likelihood import log_likelihood
from sde_score.transforms import AffineScaler

EPS = 1e-5


@pytest.fixture(scope="module")
def points():
    return {name: get_target(name).sample(500, torch.Generator().manual_seed(0), dtype=torch.float64)
            for name in ("ring8", "gmm16d")}


@pytest.mark.parametrize("sde_name", SDES.names())
@pytest.mark.parametrize("name", ["ring8", "gmm16d"])
def test_exact_prior_isolates_solver_error(points, name, sde_name):
    target, sde = get_target(name), get_sde(sde_name)
    x = points[name]
    truth = target.log_prob_t(x, EPS, sde)
    exact = log_likelihood(target.score_fn(sde), x, target.with_exact_prior(sde), eps=EPS, divergence="exact",
                           progress=False)
    # solver error alone (rtol = atol = 1e-5): mean absolute error < 1e-3 nats on 500 points
    assert (exact.logp - truth).abs().mean() < 1e-3
    # with the standard prior the only extra error is the prior mismatch at the ODE's end point
    std = log_likelihood(target.score_fn(sde), x, sde, eps=EPS, divergence="exact", progress=False)
    mismatch = sde.prior_logp(std.latent) - target.marginal(sde, sde.T).log_prob(std.latent)
    assert ((std.logp - truth) - mismatch).abs().mean() < 1e-3
    torch.testing.assert_close(std.delta_logp, exact.delta_logp)  # same ODE, different prior


def test_hutchinson_is_unbiased(points):
    target, sde = get_target("gmm16d"), get_sde("vp")
    x = points["gmm16d"][:10]
    exact = log_likelihood(target.score_fn(sde), x, sde, eps=EPS, divergence="exact", progress=False)
    for noise in ("rademacher", "gaussian"):
        h = log_likelihood(target.score_fn(sde), x, sde, eps=EPS, divergence="hutchinson", noise=noise,
                           n_probes=200, generator=torch.Generator().manual_seed(1), progress=False)
        z = (h.logp - exact.logp) / h.stderr
        assert torch.all(z.abs() < 3), z  # per sample, within 3 standard errors
        assert torch.all(h.stderr > 1e-3)  # the estimator is genuinely noisy here


def test_rk45_paper_path_agrees_with_default(points):
    target, sde = get_target("ring8"), get_sde("vp")
    x = points["ring8"][:100]
    a = log_likelihood(target.score_fn(sde), x, sde, eps=EPS, divergence="exact", progress=False)
    b = log_likelihood(target.score_fn(sde), x, sde, eps=EPS, divergence="exact", progress=False, solver="rk45")
    assert (a.logp - b.logp).abs().mean() < 1e-3
    for tv in ("sigma", "log_sigma"):
        c = log_likelihood(target.score_fn(sde), x, sde, eps=EPS, divergence="exact", progress=False,
                           time_variable=tv)
        assert (a.logp - c.logp).abs().mean() < 1e-3


@pytest.mark.parametrize("num_levels", [None, 17])
def test_bits_per_dim_of_a_gaussian_in_data_space(num_levels):
    # data ~ N(m, s^2) per pixel in [0, 1] units; model space = 2 x - 1; VE kernel std sigma(eps)
    m, s, a, b = 0.4, 0.1, 2.0, -1.0
    D = 4
    sde = get_sde("ve", sigma_min=0.01, sigma_max=5.0)
    model_gm = GaussianMixture([1.0], [[a * m + b] * D], [[(a * s) ** 2] * D])
    x_data = m + s * torch.randn(50, D, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    scaler = AffineScaler(scale=a, shift=b, num_levels=num_levels)
    res = log_likelihood(model_gm.score_fn(sde), scaler.to_model(x_data), model_gm.with_exact_prior(sde),
                         eps=EPS, divergence="exact", progress=False, scaler=scaler)
    sigma_eps = float(sde.alpha_sigma(torch.tensor([EPS]))[1])
    # closed form: in data space the perturbed density is N(m, s^2 + (sigma_eps / a)^2)
    logp_data = stats.norm(m, math.sqrt(s ** 2 + (sigma_eps / a) ** 2)).logpdf(x_data.numpy()).sum(1)
    expect = -logp_data / (D * math.log(2)) + (math.log2(num_levels) if num_levels else 0.0)
    np.testing.assert_allclose(res.bpd.numpy(), expect, atol=1e-3 / (D * math.log(2)))


@pytest.mark.parametrize("kwargs,match", [
    (dict(solver="euler"), "unknown solver 'euler'"),
    (dict(divergence="skilling"), "unknown divergence 'skilling'"),
    (dict(noise="uniform"), "unknown noise 'uniform'"),
    (dict(eps=0.0), r"eps must lie in \(0, T=1.0\)"),
    (dict(eps=1.0), r"eps must lie in \(0, T=1.0\)"),
    (dict(n_probes=0), "n_probes must be an integer >= 1"),
    (dict(time_variable="snr"), "unknown time_variable 'snr'"),
    (dict(sde="cld"), "unknown SDE 'cld'"),
    (dict(scaler=2.0), "scaler must be an AffineScaler"),  # it failed only after the whole solve
])
def test_bad_arguments(kwargs, match):
    sde = kwargs.pop("sde", "vp")
    with pytest.raises(ValueError, match=match):
        log_likelihood(lambda x, t: -x, torch.zeros(3, 2), sde, progress=False, **kwargs)


def test_bad_data():
    with pytest.raises(ValueError, match="x contains 1 non-finite"):
        log_likelihood(lambda x, t: -x, torch.tensor([[0.0, float("nan")]]), "vp", progress=False)

    class M:
        sde, data_shape = get_sde("vp"), (2,)

        def __call__(self, x, t):
            return -x

    with pytest.raises(ValueError, match=r"model's data shape is \(2,\)"):
        log_likelihood(M(), torch.zeros(3, 5), progress=False)


@pytest.mark.parametrize("x,match", [
    (torch.zeros(0, 2), r"x is an empty batch"),
    (torch.zeros(3, 2, dtype=torch.int32), "x must be a floating tensor, got torch.int32"),
    (torch.zeros(3, 2, dtype=torch.bool), "x must be a floating tensor, got torch.bool"),
    (torch.zeros(3, 2, dtype=torch.float16), "log_likelihood needs float32 or float64 x, got torch.float16"),
    (torch.zeros(3, 2, dtype=torch.bfloat16), "log_likelihood needs float32 or float64 x, got torch.bfloat16"),
])
def test_bad_data_types(x, match):
    with pytest.raises(ValueError, match=match):
        log_likelihood(lambda x, t: -x, x, "vp", progress=False)


@pytest.mark.parametrize("sde_name", ["ve", "vp"])
def test_a_score_detached_from_x_is_an_error(sde_name):
    """On VP the drift's linear part still carries a graph, so the divergence came out wrong silently."""
    with pytest.raises(ValueError, match="does not depend on x through autograd"):
        log_likelihood(lambda x, t: -x.detach(), torch.zeros(3, 2), sde_name, progress=False)


def test_non_finite_ode_state_raises():
    def bad(x, t):
        return torch.where(t[:, None] > 0.3, torch.full_like(x, float("inf")), -x)

    with pytest.raises(FloatingPointError, match=r"t=0\.\d+"):
        log_likelihood(bad, torch.zeros(3, 2), "vp", progress=False)


@pytest.mark.parametrize("time_variable", ["t", "sigma", "log_sigma"])
def test_ode_never_evaluates_the_model_outside_eps_to_T(time_variable):
    # torchdiffeq steps past the end of the span and interpolates back unless told to land on it;
    # below eps a sigma-scaled network divides by sigma(t) -> 0 (a trained VP UNet returned inf)
    from sde_score import sample

    target, sde = get_target("ring8"), get_sde("vp")
    score, seen = target.score_fn(sde), []

    def recording(x, t):
        seen.append(t)
        return score(x, t)

    eps = 1e-3
    sample(recording, sde, "ode", shape=(64, 2), eps=eps, time_variable=time_variable, progress=False,
           generator=torch.Generator().manual_seed(0))
    log_likelihood(recording, target.sample(16).double(), sde, eps=eps, time_variable=time_variable, progress=False)
    t = torch.cat(seen)
    assert float(t.min()) >= eps * (1 - 1e-5) and float(t.max()) <= sde.T
