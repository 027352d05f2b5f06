"""Every sampler against the exact answer: samples driven by the exact score of a mixture must
reproduce its mode weights (TV < 0.03 at 10k samples: three times the statistical floor 0.010 of
ring8) and its per-mode moments within statistical error."""
import pytest
import torch

from sde_score import SDES

import sde_score
from sde_score import get_sde, get_target, sample
from sde_score.metrics import mode_weight_tv, tv_floor
from sde_score.sampling.api import check_sampler

from samplers_helpers import assert_mixture_moments, assert_mode_moments, assert_tv_below

N = 10000


@pytest.fixture(scope="module")
def ring():
    return get_target("ring8")


CASES = [
    ("ve", "pc", dict(predictor="reverse_diffusion", corrector="langevin")),
    ("vp", "pc", dict(predictor="euler_maruyama", corrector="none")),
    ("vp", "sde", dict(solver="euler")),
] + [(name, "ode", {}) for name in SDES.names()]


@pytest.mark.parametrize("sde_name,method,opts", CASES,
                         ids=[f"{a}-{b}-{'-'.join(map(str, c.values()))}" for a, b, c in CASES])
def test_sampler_recovers_unequal_mode_weights_and_moments(ring, sde_name, method, opts):
    sde = get_sde(sde_name)
    x = sample(ring.score_fn(sde), sde, method, shape=(N, 2), generator=torch.Generator().manual_seed(0),
               progress=False, **opts)
    assert_tv_below(ring, x)
    assert_mode_moments(ring, x)


@pytest.mark.parametrize("sde_name,opts", [("ve", dict(predictor="ancestral", corrector="none")),
                                           ("vp", dict(predictor="ancestral", corrector="none")),
                                           ("subvp", dict(predictor="reverse_diffusion", corrector="langevin"))])
def test_other_pc_combinations(ring, sde_name, opts):
    sde = get_sde(sde_name)
    x = sample(ring.score_fn(sde), sde, "pc", shape=(4000, 2), steps=500,
               generator=torch.Generator().manual_seed(1), progress=False, **opts)
    assert_tv_below(ring, x, 3 * tv_floor(ring, 4000))


@pytest.mark.parametrize("opts", [dict(solver="srk", steps=100), dict(adaptive=True, steps=20, rtol=1e-2, atol=1e-2)])
def test_torchsde_variants(ring, opts):
    sde = get_sde("vp")
    x, info = sample(ring.score_fn(sde), sde, "sde", shape=(4000, 2), generator=torch.Generator().manual_seed(2),
                     progress=False, return_info=True, **opts)
    assert_tv_below(ring, x, 3 * tv_floor(ring, 4000))
    assert info.nfe > 20


def test_ode_rk45_agrees_with_torch_solver(ring):
    sde = get_sde("vp")
    x_T = sde.prior_sampling((200, 2), torch.Generator().manual_seed(3))
    a = sample(ring.score_fn(sde), sde, "ode", x_T=x_T, eps=1e-3, solver="dopri5", progress=False)
    b = sample(ring.score_fn(sde), sde, "ode", x_T=x_T, eps=1e-3, solver="rk45", time_variable="t", progress=False)
    # both solve the same deterministic ODE to rtol = atol = 1e-5
    assert (a - b).abs().max() < 1e-2


@pytest.mark.parametrize("method,opts", [("ode", {}), ("pc", dict(steps=500))])
def test_16d_full_covariance_mean_and_covariance(method, opts):
    target, sde = get_target("gmm16d"), get_sde("vp")
    x = sample(target.score_fn(sde), sde, method, shape=(5000, 16), generator=torch.Generator().manual_seed(4),
               progress=False, **opts)
    assert_mixture_moments(target, x)
    assert_tv_below(target, x, 3 * tv_floor(target, 5000))


def test_plain_langevin_fails_annealed_succeeds():
    target, sde = get_target("two_modes"), get_sde("ve")
    n = 10000
    floor = tv_floor(target, n)  # 0.0032
    x_plain = sample(target.score_fn(sde), sde, "langevin", shape=(n, 2), n_steps=1000, step_size=0.1,
                     generator=torch.Generator().manual_seed(5), progress=False)
    # chains started uniformly stay in their basin: the weights come out near 1/2, not 0.2/0.8
    assert mode_weight_tv(target, x_plain) > 0.2 > 30 * floor
    x_ald = sample(target.score_fn(sde), sde, "annealed_langevin", shape=(n, 2), steps=100, n_steps_each=10,
                   generator=torch.Generator().manual_seed(5), progress=False)
    assert_tv_below(target, x_ald, 5 * floor)
    x_pc = sample(target.score_fn(sde), sde, "pc", shape=(n, 2), steps=300,
                  generator=torch.Generator().manual_seed(5), progress=False)
    assert_tv_below(target, x_pc, 5 * floor)


