"""diffusers models through sde_score (random-initialised, nothing downloads): the noise tables are the
schedulers', and DDPM ancestral sampling through ``sample`` is diffusers' own DDPMScheduler loop."""
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from sde_score import get_sde, get_target, sample  # noqa: E402
from sde_score.external import from_diffusers  # noqa: E402


def _unet(seed=0, out_channels=1):
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=out_channels, layers_per_block=1,
                                 block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4).eval()


@pytest.mark.parametrize("beta_schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_discrete_vp_is_the_scheduler_table(beta_schedule, prediction_type):
    sch = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=beta_schedule,
                                  prediction_type=prediction_type)
    model, sde = from_diffusers(_unet(), sch)
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    alpha, sigma = sde.alpha_sigma(t)
    abar = sch.alphas_cumprod.double()
    torch.testing.assert_close(alpha ** 2, abar, rtol=0, atol=1e-6)
    torch.testing.assert_close(sigma ** 2, 1 - abar, rtol=0, atol=1e-6)
    assert model.prediction == {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}[prediction_type]
    assert model.data_shape == (1, 8, 8)


def test_ancestral_sampling_is_diffusers_ddpm_loop():
    """Same UNet, same x_T, same generator: sde_score's PC with DDPM's ancestral predictor on the table's 1000
    levels draws its noise in the same order as DDPMScheduler.step (fixed_large variance = beta_t, the
    paper's sigma_t^2 = beta_t; no clipping) and must land on the same samples."""
    unet = _unet()
    sch = diffusers.DDPMScheduler(num_train_timesteps=1000, variance_type="fixed_large", clip_sample=False)
    model, sde = from_diffusers(unet, sch)
    x_T = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ours = sample(model, method="pc", steps=1000, predictor="ancestral", corrector="none", x_T=x_T,
                  generator=torch.Generator().manual_seed(1), progress=False)
    sch.set_timesteps(1000)
    x, gen = x_T.clone(), torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in sch.timesteps:
            x = sch.step(unet(x, t).sample, t, x, generator=gen).prev_sample
    # a random UNet's samples reach |x| ~ 700: two float32 loops of 1000 steps whose coefficients round
    # differently (diffusers computes them in float32) agree to 7e-6 relative on the reference platform, 3.4e-5
    # on an AMD EPYC; DDPM's other variance (fixed_small, sigma_t^2 = beta_tilde_t) is 1.5e-3 away: 1e-4 tells
    # them apart on either platform
    assert x.abs().max() > 10
    rel = float(((ours - x).abs() / x.abs().clamp(min=1.0)).max())
    assert rel < 1e-4, rel


def test_learned_variance_and_score_sde_ve():
    sch = diffusers.DDPMScheduler(num_train_timesteps=1000, variance_type="learned_range")
    model, _ = from_diffusers(_unet(out_channels=2), sch)
    assert model.learned_variance
    x = torch.randn(3, 1, 8, 8)
    assert model(x, torch.full((3,), 0.5)).shape == x.shape
    ve = diffusers.ScoreSdeVeScheduler(num_train_timesteps=1000, sigma_min=0.01, sigma_max=50.0)
    model, sde = from_diffusers(_unet(), ve)
    assert (sde.name, sde.sigma_min, sde.sigma_max, model.prediction, model.time_input_kind) == \
        ("ve", 0.01, 50.0, "score", "sigma")


