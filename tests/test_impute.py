"""Imputation against the exact conditional of a mixture."""

import math

import pytest
import torch

from sde_score import get_sde, get_target, impute

from samplers_helpers import assert_mode_moments, between_modes


def _bimodal_condition():
    target = get_target("bimodal16d")
    known = torch.zeros(16, dtype=torch.bool)
    known[:8] = True
    x0 = target.sample(50, torch.Generator().manual_seed(3))
    for j in range(50):
        cond = target.conditional(known, x0[j])
        if cond.weights.min() > 0.1 or sorted(cond.weights.tolist())[-2] > 0.1:
            return target, known, x0[j], cond
    raise AssertionError("no bimodal condition found")


def test_conditional_of_mixture_is_exact():
    target, known, x, cond = _bimodal_condition()
    # p(x_u | x_k) = p(x) / p(x_k): check at a few points against the joint density
    xu = cond.sample(5, torch.Generator().manual_seed(0), dtype=torch.float64)
    full = x.double().expand(5, 16).clone()
    full[:, 8:] = xu
    lp_joint = target.log_prob(full)
    marg = type(target)(target.weights, target.means[:, :8], target.covs[:, :8, :8])
    expect = lp_joint - marg.log_prob(x[None, :8].double())
    torch.testing.assert_close(cond.log_prob(xu), expect)


def test_smc_imputation_matches_exact_conditional_and_replacement_is_biased():
    target, known, x, cond = _bimodal_condition()
    sde = get_sde("vp")
    n = 500
    xk = x.expand(n, 16).clone()
    out = impute(target.score_fn(sde), xk, known, sde, num_particles=24,
                 generator=torch.Generator().manual_seed(0), progress=False)
    assert torch.equal(out[:, :8], xk[:, :8])
    se = torch.sqrt(cond.weights * (1 - cond.weights) / n)
    w = cond.responsibilities(out[:, 8:]).mean(0)
    # 4 standard errors plus the finite-particle bias measured at K = 24 (~0.015)
    assert torch.all((w - cond.weights).abs() < 4 * se + 0.015), (w, cond.weights)
    assert_mode_moments(cond, out[:, 8:], n_se=5.0)
    base = impute(target.score_fn(sde), xk, known, sde, method="replacement", steps=400,
                  generator=torch.Generator().manual_seed(0), progress=False)
    wb = cond.responsibilities(base[:, 8:]).mean(0)
    assert (wb - cond.weights).abs().max() > 8 * se.max()  # the baseline's bias, far outside the noise


@pytest.mark.parametrize("kwargs,match", [
    (dict(mask=torch.ones(16)), "mask must be a bool tensor"),
    (dict(mask=torch.ones(8, dtype=torch.bool)), r"mask must have shape \(16,\)"),
    (dict(method="gibbs"), "unknown method 'gibbs'"),
    (dict(x_known=torch.full((2, 16), float("nan"))), "NaN or inf at known"),
    (dict(num_particles=0), "num_particles must be an integer >= 1"),
    (dict(ess_threshold=float("nan")), "ess_threshold must be finite"),
    (dict(ess_threshold=5), r"ess_threshold must lie in \[0, 1\]"),
    (dict(x_known=torch.zeros(0, 16)), "x_known is an empty batch"),
    (dict(x_known=torch.zeros(2, 16, dtype=torch.long)), "x_known must be a floating tensor"),
    (dict(noise_std=torch.zeros(3)), r"noise_std must be a number or broadcast to x_known's shape \(2, 16\)"),
    (dict(noise_std=torch.tensor(float("inf"))), "noise_std must be finite and >= 0"),
    (dict(noise_std=-1.0), "noise_std must be"),
    (dict(noise_std=1e6), r"observation noise 1e\+06 \(model space\) is at or above the SDE's largest noise level"),
    (dict(scale=1.0), r"unknown option\(s\) scale for impute method 'smc'; accepted: num_particles, sweeps"),
    (dict(sweeps=0), "sweeps must be an integer >= 1"),
    (dict(kernel_variance="full"), "unknown kernel_variance 'full'; expected one of 'stein', 'anisotropic'"),
    (dict(sweeps=2, num_particles=1), r"sweeps=2 \(particle Gibbs\) needs num_particles >= 2"),
    (dict(method="dps", num_particles=4), r"option\(s\) num_particles for impute method 'dps'; accepted: scale"),
    (dict(method="replacement", num_particles=4), r"for impute method 'replacement'; accepted: predictor, corrector"),
])
def test_impute_errors(kwargs, match):
    target, sde = get_target("bimodal16d"), get_sde("vp")
    args = dict(x_known=torch.zeros(2, 16), mask=torch.arange(16) < 8, method="smc", steps=30)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        impute(target.score_fn(sde), args.pop("x_known"), args.pop("mask"), sde, progress=False, **args)