def test_annealed_langevin_is_pc_with_annealed_corrector(ring):
    sde = get_sde("ve")
    kw = dict(shape=(50, 2), steps=20, progress=False)
    a = sample(ring.score_fn(sde), sde, "annealed_langevin", n_steps_each=3, step_lr=1e-5,
               generator=torch.Generator().manual_seed(6), **kw)
    # eps=0 (exactly NCSN's sigma_min) is reserved to the NCSN method: compare with pc_sample itself
    from sde_score.sampling.pc import pc_sample
    gen = torch.Generator().manual_seed(6)
    b = pc_sample(ring.score_fn(sde), sde, sde.prior_sampling((50, 2), gen), steps=20, eps=0.0, generator=gen,
                  progress=False, predictor="none", corrector="annealed_langevin",
                  snr=1e-5 ** 0.5 / (2 * sde.sigma_min), n_corrector_steps=3, denoise=False)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def _grid(method: str, n: int) -> dict:
    """n steps in each method's own terms: Langevin's n_steps, nothing for the adaptive ODE."""
    return {"langevin": {"n_steps": n}, "ode": {}}.get(method, {"steps": n})


@pytest.mark.parametrize("method", ["pc", "ode", "sde", "langevin", "annealed_langevin"])
def test_same_seed_same_samples_and_no_output(ring, method, capfd):
    sde = get_sde("ve")
    kw = dict(shape=(64, 2), progress=False, **_grid(method, 10))
    a = sample(ring.score_fn(sde), sde, method, generator=torch.Generator().manual_seed(7), **kw)
    b = sample(ring.score_fn(sde), sde, method, generator=torch.Generator().manual_seed(7), **kw)
    c = sample(ring.score_fn(sde), sde, method, generator=torch.Generator().manual_seed(8), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_progress_bar_shows_when_asked(ring, capfd):
    sde = get_sde("ve")
    sample(ring.score_fn(sde), sde, "pc", shape=(8, 2), steps=5, progress=True)
    assert "pc[" in capfd.readouterr().err


def test_info_reports_nfe(ring):
    sde = get_sde("vp")
    _, info = sample(ring.score_fn(sde), sde, "pc", shape=(8, 2), steps=30, progress=False, return_info=True)
    assert info.nfe == 60 and info.wall_time > 0
    _, info = sample(ring.score_fn(sde), sde, "pc", corrector="none", shape=(8, 2), steps=30, progress=False,
                     return_info=True, n_corrector_steps=1)
    assert info.nfe == 30


def test_nn_module_and_data_shape():
    class Net(torch.nn.Module):
        data_shape = (1, 2, 2)

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(1, 1)

        def forward(self, x, t):
            return -x

    x = sample(Net(), "vp", "pc", num_samples=5, steps=25, progress=False)
    assert x.shape == (5, 1, 2, 2)


class _FakeModule:
    def __init__(self, sde):
        self.sde, self.data_shape = sde, (2,)

    def __call__(self, x, t):
        return -x


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(method="heunn"), ValueError, "unknown sampling method 'heunn'; registered: .*annealed_langevin.*pc"),
    (dict(predictor="rk4"), ValueError, "unknown predictor 'rk4'; registered: .*euler_maruyama"),
    (dict(corrector="hmc"), ValueError, "unknown corrector 'hmc'; registered: .*langevin"),
    (dict(sde="cld"), ValueError, "unknown SDE 'cld'"),
    (dict(snr=-1.0), ValueError, "snr must be > 0"),
    (dict(tol=1e-3), ValueError,
     r"unknown option\(s\) tol for method 'pc'; accepted: steps, eps, after_step, predictor"),
    (dict(eps=1.5), ValueError, r"eps must lie in \(0, T=1.0\)"),
    (dict(eps=0.0), ValueError, r"eps must lie in \(0, T=1.0\)"),
    (dict(steps=0), ValueError, "steps must be an integer >= 2, got 0"),
    (dict(shape=(0, 2)), ValueError, "shape must be the full batch shape"),
    (dict(shape=None), ValueError, "give shape="),
    (dict(method="ode", solver="euler", steps=None), ValueError, "unknown solver 'euler'"),
    (dict(method="ode"), ValueError, r"unknown option\(s\) steps for method 'ode'; accepted: eps, solver"),
    (dict(method="annealed_langevin", eps=0.1), ValueError,
     r"unknown option\(s\) eps for method 'annealed_langevin'; accepted: steps, n_steps_each"),
    (dict(method="langevin", steps=None, n_steps=0), ValueError, "n_steps must be an integer >= 1"),
    (dict(x_T=torch.zeros(3, 2)), ValueError, r"x_T must be a tensor of shape \(4, 2\)"),
    (dict(x_T=torch.full((4, 2), float("nan"))), ValueError, "x_T contains 8 non-finite"),
    (dict(method="sde", solver="rk45"), ValueError, "unknown solver 'rk45'"),
    (dict(method="annealed_langevin", sde="vp"), ValueError, "needs the 've' SDE"),
    (dict(predictor="ancestral", sde="subvp", steps=30), ValueError,
     "ancestral sampling is not defined for the 'subvp'"),
    (dict(sde="vp", steps=10), ValueError,
     r"pc with predictor 'reverse_diffusion' and corrector 'langevin' on 'vp': .*steps=10; use steps > 20"),
    (dict(shape=(4.7, 2)), ValueError, r"shape must be the full batch shape \(B, \.\.\.\) of positive integers"),
    (dict(snr=1e6), ValueError, r"snr of the 'langevin' corrector must lie in \(0, 1\]"),
    (dict(x_T=torch.zeros(4, 2, dtype=torch.long)), ValueError, "x_T must be a floating tensor"),
    (dict(method="heun", s_noise=float("nan")), ValueError, "s_noise must be finite"),
    (dict(method="heun", s_tmin=2.0, s_tmax=1.0), ValueError, "s_tmax must be a number >= s_tmin=2.0"),
    (dict(method="sde_adaptive", steps=None, safety=-1), ValueError, "safety must be > 0"),
    (dict(method="sde_adaptive", steps=None, safety=3), ValueError, r"safety must lie in \(0, 1\]"),
])
def test_bad_inputs(ring, kwargs, exc, match):
    args = dict(sde="ve", method="pc", shape=(4, 2), steps=3, progress=False)
    args.update(kwargs)
    sde = args.pop("sde")
    method = args.pop("method")
    with pytest.raises(exc, match=match):
        sample(lambda x, t: -x, sde, method, **args)


