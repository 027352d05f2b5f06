"""The benchmark harnesses' reference points are exact."""
import torch

from sde_score import GaussianMixture, get_sde
from sde_score.benchmarks import ideal_end_point


def test_ideal_end_point_is_the_tweedie_step_of_exact_p_eps_samples():
    """One Gaussian N(m, s^2): x_eps ~ N(a m, a^2 s^2 + sigma^2) and E[x0 | x_eps] = m + a s^2 (x_eps - a m) /
    (a^2 s^2 + sigma^2), so the ideal end point is N(m, a^2 s^4 / (a^2 s^2 + sigma^2)) per coordinate; 200 000
    draws pin mean and variance to ~0.3 %."""
    m, s2 = torch.tensor([1.5, -2.0]), torch.tensor([0.25, 4.0])
    target = GaussianMixture([1.0], m[None], s2[None])
    for name in ("ve", "vp", "subvp"):
        sde = get_sde(name)
        a, sig = (float(v) for v in sde.alpha_sigma(torch.tensor([sde.default_eps], dtype=torch.float64)))
        x = ideal_end_point(target, sde, 200_000, torch.Generator().manual_seed(0))
        var = a ** 2 * s2 ** 2 / (a ** 2 * s2 + sig ** 2)
        torch.testing.assert_close(x.mean(0).float(), m, atol=4 * float(var.max().sqrt()) / 200_000 ** 0.5, rtol=0)
        torch.testing.assert_close(x.var(0).float(), var.float(), rtol=0.012, atol=0)
