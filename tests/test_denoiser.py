"""Tweedie's identities in sampling/denoiser.py against a mixture's exact posterior moments."""
import pytest
import torch

from sde_score import get_sde, get_target
from sde_score.sampling.denoiser import posterior_covariance_along, tweedie_from_score


def _exact_posterior(target, sde, x: torch.Tensor, t: float):
    """E[x_0 | x_t] (N, D) and Cov[x_0 | x_t] (N, D, D) of a Gaussian mixture, float64: per component the
    Gaussian posterior N(m_c, P_c), weighted by p_t's responsibilities at x."""
    alpha, sigma = (float(v) for v in sde.alpha_sigma(torch.tensor(t, dtype=torch.float64)))
    prec = torch.linalg.inv(target.covs)
    P = torch.linalg.inv(prec + alpha ** 2 / sigma ** 2 * torch.eye(x.shape[1], dtype=torch.float64))
    prior_term = (prec @ target.means[..., None])[..., 0]
    m = torch.einsum("cij,ncj->nci", P, prior_term[None] + alpha / sigma ** 2 * x[:, None])
    r = target.marginal(sde, t).responsibilities(x)
    mean = (r[..., None] * m).sum(1)
    second = torch.einsum("nc,cij->nij", r, P) + torch.einsum("nc,nci,ncj->nij", r, m, m)
    return mean, second - mean[:, :, None] * mean[:, None, :]


@pytest.mark.parametrize("sde_name", ["ve", "vp", "subvp"])
def test_posterior_covariance_along_is_the_exact_covariance_times_w(sde_name):
    """Cov[x_0 | x_t] w by one finite difference of the score, on gmm16d points around the middle of modes 1 and 2
    (where the posterior is a mixture and its covariance varies with x_t) at sigma/alpha = 0.05 / 0.3 / 1 / 3,
    against the mixture's exact covariance.  The tolerances, relative to |Cov w| per point, are the finite
    difference's own error with its step 3 sqrt(eps) sigma: 1e-5 in float64 (measured at most 8e-7 here) and
    1e-2 in float32 (measured 4e-3; a step of 30 sqrt(eps) sigma measures 2e-2 and fails).  Tweedie's mean from
    the same score is checked beside it."""
    sde, target = get_sde(sde_name), get_target("gmm16d")
    g = torch.Generator().manual_seed(0)
    mid = (target.means[1] + target.means[2]) / 2
    for level in (0.05, 0.3, 1.0, 3.0):
        t = float(sde.t_from_edm_sigma(torch.tensor(level, dtype=torch.float64)))
        alpha, sigma = (float(v) for v in sde.alpha_sigma(torch.tensor(t, dtype=torch.float64)))
        x = alpha * mid + sigma * torch.randn(8, 16, generator=g, dtype=torch.float64)
        w = torch.randn(8, 16, generator=g, dtype=torch.float64)
        mean, cov = _exact_posterior(target, sde, x, t)
        exact = (cov @ w[..., None])[..., 0]
        for dtype, rtol in ((torch.float64, 1e-5), (torch.float32, 1e-2)):
            tt = torch.full((8,), t, dtype=dtype)
            score_fn = target.score_fn(sde)
            score = score_fn(x.to(dtype), tt)
            got = posterior_covariance_along(sde, score_fn, x.to(dtype), score, w.to(dtype), tt).double()
            err = float(((got - exact).norm(dim=1) / exact.norm(dim=1)).max())
            assert err < rtol, (level, dtype, err)
            x0 = tweedie_from_score(sde, x.to(dtype), score, tt).double()
            assert float((x0 - mean).abs().max()) < 1e3 * torch.finfo(dtype).eps * (1 + float(mean.abs().max()))