def test_model_sde_mismatch():
    m = _FakeModule(get_sde("vp"))
    assert sample(m, num_samples=3, steps=25, progress=False).shape == (3, 2)
    with pytest.raises(ValueError, match="trained with VPSDE.*sampling it with VESDE"):
        sample(m, "ve", num_samples=3, steps=2, progress=False)
    with pytest.raises(ValueError, match=r"does not match the model's data shape \(2,\)"):
        sample(m, shape=(3, 5), steps=2, progress=False)


@pytest.mark.parametrize("method", ["pc", "ode", "sde", "langevin"])
def test_non_finite_state_raises_naming_step(method):
    def bad_score(x, t):
        return torch.where(t[:, None] < 0.5, torch.full_like(x, float("nan")), -x)

    with pytest.raises(FloatingPointError, match=r"step \d+ \(t=0\.\d+"):
        sample(bad_score, "vp", method, shape=(4, 2), progress=False, **_grid(method, 30),
               **({"step_size": 0.1} if method == "langevin" else {}))


def test_ode_encode_inverts_sampling(ring):
    sde = get_sde("vp")
    x_T = sde.prior_sampling((100, 2), torch.Generator().manual_seed(9))
    x = sample(ring.score_fn(sde), sde, "ode", x_T=x_T, eps=1e-3, denoise=False, progress=False)
    z = sde_score.ode_encode(ring.score_fn(sde), x, sde, eps=1e-3)
    assert (z - x_T).abs().max() < 1e-2


@pytest.mark.parametrize("method", ["pc", "sde", "ode", "heun", "dpm_solver", "sde_adaptive", "annealed_langevin",
                                    "langevin"])
