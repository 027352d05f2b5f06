"""SDEs against exact answers: torchsde simulation of the forward SDE, NCSN/DDPM discretisations,
scipy's normal density, and the reverse-time drift formulas."""
import math

import numpy as np
import pytest
import torch
import torchsde
from scipy import stats

from sde_score import SDE, SDES, SubVPSDE, VESDE, VPSDE, get_sde, get_target, register_sde, sample
from sde_score.registry import Registry

ALL = ["ve", "vp", "subvp"]


class _Forward(torch.nn.Module):
    noise_type, sde_type = "diagonal", "ito"

    def __init__(self, sde):
        super().__init__()
        self.sde = sde

    def f(self, t, y):
        return self.sde.sde(y, t.clamp(0, 1).expand(y.shape[0]))[0]

    def g(self, t, y):
        return self.sde.sde(y, t.clamp(0, 1).expand(y.shape[0]))[1][:, None].expand_as(y)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(SDES.names()))
def test_alpha_sigma_are_finite_down_to_t_0(name, dtype):
    """Every registered SDE at t = 0, its default eps and T, as a batch (the vectorised path where round-off put
    CosineVP's log alpha(0) one ulp above 0 and sigma(0) = NaN): alpha in (0, 1] for VP schedules (> 0 for VE),
    sigma >= 0, all finite."""
    sde = get_sde(name)
    t = torch.tensor([0.0, sde.default_eps, 0.5 * sde.T, sde.T], dtype=dtype)
    alpha, sigma = sde.alpha_sigma(t)
    assert torch.isfinite(alpha).all() and torch.isfinite(sigma).all(), (name, alpha, sigma)
    assert (alpha > 0).all() and (sigma >= 0).all(), (name, alpha, sigma)
    if name != "ve":
        assert (alpha <= 1).all(), (name, alpha)


@pytest.mark.parametrize("name", ALL)
def test_marginal_prob_matches_torchsde_simulation(name):
    # n = 20000 paths of a 2-D SDE from fixed x0; Euler step 1e-3 has O(dt) weak error (< 0.2% of
    # the variance), far below the 4-standard-error band: SE(mean) = std/sqrt(n),
    # SE(var) = var sqrt(2/(n-1)).
    sde = get_sde(name, sigma_max=5.0) if name == "ve" else get_sde(name)
    n = 20000
    x0 = torch.tensor([[1.5, -0.5]], dtype=torch.float64).expand(n, 2).contiguous()
    ts = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    bm = torchsde.BrownianInterval(t0=0.0, t1=1.0, size=(n, 2), dtype=torch.float64, entropy=7)
    ys = torchsde.sdeint(_Forward(sde), x0, ts, bm=bm, method="euler", dt=1e-3)
    for k, t in enumerate(ts[1:], start=1):
        mean, std = sde.marginal_prob(x0[:1], t)
        emp_mean, emp_var = ys[k].mean(0), ys[k].var(0)
        se_mean = std / math.sqrt(n)
        assert torch.all((emp_mean - mean[0]).abs() < 4 * se_mean), (name, t, emp_mean, mean)
        var = std ** 2
        assert torch.all((emp_var - var).abs() < 4 * var * math.sqrt(2 / (n - 1))), (name, t, emp_var, var)


def test_ve_discretize_is_ncsn_geometric_levels():
    sde = VESDE(sigma_min=0.01, sigma_max=50.0, N=10)
    sigmas = np.exp(np.linspace(np.log(0.01), np.log(50.0), 10))  # NCSN's noise levels
    t = torch.tensor(np.arange(10) / 9.0)
    x = torch.zeros(10, 3, dtype=torch.float64)
    f, G = sde.discretize(x, t)
    prev = np.concatenate([[0.0], sigmas[:-1]])
    assert torch.equal(f, torch.zeros_like(x))
    np.testing.assert_allclose(G.numpy(), np.sqrt(sigmas ** 2 - prev ** 2), rtol=1e-12)
    # the continuous std on the grid is the same geometric sequence
    np.testing.assert_allclose(sde.marginal_prob(x, t)[1].numpy(), sigmas, rtol=1e-12)


def test_vp_discretize_is_ddpm_forward_step():
    N = 1000
    sde = VPSDE(beta_min=0.1, beta_max=20.0, N=N)
    betas = np.linspace(0.1 / N, 20.0 / N, N)  # DDPM's linear schedule
    idx = np.array([0, 1, 500, 998, 999])
    t = torch.tensor(idx / (N - 1))
    x = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    f, G = sde.discretize(x, t)
    expect = np.sqrt(1 - betas[idx])[:, None] * x.numpy()
    np.testing.assert_allclose((x + f).numpy(), expect, rtol=1e-12)
    np.testing.assert_allclose(G.numpy(), np.sqrt(betas[idx]), rtol=1e-12)