def test_replacement_fails_a_balanced_hard_condition():
    """The observation between modes 0 and 2 (``balanced_observation``): the exact conditional splits
    0.5 / 0.5; replacement puts the samples in the wrong proportions (TV ~0.4, floor ~0.03).  The SMC's
    numbers on the whole family are in experiments/bench_impute_hard.py."""
    target, known, x = between_modes(0, 2)
    sde, x = get_sde("vp"), x.float()
    cond = target.conditional(known, x)
    n = 300
    out, info = impute(target.score_fn(sde), x.expand(n, 16).clone(), known, sde, "replacement", steps=200,
                       generator=torch.Generator().manual_seed(0), progress=False, return_info=True)
    from sde_score.metrics import mode_weight_tv, tv_floor

    assert mode_weight_tv(cond, out[:, ~known]) > 5 * tv_floor(cond, n)
    _, info = impute(target.score_fn(sde), x.expand(4, 16).clone(), known, sde, steps=30, num_particles=8,
                     sweeps=2, generator=torch.Generator().manual_seed(0), progress=False, return_info=True)
    assert len(info.extra["ess"]) == 2 * 29 and all(1 <= e <= 8 for e in info.extra["ess"])
    assert info.nfe == 2 * 29 + 1 and len(info.extra["moved"]) == 1


@pytest.mark.parametrize("sde_name,kernel_variance", [
    pytest.param("vp", "stein", marks=pytest.mark.xfail(strict=True, reason=(
        "#13 open: obs[0::2] 1|2 under VP is biased at 200 steps per pass (mode 2 gets 0.595 for an exact 0.5 at "
        "n = 800, TV 0.095 against the bound 0.052, with the isotropic kernel variance or without it): the "
        "kernel's missing anisotropic Cov[x_0 | x_t], and a chain not fully mixed at 5 passes (the exact Gaussian "
        "kernel gives mode 1 0.45 at 5 passes, 0.547 at 10); kernel_variance='anisotropic' fixes the weights at "
        "twice the evaluations, README"))),
    ("vp", "anisotropic"), ("ve", "stein"), ("ve", "anisotropic")])