def test_x_T_and_callback_for_every_method(ring, method):
    """x_T is the start of every method (same x_T, same seed -> same samples; another x_T -> others) and
    the one callback sees steps with the same fields everywhere."""
    sde = get_sde("ve")
    opts = {"langevin": dict(n_steps=5), "ode": dict(rtol=1e-3, atol=1e-3), "sde_adaptive": dict(rtol=0.1),
            "heun": dict(steps=4), "dpm_solver": dict(steps=4)}.get(method, dict(steps=5))
    x_T = sde.prior_sampling((16, 2), torch.Generator().manual_seed(1))
    steps_seen = []

    def run(start, cb=None):
        return sample(ring.score_fn(sde), sde, method, x_T=start, generator=torch.Generator().manual_seed(2),
                      progress=False, callback=cb, **opts)

    a = run(x_T, steps_seen.append)
    assert torch.equal(a, run(x_T.clone())) and not torch.equal(a, run(x_T + 1.0))
    assert steps_seen and all(s.x.shape == x_T.shape and isinstance(s.t, float) and isinstance(s.sigma, float)
                              for s in steps_seen)
    assert [s.i for s in steps_seen][:3] == [0, 1, 2]
    # the first record is the start; heun / dpm_solver map it to scaled coordinates and back (round-off)
    torch.testing.assert_close(steps_seen[0].x, x_T, rtol=1e-6, atol=0)
    assert (steps_seen[0].denoised is not None) == (method in ("heun", "dpm_solver"))


# Deterministic few-step samplers carry the prior mismatch (N(0, s(T)^2 I) is not p_T) straight
# into the samples (VE: a mean shift of about |mean| * data std / sigma_max, 2-5 SE at 10k samples);
# the exact prior p_T isolates the solver's own error, which is what these tests bound.


@pytest.mark.parametrize("sde_name", SDES.names())
@pytest.mark.parametrize("method,opts,max_nfe,moments", [
    ("dpm_solver", dict(steps=20), 20, True),
    ("heun", dict(steps=10), 19, False),  # mode weights yes; covariance off by 12-19 SE at 19 NFE
    ("heun", dict(steps=30), 59, True),   # (5 SE at EDM's 18 levels / 35 NFE on VP)
])
def test_fast_samplers_few_nfe_2d(sde_name, method, opts, max_nfe, moments):
    target = get_target("ring8")
    sde = target.with_exact_prior(get_sde(sde_name))
    x, info = sample(target.score_fn(sde), sde, method, shape=(10000, 2), generator=torch.Generator().manual_seed(0),
                     progress=False, return_info=True, **opts)
    assert info.nfe <= max_nfe
    assert_tv_below(target, x, 0.03)
    if moments:
        assert_mixture_moments(target, x)


@pytest.mark.parametrize("sde_name", ["ve", "vp"])
@pytest.mark.parametrize("method,opts", [("dpm_solver", dict(steps=20)), ("heun", dict(steps=18))])
def test_fast_samplers_16d_mean_and_covariance(sde_name, method, opts):
    # dpm_solver at 20 NFE; Heun at EDM's 18 levels (35 NFE): at 10 levels (19 NFE) its covariance
    # is off by 9-15 standard errors here (a measured limitation, see bench_samplers.py)
    target = get_target("gmm16d")
    sde = target.with_exact_prior(get_sde(sde_name))
    x = sample(target.score_fn(sde), sde, method, shape=(10000, 16), generator=torch.Generator().manual_seed(1),
               progress=False, **opts)
    assert_tv_below(target, x, 0.03)
    assert_mixture_moments(target, x)


def _nan_on_call(score, n_call):
    calls = [0]

    def model(x, t):
        calls[0] += 1
        out = score(x, t)
        return torch.full_like(out, float("nan")) if calls[0] == n_call else out
    return model


METHOD_RUNS = {  # (method, options) cheap runs of every method
    "pc": dict(steps=5), "sde": dict(steps=5), "ode": dict(rtol=1e-2, atol=1e-2), "heun": dict(steps=3),
    "dpm_solver": dict(steps=4), "sde_adaptive": dict(rtol=0.1), "langevin": dict(n_steps=5),
    "annealed_langevin": dict(n_steps_each=2, denoise=True),
}


def test_every_method_is_in_the_nan_check():
    assert set(METHOD_RUNS) == set(sde_score.METHODS.names())


@pytest.mark.parametrize("method", sorted(METHOD_RUNS))
def test_nan_from_the_final_score_call_is_an_error(method):
    """A model that returns NaN only on its last call must not give NaN samples silently."""
    target, sde = get_target("ring8"), get_sde("ve", N=6)
    opts = dict(shape=(8, 2), generator=torch.Generator().manual_seed(0), progress=False, **METHOD_RUNS[method])
    _, info = sample(target.score_fn(sde), sde, method, return_info=True, **opts)
    opts["generator"] = torch.Generator().manual_seed(0)
    with pytest.raises(FloatingPointError, match="non-finite values"):
        sample(_nan_on_call(target.score_fn(sde), info.nfe), sde, method, **opts)


