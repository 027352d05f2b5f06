"""Shared statistical checks of samples against an exact mixture (tolerances from sample size)."""
import math

import torch

from sde_score.metrics import mode_moments, mode_weight_tv


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