@pytest.mark.parametrize("i", [0, 1, 500, 998])
def test_one_ve_predictor_corrector_step_is_score_sde_ve_scheduler(i):
    """Langevin corrector then reverse-diffusion predictor (Song 2021 Alg. 2) at grid level i of N = 1000,
    given the same noise: ScoreSdeVeScheduler.step_correct then step_pred."""
    from sde_score.sampling.pc import CORRECTORS, PREDICTORS

    target, N = get_target("gmm16d"), 1000
    sde = get_sde("ve", sigma_min=0.01, sigma_max=50.0, N=N)
    sch = diffusers.ScoreSdeVeScheduler(num_train_timesteps=N, snr=0.16, sigma_min=0.01, sigma_max=50.0,
                                        sampling_eps=1e-5)
    sch.set_timesteps(N, sampling_eps=1e-5)
    sch.set_sigmas(N, sampling_eps=1e-5)
    t = sch.timesteps[i]
    x = 20 * torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    score = target.score_fn(sde)
    tt = t.expand(4)
    gen = torch.Generator().manual_seed(1)
    ours, _ = CORRECTORS.get("langevin")(sde, score, 0.16, 1).update(x, tt, gen)
    ours, ours_mean = PREDICTORS.get("reverse_diffusion")(sde, score).update(ours, tt, 0.0, gen)
    gen = torch.Generator().manual_seed(1)
    theirs = sch.step_correct(score(x, tt), x, generator=gen).prev_sample
    out = sch.step_pred(score(theirs, tt), t, theirs, generator=gen)
    # diffusers forms sigma_i^2 - sigma_{i-1}^2 in float32 from sigmas near 50 (differences ~46): cancellation
    # leaves ~2 * 2500 * 6e-8 / 46 ~ 7e-6 relative per operation, 2e-5 measured (level 1), hence 5e-5
    torch.testing.assert_close(ours, out.prev_sample, rtol=5e-5, atol=1e-5)
    torch.testing.assert_close(ours_mean, out.prev_sample_mean, rtol=5e-5, atol=1e-5)


def test_log_likelihood_of_a_wrapped_unet_hutchinson_agrees_with_the_exact_divergence():
    from sde_score import log_likelihood

    model, sde = from_diffusers(_unet(), diffusers.DDPMScheduler(num_train_timesteps=1000))
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0)).double()
    model = model.double()
    opts = dict(rtol=1e-3, atol=1e-3, progress=False)  # the same solver path for both: only the divergence differs
    exact = log_likelihood(model, x, divergence="exact", **opts)
    est = log_likelihood(model, x, divergence="hutchinson", n_probes=16, generator=torch.Generator().manual_seed(1),
                         **opts)
    assert torch.isfinite(exact.logp).all() and (est.stderr > 0).all()
    assert ((est.logp - exact.logp).abs() < 3 * est.stderr).all(), (est.logp, exact.logp, est.stderr)