@pytest.mark.parametrize("method", ["smc", "replacement"])
def test_nan_from_the_final_score_call_is_an_error_in_impute(method):
    target, sde = get_target("bimodal16d"), get_sde("vp")
    x, mask = target.sample(4, torch.Generator().manual_seed(0)), torch.arange(16) < 8
    opts = dict(steps=25, generator=torch.Generator().manual_seed(0), progress=False)
    _, info = sde_score.impute(target.score_fn(sde), x, mask, sde, method, return_info=True, **opts)
    opts["generator"] = torch.Generator().manual_seed(0)
    with pytest.raises(FloatingPointError, match="non-finite values"):
        sde_score.impute(_nan_on_call(target.score_fn(sde), info.nfe), x, mask, sde, method, **opts)


@pytest.mark.parametrize("bad,got", [
    (lambda x, t: x[:1], r"a torch.float32 tensor of shape \(1, 2\)"),
    (lambda x, t: x[:, :1], r"a torch.float32 tensor of shape \(6, 1\)"),
    (lambda x, t: torch.cat([x, x[:, :1]], 1), r"a torch.float32 tensor of shape \(6, 3\)"),
    (lambda x, t: x[:, 0], r"a torch.float32 tensor of shape \(6,\)"),
    (lambda x, t: (x,), "a tuple"),
    (lambda x, t: x.numpy(), "a ndarray"),
    (lambda x, t: x.long(), r"a torch.int64 tensor of shape \(6, 2\)"),
])
@pytest.mark.parametrize("method", ["dpm_solver", "pc"])
def test_score_output_must_be_shaped_like_x(bad, got, method):
    with pytest.raises(ValueError, match=f"the score model returned {got} for x of shape \\(6, 2\\)"):
        sample(bad, "ve", method, shape=(6, 2), steps=3, progress=False)


@pytest.mark.parametrize("method", ["pc", "sde", "annealed_langevin", "heun", "dpm_solver"])
def test_one_step_is_refused(method):
    score = get_target("ring8").score_fn(get_sde("ve"))
    with pytest.raises(ValueError, match="steps must be an integer >= 2, got 1"):
        sample(score, "ve", method, shape=(4, 2), steps=1, progress=False)
    if method in ("pc", "sde", "annealed_langevin"):  # their default is the SDE's N
        with pytest.raises(ValueError, match=r"steps \(default: the SDE's N = 1\) must be an integer >= 2, got 1"):
            sample(score, get_sde("ve", N=1), method, shape=(4, 2), progress=False)


def test_score_output_is_checked_at_every_entry_point():
    bad = lambda x, t: x[:, :1]  # noqa: E731
    match = r"the score model returned a torch.\w+ tensor of shape \((\d+), 1\) for x of shape \(\1, 2\)"
    x = torch.zeros(4, 2)
    calls = [lambda: sde_score.log_likelihood(bad, x.double(), "ve", progress=False),
             lambda: sde_score.ode_encode(bad, x, "ve"),
             lambda: sde_score.impute(bad, x, torch.tensor([True, False]), "ve", steps=3, progress=False),
             lambda: sde_score.optimized_schedule(bad, "ve", 4, shape=(4, 2), fine_levels=8, pilot_samples=4,
                                                  progress=False)]
    for call in calls:
        with pytest.raises(ValueError, match=match):
            call()


def test_discrete_levels_are_required_only_by_discrete_predictors_and_correctors(ring):
    """VP at steps <= beta_max: Euler-Maruyama needs no DDPM betas (it was refused, naming N)."""
    sde = get_sde("vp", N=10)  # constructs: only the discrete chain needs beta_max / N < 1
    x = sample(lambda x, t: -x, sde, "pc", shape=(4, 2), predictor="euler_maruyama", corrector="none",
               progress=False)
    assert torch.isfinite(x).all()
    with pytest.raises(ValueError, match=r"beta_max / N < 1 .*N=10; use N > 20"):
        sde.discretize(torch.zeros(2, 2), 0.5)
    with pytest.raises(ValueError, match="annealed_langevin'.*steps=6"):
        sample(lambda x, t: -x, "vp", "pc", shape=(4, 2), steps=6, predictor="euler_maruyama",
               corrector="annealed_langevin", progress=False)