def test_timestep_index_of_sampling_grid_is_distinct():
    for sde in (VESDE(N=1000), VPSDE(N=1000)):
        ts = torch.linspace(1.0, sde.default_eps, 1000)
        idx = sde.timestep_index(ts)
        assert torch.equal(idx, torch.arange(999, -1, -1)), type(sde)


@pytest.mark.parametrize("name", ALL)
def test_prior_logp_is_normalised_normal(name):
    sde = get_sde(name)
    s = sde.prior_std
    z = torch.randn(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * s
    ref = stats.multivariate_normal(np.zeros(3), s ** 2 * np.eye(3)).logpdf(z.numpy())
    np.testing.assert_allclose(sde.prior_logp(z).numpy(), ref, rtol=1e-10)
    # integrates to one on a 2-D grid (trapezoid, +-8 std, error << 1e-4)
    g = torch.linspace(-8 * s, 8 * s, 801, dtype=torch.float64)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    p = sde.prior_logp(torch.stack([xx.ravel(), yy.ravel()], 1)).exp().reshape(801, 801)
    assert abs(torch.trapezoid(torch.trapezoid(p, g), g).item() - 1) < 1e-4
    x = sde.prior_sampling((20000, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert abs(x.std().item() / s - 1) < 4 * math.sqrt(1 / (2 * 40000))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("pf", [False, True])
def test_reverse_drift(name, pf):
    sde = get_sde(name)
    x = torch.randn(6, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0.01, 1.0, 6, dtype=torch.float64)
    score = lambda x, t: torch.sin(x) * t[:, None, None]  # noqa: E731 - any function will do
    f, g = sde.sde(x, t)
    drift, diff = sde.reverse(score, probability_flow=pf).sde(x, t)
    coef = 0.5 if pf else 1.0
    torch.testing.assert_close(drift, f - coef * g[:, None, None] ** 2 * score(x, t))
    torch.testing.assert_close(diff, torch.zeros_like(g) if pf else g)
    fd, G = sde.discretize(x, t)
    rf, rG = sde.reverse(score, probability_flow=pf).discretize(x, t)
    torch.testing.assert_close(rf, fd - coef * G[:, None, None] ** 2 * score(x, t))


@pytest.mark.parametrize("name", ALL)
def test_alpha_sigma_consistent_with_sde(name):
    # For a linear SDE: (log alpha)' = f/x and (sigma^2)' = 2 (f/x) sigma^2 + g^2 (variance ODE).
    sde = get_sde(name)
    t = torch.linspace(0.05, 0.95, 7, dtype=torch.float64).requires_grad_(True)
    alpha, sigma = sde.alpha_sigma(t)
    alpha = alpha + 0 * t  # VE's alpha = 1 is constant and has no graph
    dla = torch.autograd.grad(torch.log(alpha).sum(), t, retain_graph=True)[0]
    dvar = torch.autograd.grad((sigma ** 2).sum(), t)[0]
    x = torch.ones(7, 1, dtype=torch.float64)
    f, g = sde.sde(x, t.detach())
    torch.testing.assert_close(dla, f[:, 0])
    torch.testing.assert_close(dvar, 2 * f[:, 0] * sigma.detach() ** 2 + g ** 2)


@pytest.mark.parametrize("name", ALL)
def test_edm_sigma_round_trip(name):
    sde = get_sde(name)
    t = torch.linspace(1e-4, 1.0, 50, dtype=torch.float64)
    torch.testing.assert_close(sde.t_from_edm_sigma(sde.edm_sigma(t)), t, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ALL)
def test_posterior_coeffs_are_the_forward_processs_gaussian_posterior(name):
    """q(x_s | x_t, x_0) = N(a x_t + b x_0, std^2): for a fixed x_0, drawing x_t from the kernel and then x_s from
    the posterior must give x_s's own kernel N(alpha_s x_0, sigma_s^2): alpha_s = a alpha_t + b and
    sigma_s^2 = a^2 sigma_t^2 + std^2; and the cross-covariance a sigma_t^2 = alpha_{t|s} sigma_s^2."""
    sde = get_sde(name)
    t = torch.tensor([0.9, 0.5, 0.2, 0.05], dtype=torch.float64)
    s = torch.tensor([0.5, 0.45, 0.01, 0.049], dtype=torch.float64)
    a, b, std = sde.posterior_coeffs(t, s)
    (a_t, s_t), (a_s, s_s) = sde.alpha_sigma(t), sde.alpha_sigma(s)
    torch.testing.assert_close(a * a_t + b, a_s)
    torch.testing.assert_close(a ** 2 * s_t ** 2 + std ** 2, s_s ** 2)
    torch.testing.assert_close(a * s_t ** 2, a_t / a_s * s_s ** 2)
    if name == "ve":  # the SMLD ancestral step (eq. 47) on the same pair of levels
        x, score = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
        torch.testing.assert_close(a[:, None] * x + b[:, None] * (x + s_t[:, None] ** 2 * score),
                                   x + (s_t ** 2 - s_s ** 2)[:, None] * score)


def test_registry_and_new_sde():
    assert set(ALL) <= set(SDES.names())
    assert isinstance(get_sde("VP"), VPSDE) and isinstance(get_sde("SubVP"), SubVPSDE)
    with pytest.raises(ValueError, match="unknown SDE 'cld'.*subvp.*ve.*vp"):
        get_sde("cld")
    reg = Registry("thing")
    reg.register("a")(1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("A")(2)

    @register_sde("vp_half_test")
    class HalfVP(VPSDE):  # a new SDE is one subclass plus one registry line
        name = "vp_half_test"

    assert isinstance(get_sde("vp_half_test", beta_max=10.0), HalfVP)
    assert issubclass(HalfVP, SDE)


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="ve", sigma_min=0.0), "sigma_min"),
    (dict(name="ve", sigma_min=1.0, sigma_max=0.5), "sigma_max must be > sigma_min"),
    (dict(name="ve", sigma_max=float("nan")), "sigma_max must be finite"),
    (dict(name="vp", beta_min=5.0, beta_max=1.0), "beta_max must be > beta_min"),
    (dict(name="subvp", beta_max=float("inf")), "beta_max must be finite"),
    (dict(name="vp", N=0), "N must be an integer >= 1"),
    (dict(name="vp", N=2.5), "N must be an integer"),
])
def test_bad_hyperparameters(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=match):
        get_sde(name, **kwargs)


