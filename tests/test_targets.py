"""Exact mixtures against independent answers: scipy densities, autograd of log p_t, numerical
integration, and moments of their own samples."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from sde_score import SDES, GaussianMixture, TARGETS, get_sde, get_target


def _scipy_logpdf(gm: GaussianMixture, x: np.ndarray) -> np.ndarray:
    comps = [np.log(w) + stats.multivariate_normal(m, c).logpdf(x)
             for w, m, c in zip(gm.weights.numpy(), gm.means.numpy(), gm.covs.numpy())]
    return np.logaddexp.reduce(np.stack(comps), axis=0)


@pytest.mark.parametrize("name", TARGETS.names())
def test_log_prob_matches_scipy(name):
    gm = get_target(name)
    x = gm.sample(200, torch.Generator().manual_seed(0), dtype=torch.float64)
    np.testing.assert_allclose(gm.log_prob(x).numpy(), _scipy_logpdf(gm, x.reshape(200, -1).numpy()),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("sde_name", SDES.names())
@pytest.mark.parametrize("t", [1e-5, 0.01, 0.5, 1.0])
def test_perturbed_density_is_the_convolved_mixture(sde_name, t):
    gm, sde = get_target("grid9"), get_sde(sde_name)
    t = min(t, sde.T)  # the cosine schedule ends at T = 0.9946
    x = torch.randn(100, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3
    expect = _scipy_logpdf(gm.marginal(sde, t), x.numpy())
    # two factorisations of the covariance: float64 round-off times Mahalanobis^2 (up to ~300)
    np.testing.assert_allclose(gm.log_prob_t(x, t, sde).numpy(), expect, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("sde_name", SDES.names())
@pytest.mark.parametrize("name", ["ring8", "gmm16d"])
def test_score_is_gradient_of_log_prob_t(sde_name, name):
    gm, sde = get_target(name), get_sde(sde_name)
    x = gm.sample(64, torch.Generator().manual_seed(2), dtype=torch.float64)
    t = torch.linspace(1e-5, sde.T, 64, dtype=torch.float64)
    x = (x + 0.3 * torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    x.requires_grad_(True)
    grad = torch.autograd.grad(gm.log_prob_t(x, t, sde).sum(), x)[0]
    torch.testing.assert_close(gm.score(x.detach(), t, sde), grad, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(gm.score_fn(sde)(x.detach(), t), grad, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("sde_name,t", [("ve", 1e-5), ("ve", 0.2), ("vp", 1e-3), ("subvp", 0.5)])
def test_perturbed_density_integrates_to_one(sde_name, t):
    gm, sde = get_target("ring8"), get_sde(sde_name)
    _, sigma = sde.alpha_sigma(torch.tensor([t], dtype=torch.float64))
    half = 4 + 0.3 + 8 * math.sqrt(0.09 + float(sigma) ** 2)  # +- 8 std around every mode
    n = 1201
    g = torch.linspace(-half, half, n, dtype=torch.float64)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    p = gm.log_prob_t(torch.stack([xx.ravel(), yy.ravel()], 1), t, sde).exp().reshape(n, n)
    # grid step <= 0.02 std of the narrowest mode: trapezoid error ~1e-6
    assert abs(torch.trapezoid(torch.trapezoid(p, g), g).item() - 1) < 1e-4


def test_stable_for_tiny_and_huge_noise():
    gm, sde = get_target("gmm16d"), get_sde("ve", sigma_max=1e4)
    x = gm.sample(8, torch.Generator().manual_seed(0), dtype=torch.float64) * 50
    for t in (0.0, 1.0):  # sigma 0.01 with far-away points; sigma 1e4
        lp, s = gm.log_prob_t(x, t, sde), gm.score(x, t, sde)
        assert torch.isfinite(lp).all() and torch.isfinite(s).all()
    # at huge noise p_t -> N(mixture mean, sigma^2 I); corrections are O(|Sigma|/sigma^2) ~ 1e-7
    s = gm.score(x, 1.0, sde)
    expect = -(x - gm.weights @ gm.means) / 1e8
    assert (s - expect).abs().max() < 1e-6 * expect.abs().max()


@pytest.mark.parametrize("name", ["grid9", "gmm16d"])
def test_sampling_matches_weights_means_covariances(name):
    gm = get_target(name)
    n = 40000
    x, labels = gm.sample(n, torch.Generator().manual_seed(5), dtype=torch.float64, return_labels=True)
    counts = torch.bincount(labels, minlength=gm.num_components).double() / n
    se_w = torch.sqrt(gm.weights * (1 - gm.weights) / n)
    assert torch.all((counts - gm.weights).abs() < 4 * se_w)
    xf = x.reshape(n, -1)
    for k in range(gm.num_components):
        xk = xf[labels == k]
        nk = xk.shape[0]
        sd = torch.sqrt(torch.diagonal(gm.covs[k]))
        assert torch.all((xk.mean(0) - gm.means[k]).abs() < 4 * sd / math.sqrt(nk))
        cov = torch.cov(xk.T)
        # SE of a covariance entry: sqrt((S_ii S_jj + S_ij^2)/n)
        se = torch.sqrt((torch.outer(sd ** 2, sd ** 2) + gm.covs[k] ** 2) / nk)
        assert torch.all((cov - gm.covs[k]).abs() < 5 * se)


def test_image_shaped_mixture():
    g = torch.Generator().manual_seed(0)
    gm = GaussianMixture([0.5, 0.5], torch.randn(2, 64, generator=g), torch.full((2, 64), 0.1),
                         data_shape=(1, 8, 8))
    x = gm.sample(5, g)
    assert x.shape == (5, 1, 8, 8)
    assert gm.score(x, 0.5, get_sde("vp")).shape == x.shape
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 8, 8\)"):
        gm.log_prob(x.reshape(5, 64))


@pytest.mark.parametrize("args,match", [
    (([1.0, -1.0], [[0.0], [1.0]], [[1.0], [1.0]]), "weights must be >= 0"),
    (([1.0], [[0.0, 0.0]], [[[1.0, 0.0], [0.0, -1.0]]]), r"covs\[0\] is not positive definite"),
    (([1.0], [[0.0, 0.0]], [[[1.0, 0.5], [0.0, 1.0]]]), "symmetric"),
    (([1.0], [[float("nan"), 0.0]], [[1.0, 1.0]]), "means contains 1 non-finite"),
    (([1.0, 1.0], [[0.0, 0.0]], [[1.0, 1.0]]), r"weights must have shape \(1,\)"),
    (([1.0], [0.0, 0.0], [[1.0, 1.0]]), r"means must have shape \(K, D\)"),
])
def test_bad_mixtures(args, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(*args)


def test_unknown_target():
    with pytest.raises(ValueError, match="unknown target 'moons'.*ring8"):
        get_target("moons")


def _posterior_case(noise_std):
    target = get_target("gmm16d")
    A = torch.randn(5, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x0 = target.sample(1, torch.Generator().manual_seed(1), dtype=torch.float64)[0]
    y = A @ x0 + noise_std * torch.randn(5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    return target, A, y


def test_noisy_posterior_is_prior_times_likelihood():
    """log p(x | y) - log p(x) - log N(y; A x, s^2 I) is the same constant at every x."""
    target, A, y = _posterior_case(0.3)
    post = target.posterior(A, y, 0.3)
    x = post.sample(6, torch.Generator().manual_seed(3), dtype=torch.float64)
    lik = torch.distributions.Normal(x @ A.T, 0.3).log_prob(y[None]).sum(1)
    c = post.log_prob(x) - target.log_prob(x) - lik
    torch.testing.assert_close(c, c[:1].expand(6), rtol=0, atol=1e-8)


def test_noise_free_posterior_lives_on_the_plane_and_masks_give_the_conditional():
    target, A, y = _posterior_case(0.0)
    post = target.posterior(A, y)
    x = post.sample(6, torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(x @ A.T, y[None].expand(6, 5), rtol=0, atol=1e-9)
    # on the plane, p(x | y) is proportional to p(x): the log-ratio is constant
    c = post.log_prob(x) - target.log_prob(x)
    torch.testing.assert_close(c, c[:1].expand(6), rtol=0, atol=1e-8)
    # the noise-free limit of the noisy posterior
    noisy = target.posterior(A, y, 1e-5)
    torch.testing.assert_close(noisy.weights, post.weights, rtol=0, atol=1e-6)
    # a mask is a row selection: the same weights as ``conditional``
    known = torch.zeros(16, dtype=torch.bool)
    known[::2] = True
    x0 = target.sample(1, torch.Generator().manual_seed(4), dtype=torch.float64)[0]
    sel = torch.eye(16, dtype=torch.float64)[known]
    torch.testing.assert_close(target.posterior(sel, x0[known]).weights, target.conditional(known, x0).weights)
    assert post.distance(x).max() < 1e-9


@pytest.mark.parametrize("kwargs,match", [
    (dict(A=torch.zeros(3, 5), y=torch.zeros(3)), r"A must have shape \(m, 16\)"),
    (dict(A=torch.zeros(2, 16), y=torch.zeros(2)), "full row rank"),
    (dict(A=torch.eye(16)[:2], y=torch.zeros(3)), "y must have 2 entries"),
    (dict(A=torch.eye(16)[:2], y=torch.zeros(2), noise_std=-1.0), "noise_std must be a finite number >= 0"),
])
def test_posterior_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_target("gmm16d").posterior(**kwargs)


def test_balanced_observation_splits_two_modes_evenly():
    target = get_target("gmm16d")
    known = torch.zeros(16, dtype=torch.bool)
    known[::2] = True
    y = target.balanced_observation(known, 0, 1)
    x = torch.zeros(16, dtype=torch.float64)
    x[known] = y
    w = target.conditional(known, x).weights
    torch.testing.assert_close(w[0], w[1], rtol=0, atol=1e-9)
    assert w[0] > 0.45 and w[2:].sum() < 0.1
    A = torch.randn(4, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w = target.posterior(A, target.balanced_observation(A, 2, 3, noise_std=0.1), 0.1).weights
    torch.testing.assert_close(w[2], w[3], rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="two different components"):
        target.balanced_observation(known, 1, 1)


def test_noise_free_posterior_plane_for_structured_operators():
    """2 x 2 average pooling (a structured A): the plane's point must satisfy A x_p = y (lstsq did not)."""
    target = get_target("gmm16d")
    A = torch.zeros(4, 16, dtype=torch.float64)
    for k in range(4):
        A[k, 4 * k:4 * k + 4] = 0.25
    y = A @ target.sample(1, torch.Generator().manual_seed(1), dtype=torch.float64)[0]
    post = target.posterior(A, y)
    torch.testing.assert_close(A @ post.offset, y, rtol=0, atol=1e-12)