class _TypedNet(torch.nn.Module):
    """The exact ring8 score through a zero Linear layer in ``dtype``: input of another dtype fails there."""

    def __init__(self, sde, dtype):
        super().__init__()
        self.lin, self.sde, self.target = torch.nn.Linear(2, 2).to(dtype), sde, get_target("ring8")
        torch.nn.init.zeros_(self.lin.weight)
        torch.nn.init.zeros_(self.lin.bias)

    def forward(self, x, t):
        return self.lin(x) + self.target.score(x, t, self.sde)


@pytest.mark.parametrize("dtype,state", [(torch.float64, torch.float64), (torch.float16, torch.float32),
                                         (torch.bfloat16, torch.float32)])
@pytest.mark.parametrize("method", sorted(METHOD_RUNS))
def test_sampling_follows_the_model_dtype(method, dtype, state):
    """float64 models sample in float64; half-precision ones are called in their dtype from a float32 state."""
    sde = get_sde("ve", N=6)
    x = sample(_TypedNet(sde, dtype), sde, method, shape=(3, 2), generator=torch.Generator().manual_seed(0),
               progress=False, **METHOD_RUNS[method])
    assert x.dtype == state and torch.isfinite(x).all()


class _RecordingNet(_TypedNet):
    def forward(self, x, t):
        h = self.lin(x)
        self.seen.add(h.dtype)
        return h.to(x.dtype) + self.target.score(x, t, self.sde)


@pytest.mark.parametrize("dtype", ["bfloat16", torch.float16])
@pytest.mark.parametrize("method", ["pc", "dpm_solver", "ode"])
def test_sample_dtype_runs_a_float32_model_under_autocast(method, dtype):
    """sample(..., dtype=half) on a float32 model: its layers run in that precision (autocast), the solver
    state stays float32."""
    sde = get_sde("ve", N=6)
    net = _RecordingNet(sde, torch.float32)
    net.seen = set()
    x = sample(net, sde, method, shape=(3, 2), dtype=dtype, generator=torch.Generator().manual_seed(0),
               progress=False, **METHOD_RUNS[method])
    assert x.dtype == torch.float32 and torch.isfinite(x).all()
    assert net.seen == {torch.bfloat16 if dtype == "bfloat16" else torch.float16}


def test_sample_dtype_must_fit_the_model():
    sde = get_sde("ve", N=6)
    with pytest.raises(ValueError, match=r"dtype=torch.float64 but the model's parameters are torch.float32"):
        sample(_TypedNet(sde, torch.float32), sde, "pc", shape=(3, 2), dtype="float64", progress=False)
    with pytest.raises(ValueError, match="dtype must be a floating dtype .*got 'int8'"):
        sample(_TypedNet(sde, torch.float32), sde, "pc", shape=(3, 2), dtype="int8", progress=False)
    x = sample(lambda x, t: -x, sde, "pc", shape=(3, 2), steps=6, dtype="float64", progress=False)
    assert x.dtype == torch.float64  # a plain score function follows the state
    with pytest.raises(ValueError, match="dtype must be a floating dtype"):
        check_sampler({"method": "pc", "dtype": "int8"}, sde)
    assert check_sampler({"method": "pc", "dtype": "bf16"}, sde)["dtype"] == "bf16"


@pytest.mark.parametrize("x,match", [
    (torch.zeros(0, 2), r"x is an empty batch \(shape \(0, 2\)\)"),
    (torch.zeros(3, 2, dtype=torch.long), "x must be a floating tensor, got torch.int64"),
    (torch.zeros(3, 2, dtype=torch.bool), "x must be a floating tensor, got torch.bool"),
    (torch.zeros(3, 2, dtype=torch.float16), "ode_encode needs float32 or float64 x, got torch.float16"),
    (torch.zeros(3, 2).numpy(), "x must be a torch.Tensor of shape"),
    (torch.zeros(3, 5), r"x has shape \(3, 5\); the model's data shape is \(2,\)"),
])
def test_ode_encode_checks_its_input(x, match):
    with pytest.raises(ValueError, match=match):
        sde_score.ode_encode(_FakeModule(get_sde("ve")), x)


@pytest.mark.parametrize("eps", [2.0, 1.0])
def test_ode_encode_checks_eps(eps):
    with pytest.raises(ValueError, match=r"eps must lie in \(0, T=1.0\)"):
        sde_score.ode_encode(lambda x, t: -x, torch.zeros(3, 2), "ve", eps=eps)