def test_smc_default_is_exact_between_modes_where_one_pass_is_not(sde_name, kernel_variance):
    """The hard condition between modes 1 and 2 (exact split 0.5 / 0.5), 200 imputations, the default SMC
    (64 particles, 5 passes of 200 steps: 996 score evaluations per particle): mode-weight TV within 3 floors +
    0.01 and the exact log-density of the samples within 4 standard errors of exact draws'.  Under VE a single
    pass is not (measured TV 0.20 against 0.04): its particles follow the shared observation path into one
    mode (the particle-Gibbs passes are the fix, ``sampling.impute``).  Under VP the default is biased here
    (xfail above; this test passed before by the draw: 0.020 at n = 200, 0.096 at n = 800); under VE less, below
    this test's resolution (TV 0.067 at n = 800 against that n's bound 0.052; README, #13 open).  The kernel with
    the first-order anisotropic covariance (``kernel_variance="anisotropic"``, one more score evaluation per step:
    1991 per particle) removes the VP bias and passes, under VE too (TV 0.079 against 0.095, gap -0.61 against
    4 SE 0.88 here; at n = 400 its gap, -0.78 +- 0.16, is outside 4 SE: README)."""
    from sde_score.metrics import mean_log_prob, mode_weight_tv, tv_floor

    (target, known, x), sde = between_modes(1, 2), get_sde(sde_name)
    cond = target.conditional(known, x)
    n = 200
    bound = 3 * tv_floor(cond, n) + 0.01
    exact = cond.sample(n, torch.Generator().manual_seed(1), dtype=torch.float64)
    lp_exact, se_exact = mean_log_prob(cond, exact)
    xk = x[None].expand(n, 16).float().clone()
    out, info = impute(target.score_fn(sde), xk, known, sde, generator=torch.Generator().manual_seed(0),
                       progress=False, return_info=True, kernel_variance=kernel_variance)
    budget = 2000 if kernel_variance == "anisotropic" else 1000  # its one more evaluation per step
    assert info.nfe <= budget and info.extra["sweeps"] == 5 and len(info.extra["moved"]) == 4
    tv = mode_weight_tv(cond, out[:, ~known].double())
    lp, se = mean_log_prob(cond, out[:, ~known].double())
    assert tv <= bound and abs(lp - lp_exact) <= 4 * math.hypot(se, se_exact), (tv, bound, lp - lp_exact)
    if sde_name == "ve":
        one = impute(target.score_fn(sde), xk, known, sde, sweeps=1, generator=torch.Generator().manual_seed(0),
                     progress=False)
        assert mode_weight_tv(cond, one[:, ~known].double()) > bound


@pytest.mark.parametrize("sde_name,condition", [("vp", "rows[:4] 1|2"), ("ve", "rows[:4] 1|2"),
                                                ("vp", "rows[:4] tail of 3")])
def test_smc_default_is_exact_on_image_shaped_conditions_where_replacement_is_not(sde_name, condition):
    """image64 (1 x 8 x 8, four thin low-rank modes), the top 4 rows observed: between modes 1 and 2 (exact split
    0.5 / 0.5) or 3 sd out in mode 3's tail (low density).  The default SMC (64 particles, 996 score evaluations
    per particle): mode-weight TV within 3 floors + 0.01, and the mean exact log-density within 4 SE of the
    ideal end point's: exact conditional draws perturbed to eps and denoised by the exact Tweedie step there, as
    the SMC ends (``benchmarks.tweedie_end``).  That step is the method's own end-point error, separated here:
    on this target's 0.03-wide directions it costs ~3 nats against exact draws at t = 0 (eps's noise level is
    0.01).  Replacement (1000 steps) misses the mode weights or the log-density."""
    from sde_score.benchmarks import impute_conditions, tweedie_end
    from sde_score.metrics import mean_log_prob, mode_weight_tv, tv_floor

    target, sde, n = get_target("image64"), get_sde(sde_name), 100
    known, x = next((k, x) for name, k, x in impute_conditions(target, "image64") if name == condition)
    cond = target.conditional(known, x)
    full = x[None].expand(n, 1, 8, 8).clone()
    full[:, ~known] = cond.sample(n, torch.Generator().manual_seed(1), dtype=torch.float64)
    ideal = tweedie_end(sde, target.score_fn(sde), full, torch.Generator().manual_seed(2))[:, ~known]
    lp_ideal, se_ideal = mean_log_prob(cond, ideal)
    bound = 3 * tv_floor(cond, n) + 0.01
    xk = x[None].expand(n, 1, 8, 8).float().clone()
    fails = []
    for method in ("smc", "replacement"):
        out = impute(target.score_fn(sde), xk, known, sde, method, generator=torch.Generator().manual_seed(0),
                     progress=False, **({} if method == "smc" else dict(steps=1000)))[:, ~known].double()
        tv, (lp, se) = mode_weight_tv(cond, out), mean_log_prob(cond, out)
        gap, gap_se = lp - lp_ideal, math.hypot(se, se_ideal)
        fails.append(tv > bound or abs(gap) > 4 * gap_se)
        if method == "smc":
            assert not fails[-1], (tv, bound, gap, gap_se)
    assert fails[-1], "replacement passed"