def test_pf_ode_of_a_wrapped_eps_model_is_the_limit_of_diffusers_ddim():
    """The exact gmm16d score as a DDPM eps-model (well conditioned, unlike a random UNet near T):
    DDIM (eta 0) is a first-order solver of the same PF-ODE, so with e_N its error at N steps,
    e_500 ~ 2 e_1000 and |DDIM_1000 - DDIM_500| estimates e_1000 (Richardson).  Our adaptive PF-ODE solve
    (rtol 1e-6) must lie within 2 |DDIM_1000 - DDIM_500| of DDIM_1000, and DDIM must visibly converge."""
    from sde_score.external import prediction_from_score, time_from_input, wrap

    target = get_target("gmm16d")
    sch = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                                  set_alpha_to_one=True)
    sde = sde_score_discrete(sch)

    def eps_net(x, tau):
        t = time_from_input("index", tau, sde)
        alpha, sigma = sde.alpha_sigma(t)
        return prediction_from_score("eps", target.score(x, t, sde), x, alpha, sigma)

    x_T = torch.randn(64, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def ddim(n):
        sch.set_timesteps(n)
        x = x_T.clone()
        for t in sch.timesteps:
            x = sch.step(eps_net(x, torch.full((len(x),), float(t), dtype=torch.float64)), t, x, eta=0.0).prev_sample
        return x

    d500, d1000 = ddim(500), ddim(1000)
    model = wrap(eps_net, sde, prediction="eps", time_input="index")
    ode = sample(model, method="ode", x_T=x_T, rtol=1e-6, atol=1e-6, progress=False)
    step_error = (d1000 - d500).abs().max()
    assert step_error < 0.05 * d1000.abs().max()  # DDIM converges (the model is well conditioned)
    assert (ode - d1000).abs().max() < 2 * step_error, ((ode - d1000).abs().max(), step_error)


def sde_score_discrete(scheduler):
    from sde_score import DiscreteVPSDE

    return DiscreteVPSDE(scheduler.alphas_cumprod.double())


def _dpm_solver_problem():
    """The exact gmm16d score as a DDPM eps-model on diffusers' linear table (well conditioned near T)."""
    from sde_score.external import prediction_from_score, time_from_input, wrap

    target = get_target("gmm16d")
    sde = sde_score_discrete(diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear"))

    def eps_net(x, tau):
        t = time_from_input("index", tau, sde)
        alpha, sigma = sde.alpha_sigma(t)
        return prediction_from_score("eps", target.score(x, t, sde), x, alpha, sigma)

    x_T = torch.randn(64, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return eps_net, wrap(eps_net, sde, prediction="eps", time_input="index"), sde, x_T


def _diffusers_dpm_solver(eps_net, x_T, steps, solver_type):
    """diffusers' DPM-Solver++(2M) loop; returns its samples and its levels sigma_e (the table at its timesteps)."""
    sch = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule="linear",
                                                algorithm_type="dpmsolver++", solver_type=solver_type)
    sch.set_timesteps(steps)
    x = x_T.clone()
    for t in sch.timesteps:
        x = sch.step(eps_net(x, torch.full((len(x),), float(t), dtype=x.dtype)), t, x).prev_sample
    abar = sch.alphas_cumprod.double()[sch.timesteps]
    return x, ((1 - abar) / abar).sqrt().tolist()


def test_dpm_solver_is_diffusers_dpm_solver_multistep():
    """DPM-Solver++(2M) at 20 steps on diffusers' own levels (its timesteps, last step to sigma 0 = D).

    solver_type="heun" writes the second-order term as ((e^-h - 1)/h + 1) h D' = (h - c1) D', the exact
    integral of a linear D in lambda, which is our multistep update: without our corrector the two loops are
    one algorithm, equal up to diffusers' float32 sigma table (measured 2e-6 on |x| <= 9.4).
    The default solver_type="midpoint" uses c1 h D' / 2 instead, which differs from (h - c1) D' by O(h^3) per
    step: a different second-order method.  So against the converged PF-ODE solution to the same end point
    (order 3 at 2000 log-SNR levels, self-converged to 1e-7) both must be second-order accurate: their
    difference shrinks ~4-fold when the steps double (O(h^2); 0.34 measured, bound 0.5), and ours with its
    corrector (same 20 evaluations; 2M, and the default 3M) must be no less accurate than diffusers' default
    (RMS 0.021 for 2M + corrector vs 0.025 measured)."""
    eps_net, model, sde, x_T = _dpm_solver_problem()

    def ours(levels, **kw):
        return sample(model, method="dpm_solver", x_T=x_T, schedule=levels, progress=False, **kw)

    theirs, levels = _diffusers_dpm_solver(eps_net, x_T, 20, "heun")
    torch.testing.assert_close(ours(levels, corrector=False, order=2), theirs, rtol=1e-5, atol=1e-5)

    def rms(a, b):
        return float((a - b).pow(2).mean().sqrt())

    theirs, levels = _diffusers_dpm_solver(eps_net, x_T, 20, "midpoint")
    end = sde.t_from_edm_sigma(torch.tensor(levels[-1], dtype=torch.float64)).item()
    ref = sample(model, method="dpm_solver", x_T=x_T, steps=2000, eps=end, order=3, progress=False)
    ref_half = sample(model, method="dpm_solver", x_T=x_T, steps=1000, eps=end, order=3, progress=False)
    assert rms(ref, ref_half) < 1e-6
    err_theirs, err_ours, err_default = rms(theirs, ref), rms(ours(levels, order=2), ref), rms(ours(levels), ref)
    assert max(err_ours, err_default) <= err_theirs < 0.05, (err_ours, err_default, err_theirs)
    theirs_40, levels_40 = _diffusers_dpm_solver(eps_net, x_T, 40, "midpoint")
    ratio = (rms(theirs_40, ours(levels_40, corrector=False, order=2))
             / rms(theirs, ours(levels, corrector=False, order=2)))
    assert ratio < 0.5, ratio
