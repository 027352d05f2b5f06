"""Shared statistical checks of samples against an exact mixture (tolerances from sample size)."""
import math

import torch

from sde_score import GaussianMixture, get_sde, get_target, sample
from sde_score.metrics import mode_moments, mode_weight_tv
from sde_score.sampling.denoiser import Denoiser


def between_modes(i: int = 0, j: int = 2):
    """The hard condition of experiments/bench_impute_hard.py: gmm16d with every other coordinate observed, at
    the point between modes i and j where the exact conditional splits them 0.5 / 0.5.  Returns (target, known
    (16,) bool, x (16,) float64 holding the observation at the known entries and 0 elsewhere)."""
    target = get_target("gmm16d")
    known = torch.zeros(16, dtype=torch.bool)
    known[0::2] = True
    x = torch.zeros(16, dtype=torch.float64)
    x[known] = target.balanced_observation(known, i, j)
    return target, known, x


def assert_mode_moments(target, x, n_se=4.5):
    """Per-mode means and covariances within n_se standard errors (SE from the exact Sigma_k and
    the effective number of samples of the mode; 4.5 SE keeps the family-wise false-alarm rate
    below 1e-3 over the <= 100 compared entries)."""
    means, covs = mode_moments(target, x)
    n = x.shape[0]
    for k in range(target.num_components):
        nk = float(target.weights[k]) * n
        S = target.covs[k]
        sd = torch.sqrt(torch.diagonal(S))
        dm = (means[k] - target.means[k]).abs()
        assert torch.all(dm < n_se * sd / math.sqrt(nk)), (k, dm, sd / math.sqrt(nk))
        se = torch.sqrt((torch.outer(sd ** 2, sd ** 2) + S ** 2) / nk)
        dc = (covs[k] - S).abs()
        assert torch.all(dc < n_se * se), (k, dc, se)


def assert_mixture_moments(target, x, n_se=5.0):
    """Overall mean and covariance against the exact mixture moments; SEs estimated from the
    samples' own fourth moments (a mixture is not Gaussian)."""
    xf = x.reshape(x.shape[0], -1).double()
    n = xf.shape[0]
    w, mu = target.weights, target.means
    mean = w @ mu
    cov = torch.einsum("k,kde->de", w, target.covs + mu[:, :, None] * mu[:, None, :]) - torch.outer(mean, mean)
    se_mean = xf.std(0) / math.sqrt(n)
    assert torch.all((xf.mean(0) - mean).abs() < n_se * se_mean)
    c = xf - mean
    prods = c[:, :, None] * c[:, None, :]
    se_cov = prods.std(0) / math.sqrt(n)
    assert torch.all((prods.mean(0) - cov).abs() < n_se * se_cov), ((prods.mean(0) - cov).abs() / se_cov).max()


def assert_tv_below(target, x, bound=0.03):
    tv = mode_weight_tv(target, x)
    assert tv < bound, tv
    return tv


def gaussian_ode_error(steps: int, method: str = "dpm_solver", relative: bool = False, **opts) -> float:
    """Largest error of a deterministic sampler's samples against the exact PF-ODE map of a Gaussian
    target (``relative``: the largest |x / exact - 1|, i.e. the error of the samples' std factor):
    for data N(mu, diag(lam)), x_hat(sigma) - mu = (x_hat_T - mu) sqrt(lam + sigma^2) / sqrt(lam + sigma_T^2),
    and the final denoising step gives mu + lam / (lam + sigma^2) (x_hat - mu)."""
    mu, lam = torch.tensor([[1.0, -2.0]], dtype=torch.float64), torch.tensor([[0.04, 0.5]], dtype=torch.float64)
    target, sde = GaussianMixture([1.0], mu, lam), get_sde("vp")
    eps = sde.default_eps
    s_T, s_min = (float(v) for v in sde.edm_sigma(torch.tensor([sde.T, eps], dtype=torch.float64)))
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # errors down to 1e-9 need float64 end to end
    try:
        x_T = sde.prior_sampling((200, 2), torch.Generator().manual_seed(0))
        x = sample(target.score_fn(sde), sde, method, x_T=x_T, steps=steps, progress=False, **opts)
        x_T = Denoiser(sde, target.score_fn(sde)).to_scaled(x_T)
    finally:
        torch.set_default_dtype(default)
    x_hat = mu + (x_T - mu) * torch.sqrt(lam + s_min ** 2) / torch.sqrt(lam + s_T ** 2)
    exact = mu + lam / (lam + s_min ** 2) * (x_hat - mu)
    if relative:
        return float(((x - mu) / (exact - mu) - 1).abs().max())
    return float((x - exact).abs().max())