def test_reference_path_ends_at_the_state_and_meets_noisy_observations_at_their_release():
    """The conditional pass's reference: a forward path of the chain state (x_end at eps) whose entries observed
    with noise c pass through y at their release time (x_{t*} / alpha(t*) = y), with forward variance above."""
    from sde_score.sampling.impute import _release_times, _reference_path
    from sde_score.sampling.schedules import time_grid

    sde, n = get_sde("vp"), 4000
    eps = sde.default_eps
    known = torch.tensor([True, True, False]).expand(n, 3)
    c = torch.tensor([0.0, 0.3, 0.0], dtype=torch.float64).expand(n, 3)
    release = _release_times(sde, c, known, eps)
    ts = torch.cat([time_grid(sde, 50, eps, "cpu").to(torch.float64), release[0, 1:2]]).unique().flip(0)
    y = torch.tensor([0.0, 0.7, 0.0], dtype=torch.float64).expand(n, 3)
    x_end = torch.randn(n, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = _reference_path(sde, ts, x_end, y, c, release, torch.Generator().manual_seed(1))
    torch.testing.assert_close(ref[-1], x_end)
    j = int(torch.nonzero(ts == release[0, 1]).flatten()[0])
    alpha, sigma = sde.alpha_sigma(ts)
    torch.testing.assert_close(ref[j, :, 1], alpha[j] * y[:, 1])
    # a free entry: x_t / alpha(t) - x_eps / alpha(eps) has variance sigma_e(t)^2 - sigma_e(eps)^2
    free = ref[0, :, 2] / alpha[0] - x_end[:, 2] / alpha[-1]
    var = float((sigma[0] / alpha[0]) ** 2 - (sigma[-1] / alpha[-1]) ** 2)
    assert abs(float(free.var()) / var - 1) < 4 * math.sqrt(2 / n)


def _full_covariance_gaussian(D: int, g: torch.Generator):
    """A one-component mixture in D dimensions with a random full covariance (float64): Cov[x_0 | x_t] is exact
    and the same at every x_t."""
    from sde_score import GaussianMixture

    L = torch.randn(D, D, generator=g, dtype=torch.float64) / 2
    cov = L @ L.T + 0.1 * torch.eye(D, dtype=torch.float64)
    return GaussianMixture([1.0], torch.linspace(-1, 1, D, dtype=torch.float64)[None], cov[None])


def _posterior_covariance(target, sde, t: float):
    """(alpha, sigma, Cov[x_0 | x_t]) at time t of ``_full_covariance_gaussian``'s target: (Sigma^-1 + alpha^2 /
    sigma^2 I)^-1, float64."""
    alpha, sigma = (float(v) for v in sde.alpha_sigma(torch.tensor(t, dtype=torch.float64)))
    eye = torch.eye(target.dim, dtype=torch.float64)
    return alpha, sigma, torch.linalg.inv(torch.linalg.inv(target.covs[0]) + alpha ** 2 / sigma ** 2 * eye)


@pytest.mark.parametrize("sde_name", ["ve", "vp", "subvp"])
def test_stein_posterior_variance_is_the_exact_posterior_variance(sde_name):
    """The SMC kernel's added variance b^2 c, c = the mean diagonal of Cov[x_0 | x_t] over the free entries,
    estimated from the proposal noise that made the particles (Stein's identity, no extra score evaluation),
    against the exact value for a full-covariance Gaussian, where Cov[x_0 | x_t] = (Sigma^-1 + alpha^2 / sigma^2
    I)^-1 at every x_t.  There x0_hat is linear, so each particle's term is z^T J z (J = d x0_hat / d x_t on the
    free entries) with variance 2 ||J||_F^2: the tolerance is 5 of those standard errors.  The reference slot
    (``first`` = 1) is left out: a wrong probe there changes nothing."""
    from sde_score.sampling.denoiser import tweedie_denoise
    from sde_score.sampling.impute import _stein_posterior_variance

    sde, D, B, K = get_sde(sde_name), 6, 2, 3000
    g = torch.Generator().manual_seed(0)
    target = _full_covariance_gaussian(D, g)
    free = torch.tensor([True, False, True, True, False, True])
    score = target.score_fn(sde)
    for t in (0.2, 0.6):
        tt = torch.tensor(t, dtype=torch.float64)
        alpha, sigma, post = _posterior_covariance(target, sde, t)
        J = post[free][:, free] * alpha / sigma ** 2  # Cov[x_0 | x_t] = (sigma^2 / alpha) J
        exact = float(post.diagonal()[free].mean())
        se = sigma ** 2 / alpha * math.sqrt(2 / (K - 1)) * float(J.norm()) / int(free.sum())
        mu = alpha * target.sample(B * K, g, dtype=torch.float64).view(B, K, D)
        s = torch.tensor([0.1, 0.4], dtype=torch.float64) * sigma
        z = torch.randn(B, K, D, generator=g, dtype=torch.float64) * free
        z[:, 0] = 1e3  # the reference slot was not drawn as mu + s z
        x = (mu + s.view(B, 1, 1) * z).view(B * K, D)
        x0 = tweedie_denoise(sde, score, x, tt.expand(B * K))
        x0_prev = tweedie_denoise(sde, score, mu.view(B * K, D), tt.expand(B * K))
        est = _stein_posterior_variance(sde, tt, x0, (x0_prev, z, s, free.view(1, 1, D).to(x.dtype)), B, K, 1)
        assert est.shape == (B,) and bool(((est - exact).abs() < 5 * se).all()), (t, est, exact, se)


@pytest.mark.parametrize("shape", [(6,), (1, 2, 3)])
@pytest.mark.parametrize("sde_name", ["ve", "vp", "subvp"])
def test_anisotropic_correction_is_the_first_order_kernel_term(sde_name, shape):
    """``kernel_variance="anisotropic"``'s step against its formula with the exact Cov[x_0 | x_t] = C of a
    full-covariance Gaussian (constant in x_t): over its Rademacher probe, the pinned entries' log-weight gains
    b^2 / (2 s^2) (u' (C_pp - c I) u - tr (C_pp - c I)) on average (u = resid / s on the pinned block, c the
    isotropic part already in s^2 = std^2 + b^2 c) and the free entries' mean gains (b^2 / s) C_fp u; the pinned
    entries' mean is untouched.  4000 probes at one state per condition; the averages agree within 5 of their
    standard errors, and a single probe is not exact (the estimate is random).  The expected gain is the first
    order of the exact Gaussian log-density ratio log N(r; 0, S) - log N(r; 0, s^2 I), S = std^2 I + b^2 C_pp,
    which is checked too (with b scaled by 0.1 and 0.05, to 5 % of the gain), and it fails without the - c I
    (session 11's formula counted the isotropic part twice).  ``shape`` (1, 2, 3): the same Gaussian seen as an
    image (C, H, W), so the step's reshapes are checked too."""
    from sde_score.sampling.impute import _anisotropic_correction

    sde, D, B, K = get_sde(sde_name), 6, 2, 4000
    g = torch.Generator().manual_seed(0)
    target = _full_covariance_gaussian(D, g)
    pinned = torch.tensor([True, False, True, True, False, False])
    score_fn = target.score_fn(sde)
    tt = torch.tensor(0.4, dtype=torch.float64)
    alpha, sigma, C = _posterior_covariance(target, sde, 0.4)
    x = (alpha * target.sample(B, g, dtype=torch.float64))[:, None].expand(B, K, D).reshape(B * K, D)
    t = tt.expand(B * K)
    score = score_fn(x, t)
    s = torch.tensor([0.3, 0.8], dtype=torch.float64) * sigma
    b = torch.tensor(0.5 * sigma, dtype=torch.float64)
    c = torch.tensor([0.6, 1.3], dtype=torch.float64) * C.diagonal().mean()
    resid = (torch.randn(B, 1, D, generator=g, dtype=torch.float64) * s.view(B, 1, 1)).expand(B, K, D) * pinned
    mean = torch.randn(B, K, D, generator=g, dtype=torch.float64)
    flat_score = score_fn
    score_fn = lambda x_, t_: flat_score(x_.reshape(len(x_), D), t_).reshape(x_.shape)  # noqa: E731
    per_particle, per_condition = (B * K,) + shape, (B, K) + shape
    log_w, new_mean = _anisotropic_correction(sde, score_fn, x.reshape(per_particle), score.reshape(per_particle), t,
                                              resid.reshape(per_condition), pinned.view((1, 1) + shape),
                                              mean.reshape(per_condition), s, b, c,
                                              torch.zeros(B, K, dtype=torch.float64), g)
    new_mean = new_mean.reshape(B, K, D)
    assert torch.equal(new_mean[..., pinned], mean[..., pinned])
    for j in range(B):
        u = resid[j, 0, pinned] / s[j]
        Cpp, Cfp = C[pinned][:, pinned], C[~pinned][:, pinned]
        aniso = Cpp - c[j] * torch.eye(len(u), dtype=torch.float64)
        want_w = float(b ** 2 / (2 * s[j] ** 2) * (u @ aniso @ u - aniso.trace()))
        for scale in (0.1, 0.05):  # the formula is the ratio's first order: its error falls as b^4
            bs = scale * b
            S = s[j] ** 2 * torch.eye(len(u), dtype=torch.float64) + bs ** 2 * aniso  # std^2 I + b^2 C_pp
            r = u * s[j]
            exact_w = float(-0.5 * r @ torch.linalg.solve(S, r) - 0.5 * torch.logdet(S) + 0.5 * r @ r / s[j] ** 2
                            + len(u) * torch.log(s[j]))
            assert abs(exact_w - scale ** 2 * want_w) < 0.05 * scale ** 2 * abs(want_w), (scale, exact_w, want_w)
        got_w = log_w[j]
        se_w = float(got_w.std() / math.sqrt(K))
        assert float(got_w.std()) > 1e-3 * abs(want_w) and abs(float(got_w.mean()) - want_w) < 5 * se_w
        shift = new_mean[j][:, ~pinned] - mean[j][:, ~pinned]
        want_shift = b ** 2 / s[j] * (Cfp @ u)
        se_shift = shift.std(0) / math.sqrt(K)
        assert bool(((shift.mean(0) - want_shift).abs() < 5 * se_shift).all()), (shift.mean(0), want_shift)


@pytest.mark.parametrize("sde_name", ["ve", "vp", "subvp"])
def test_stein_posterior_variance_holds_between_modes_of_a_mixture(sde_name):
    """Where x0_hat is not linear: gmm16d particles around the point between modes 1 and 2, at noise levels
    sigma/alpha = 0.3 / 1 / 3 (8 / 18 / 40 % of them with no component above 0.9), odd coordinates free, the
    proposal noise 0.2 sigma.  Stein's identity makes the estimate unbiased for the particles' mean exact
    diagonal of Cov[x_0 | x_t] (the mixture's, from its per-component Gaussian posteriors); 20 batches of 200
    particles give its standard error (1-2 % of the value here), and the two agree within 5 of them."""
    from sde_score.sampling.denoiser import tweedie_denoise
    from sde_score.sampling.impute import _stein_posterior_variance

    sde, target = get_sde(sde_name), get_target("gmm16d")
    B, K, D = 20, 200, 16
    free = torch.arange(D) % 2 == 1
    eye = torch.eye(D, dtype=torch.float64)
    prec = torch.linalg.inv(target.covs)
    score = target.score_fn(sde)
    for level in (0.3, 1.0, 3.0):
        g = torch.Generator().manual_seed(0)
        t = sde.t_from_edm_sigma(torch.tensor(level, dtype=torch.float64))
        alpha, sigma = (float(v) for v in sde.alpha_sigma(t))
        mid = (target.means[1] + target.means[2]) / 2
        mu = alpha * mid + sigma * torch.randn(B, K, D, generator=g, dtype=torch.float64)
        s = torch.full((B,), 0.2 * sigma, dtype=torch.float64)
        z = torch.randn(B, K, D, generator=g, dtype=torch.float64) * free
        x = (mu + s.view(B, 1, 1) * z).view(B * K, D)
        x0 = tweedie_denoise(sde, score, x, t.expand(B * K))
        x0_prev = tweedie_denoise(sde, score, mu.view(B * K, D), t.expand(B * K))
        est = _stein_posterior_variance(sde, t, x0, (x0_prev, z, s, free.view(1, 1, D).double()), B, K, 0)
        # the exact posterior: per component N(m_c, P_c), weighted by p_t's responsibilities at x
        P = torch.linalg.inv(prec + alpha ** 2 / sigma ** 2 * eye)
        b = (prec @ target.means[..., None])[..., 0]
        m = torch.einsum("cij,ncj->nci", P, b[None] + alpha / sigma ** 2 * x[:, None])
        r = target.marginal(sde, float(t)).responsibilities(x)
        second = (r[..., None] * (torch.diagonal(P, dim1=1, dim2=2)[None] + m ** 2)).sum(1)
        exact = (second - (r[..., None] * m).sum(1) ** 2)[:, free].mean(1).view(B, K).mean(1)
        diff, se = float((est - exact).mean()), float((est - exact).std() / math.sqrt(B))
        assert se < 0.03 * float(exact.mean()) and abs(diff) < 5 * se, (level, diff, se, float(exact.mean()))


@pytest.mark.slow
def test_smc_kernel_variance_removes_the_mode_bias_of_the_posterior_kernel():
    """obs[0::2] 2|3 of gmm16d (the exact conditional splits modes 2 and 3 evenly), VP, 500 imputations at the
    defaults.  With the forward posterior's variance alone (``kernel_variance="posterior"``, SMC-Diff's kernel)
    the pinned entries' density is too sharp at 200 steps per pass and mode 3 gets 0.574 (TV 0.074 against the
    bound 3 floors + 0.01 = 0.064; 0.601 at n = 800); the default adds b^2 times the particles' posterior
    variance (Stein) and gives 0.49 (TV 0.010; 0.027 at n = 800) at the same 996 score evaluations per particle."""
    from sde_score.benchmarks import impute_conditions
    from sde_score.metrics import mean_log_prob, mode_weight_tv, tv_floor

    target, sde, n = get_target("gmm16d"), get_sde("vp"), 500
    known, x = next((k, x) for name, k, x in impute_conditions(target, "gmm16d") if name == "obs[0::2] 2|3")
    cond = target.conditional(known, x)
    bound = 3 * tv_floor(cond, n) + 0.01
    lp_exact, se_exact = mean_log_prob(cond, cond.sample(n, torch.Generator().manual_seed(1), dtype=torch.float64))
    xk = x[None].expand(n, 16).float().clone()
    tvs = {}
    for kernel_variance in ("stein", "posterior"):
        out, info = impute(target.score_fn(sde), xk, known, sde, kernel_variance=kernel_variance, progress=False,
                           generator=torch.Generator().manual_seed(0), return_info=True)
        out = out[:, ~known].double()
        tvs[kernel_variance] = mode_weight_tv(cond, out)
        gain = info.extra["kernel_inflation"]
        assert info.nfe <= 1000 and len(gain) == 5 * (info.extra["grid_steps"] - 1)
        if kernel_variance == "stein":
            lp, se = mean_log_prob(cond, out)
            assert abs(lp - lp_exact) <= 4 * math.hypot(se, se_exact), (lp - lp_exact, se, se_exact)
            assert min(gain) >= 1 and max(gain) > 1.02  # it widens the kernel where the steps are coarse
        else:
            assert gain == [1.0] * len(gain)
    assert tvs["stein"] <= bound < tvs["posterior"], (tvs, bound)