@pytest.mark.parametrize("name", ["vp", "subvp"])
def test_few_levels_refuse_only_the_discrete_chain(name):
    sde = get_sde(name, N=20)  # beta_max = 20: the continuous SDE is fine, DDPM's beta_i would reach 1
    x = torch.zeros(2, 3)
    assert torch.isfinite(sde.sde(x, 0.5)[0]).all()
    assert sde.discrete_levels_problem("steps").endswith("steps=20; use steps > 20")
    calls = [lambda: sde.langevin_scale(torch.full((2,), 0.5))]
    calls += [lambda: sde.discretize(x, 0.5)] if name == "vp" else []  # sub-VP discretises by Euler (below)
    for call in calls:
        with pytest.raises(ValueError, match=r"beta_max / N < 1 .*N=20; use N > 20"):
            call()
    assert get_sde("ve", N=2).discrete_levels_problem() is None


def test_subvp_discretizes_by_euler_as_the_paper_code():
    """sub-VP has no DDPM chain: f = f(x, t) dt, G = g(t) sqrt(dt) (score_sde's subVPSDE keeps SDE.discretize).
    It used VP's chain (G^2 = beta_i instead of beta(t) (1 - e^{-2 int beta}) dt, 1/(2 int beta) times too
    large near t = 0), and reverse diffusion on the stiff image64 diverged at 50 steps (|x| 2e4)."""
    import math

    sde = get_sde("subvp", N=50)
    x, t = torch.randn(4, 3, dtype=torch.float64), torch.full((4,), 0.04, dtype=torch.float64)
    f, G = sde.discretize(x, t)
    drift, g = sde.sde(x, t)
    torch.testing.assert_close(f, drift / 50)
    torch.testing.assert_close(G, g * math.sqrt(1 / 50))
    target = get_target("image64")
    from sde_score.metrics import mode_weight_tv, tv_floor

    out = sample(target.score_fn(sde), sde, "pc", shape=(2000, 1, 8, 8), steps=50,
                 generator=torch.Generator().manual_seed(0), progress=False)
    assert out.abs().max() < 10 and mode_weight_tv(target, out) < 3 * tv_floor(target, 2000)


@pytest.mark.parametrize("t,match", [(1.5, r"t must lie in \[0, T=1.0\], got 1.5"), (-0.1, "got -0.1"),
                                     (float("nan"), "finite")])
def test_bad_time(t, match):
    sde = get_sde("vp")
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=match):
        sde.sde(x, t)
    with pytest.raises(ValueError, match=match):
        sde.marginal_prob(x, torch.full((3,), t))


def test_bad_time_shape():
    with pytest.raises(ValueError, match=r"t must have shape \(3,\)"):
        get_sde("ve").sde(torch.zeros(3, 2), torch.zeros(4))


def test_discrete_vp_matches_its_noise_table_and_ddpm_chain():
    from sde_score.sampling.schedules import time_grid
    from sde_score.sdes import DiscreteVPSDE

    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    sde = DiscreteVPSDE(abar)
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000  # t_n = (n + 1) / N
    alpha, sigma = sde.alpha_sigma(t)
    torch.testing.assert_close(alpha ** 2, abar, rtol=1e-12, atol=0)
    torch.testing.assert_close(sigma ** 2, 1 - abar, rtol=1e-10, atol=0)
    torch.testing.assert_close(sde.index(t), torch.arange(1000, dtype=torch.float64))
    torch.testing.assert_close(sde.discrete_beta(torch.arange(1000)), betas, rtol=1e-9, atol=0)
    torch.testing.assert_close(time_grid(sde, 1000, sde.default_eps, "cpu").double(), t.flip(0), rtol=0, atol=1e-6)
    # the ancestral step is DDPM's (Ho et al. 2020, Alg. 2 with sigma_n^2 = beta_n)
    x, s = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    mean, std = sde.ancestral_step(x, t[[499, 499, 499]], s)
    torch.testing.assert_close(mean, (x + betas[499] * s) / torch.sqrt(1 - betas[499]))
    torch.testing.assert_close(std, torch.sqrt(betas[499]).expand(3))
    # off the grid: piecewise-linear log alpha, the variance ODE d sigma^2/dt = 2 f sigma^2 + g^2 holds
    u = torch.tensor([0.2345, 0.71234], dtype=torch.float64)
    f, g = sde.sde(torch.ones(2, 1, dtype=torch.float64), u)
    h = 1e-7
    var = lambda v: sde.alpha_sigma(v)[1] ** 2  # noqa: E731
    torch.testing.assert_close((var(u + h) - var(u - h)) / (2 * h), 2 * f[:, 0] * var(u) + g ** 2, rtol=1e-6, atol=0)
    torch.testing.assert_close(sde.t_from_edm_sigma(sde.edm_sigma(u)), u, rtol=1e-10, atol=0)


def test_discrete_vp_chain_needs_its_own_levels():
    from sde_score import sample

    sde = get_sde("discrete_vp")
    with pytest.raises(ValueError, match="DDPM chain of this noise table has its 1000 levels; got steps=50"):
        sample(lambda x, t: -x, sde, "pc", shape=(2, 2), steps=50, progress=False)
    x = sample(lambda x, t: -x, sde, "pc", shape=(2, 2), steps=50, predictor="euler_maruyama", corrector="none",
               progress=False)
    assert torch.isfinite(x).all()
    with pytest.raises(ValueError, match="strictly decrease"):
        get_sde("discrete_vp", alphas_cumprod=[0.5, 0.9])


def test_cosine_vp_is_nichol_dhariwal():
    sde = get_sde("cosine_vp")
    t = torch.tensor([0.0, 0.3, 0.9], dtype=torch.float64)
    f = lambda v: torch.cos((v + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    alpha, sigma = sde.alpha_sigma(t)
    torch.testing.assert_close(alpha ** 2, f(t) / f(torch.zeros(1, dtype=torch.float64)), rtol=1e-12, atol=0)
    torch.testing.assert_close(alpha ** 2 + sigma ** 2, torch.ones(3, dtype=torch.float64))
    assert sde.T == 0.9946 and abs(math.log(float(sde.alpha_sigma(torch.tensor([sde.T]))[0])) + 4.7777) < 1e-3
    # beta(t) = pi tan((t + s)/(1 + s) pi/2) / (1 + s), the derivative of -2 log alpha
    theta = (sde.T + 0.008) / 1.008 * math.pi / 2
    beta_T = float(sde.diffusion(torch.tensor([sde.T], dtype=torch.float64))) ** 2
    assert abs(beta_T - math.pi * math.tan(theta) / 1.008) < 1e-6 * beta_T
