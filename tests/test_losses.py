"""Each objective, trained on a Gaussian whose (perturbed) score is known, drives the Fisher
divergence to the exact score close to zero."""
import math

import pytest
import torch
from torch import nn

from sde_score import GaussianMixture, ScoreModel, build_loss, get_sde
from sde_score.losses import LOSSES, DSMLoss, ImportanceTimeSampler, Loss, register_loss
from sde_score.models import ScoreMLP
from sde_score.sdes import bcast

MU = torch.tensor([1.0, -2.0])
COV = torch.tensor([[1.0, 0.6], [0.6, 0.8]])
GAUSS = GaussianMixture([1.0], MU[None], COV[None])


class LinearScore(nn.Module):
    """s(x) = W x + b: contains the exact score -Sigma^-1 (x - mu) of a Gaussian."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x, t):
        return self.lin(x)


def _train(model, loss_fn, steps, lr=1e-2, batch=512):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = GAUSS.sample(batch, g)
        loss = loss_fn(model, x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model


@pytest.mark.parametrize("name", ["ism", "ssm"])
def test_noise_free_objectives_recover_gaussian_score(name):
    torch.manual_seed(0)
    sde = get_sde("vp")
    loss = build_loss(name)
    model = _train(LinearScore(), lambda m, x: loss(ScoreModel(m, sde), x), steps=1500, lr=5e-2)
    x = GAUSS.sample(4000, torch.Generator().manual_seed(1))
    exact = -torch.linalg.solve(COV, (x - MU).T).T
    with torch.no_grad():
        rel = ((model(x, None) - exact) ** 2).sum(1).mean() / (exact ** 2).sum(1).mean()
    assert rel < 0.01, rel


def _relative_fisher(score, levels):
    """E ||std (s - s*)||^2 / E ||std s*||^2 over noise levels (t, alpha, std): x ~ N(alpha mu,
    alpha^2 Sigma + std^2 I), the exact perturbed Gaussian at that level."""
    g = torch.Generator().manual_seed(2)
    num = den = 0.0
    for t, alpha, std in levels:
        level = GaussianMixture([1.0], alpha * MU[None], (alpha ** 2 * COV + std ** 2 * torch.eye(2))[None])
        xt = level.sample(2000, g)
        with torch.no_grad():
            s = score(xt, torch.full((2000,), float(t)))
        exact = level.log_prob(xt.requires_grad_(True))
        exact = torch.autograd.grad(exact.sum(), xt)[0]
        num += float(((std * (s - exact)) ** 2).sum(1).mean())
        den += float(((std * exact) ** 2).sum(1).mean())
    return num / den


@pytest.mark.parametrize("name,sde_name,N,opts", [
    ("dsm", "vp", 1000, {}),
    ("dsm", "vp", 1000, dict(likelihood_weighting=True, importance_sampling=True)),
    ("smld", "ve", 10, {}),
    ("ddpm", "vp", 100, {}),
])
def test_denoising_objectives_recover_perturbed_gaussian_score(name, sde_name, N, opts):
    torch.manual_seed(0)
    sde = get_sde(sde_name, N=N) if sde_name == "vp" else get_sde("ve", sigma_max=5.0, N=N)
    net = ScoreMLP((2,), width=64, depth=2)
    loss = build_loss({"class_path": name, "init_args": opts})

    def score(x, t):  # the net predicts -noise; score = out / sigma(t)
        return net(x, t) / bcast(sde.alpha_sigma(t)[1], x)

    _train(net, lambda m, x: loss(ScoreModel(score, sde), x), steps=1500, lr=3e-3)
    if name == "ddpm":  # DDPM's discrete marginals: alpha_bar_i = prod (1 - beta_j), at t = (i + 1) / N
        abar = torch.cumprod(1 - sde.discrete_beta(torch.arange(N)).float(), 0)
        levels = [((i + 1) / N, float(abar[i].sqrt()), float((1 - abar[i]).sqrt())) for i in range(0, N, 10)]
    else:  # continuous kernel (for smld the grid t_i = i/(N-1) carries NCSN's sigma_i exactly)
        ts = torch.linspace(0.02, 1.0, 10) if name == "dsm" else torch.linspace(0, 1, N)
        levels = [(float(t), *(float(v) for v in sde.alpha_sigma(t[None]))) for t in ts]
    rel = _relative_fisher(score, levels)
    assert rel < 0.02, rel


def test_importance_sampler_density():
    sde = get_sde("vp")
    s = ImportanceTimeSampler(sde, 1e-5)
    t = s.sample(200000, torch.zeros(1), torch.Generator().manual_seed(0))
    assert float(t.min()) >= 1e-5 and float(t.max()) <= 1.0
    # q(t) = g^2 / sigma^2 / Z: the fraction below t=0.01 matches the tabulated CDF's integral
    grid = torch.linspace(1e-5, 0.01, 20001, dtype=torch.float64)
    _, g = sde.sde(torch.zeros(len(grid), 1, dtype=torch.float64), grid)
    dens = g ** 2 / sde.alpha_sigma(grid)[1] ** 2 / s.Z
    expect = float(torch.trapezoid(dens, grid))
    frac = float((t < 0.01).double().mean())
    assert abs(frac - expect) < 4 * math.sqrt(expect * (1 - expect) / len(t)) + 1e-3


def test_loss_errors():
    with pytest.raises(ValueError, match="unknown loss 'nce'"):
        LOSSES.get("nce")
    with pytest.raises(ValueError, match="loss class_path 'nce' is not a registered loss; registered: ddpm, dsm"):
        build_loss({"class_path": "nce"})
    with pytest.raises(TypeError, match="unexpected keyword argument 'n_slices'"):
        build_loss({"class_path": "dsm", "init_args": {"n_slices": 2}})  # each loss takes its own options only
    with pytest.raises(ValueError, match="importance_sampling is defined for likelihood_weighting=True"):
        DSMLoss(importance_sampling=True)
    with pytest.raises(ValueError, match="likelihood_weighting must be True or False, got 'yes'"):
        DSMLoss(likelihood_weighting="yes")
    with pytest.raises(ValueError, match="n_slices must be an integer >= 1, got 0"):
        build_loss({"class_path": "ssm", "init_args": {"n_slices": 0}})
    with pytest.raises(ValueError, match="noise_t must be > 0"):
        build_loss({"class_path": "ism", "init_args": {"noise_t": -1.0}})
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="loss 'smld' needs the 've' SDE"):
        build_loss("smld")(ScoreModel(lambda x, t: x, "vp"), x)
    with pytest.raises(ValueError, match="loss 'ddpm' needs the 'vp' SDE"):
        build_loss("ddpm")(ScoreModel(lambda x, t: x, "subvp"), x)
    with pytest.raises(ValueError, match=r"has no SDE \(.sde\); wrap a bare score function"):
        build_loss("dsm")(lambda x, t: x, x)
    with pytest.raises(ValueError, match="eps must"):
        build_loss({"class_path": "dsm", "init_args": {"eps": 2.0}})(ScoreModel(lambda x, t: x, "vp"), x)


def test_loss_config_round_trip_and_labels():
    """A loss is rebuilt from the class_path/init_args it records; labels reach the model."""
    for name in LOSSES.names():
        loss = build_loss(name)
        assert build_loss(LOSSES.config_of(loss)) == loss
    loss = DSMLoss(likelihood_weighting=True, importance_sampling=True)
    cfg = LOSSES.config_of(loss)
    assert cfg == {"class_path": "sde_score.losses.DSMLoss",
                   "init_args": dict(eps=1e-5, likelihood_weighting=True, importance_sampling=True, reduce_mean=False)}
    seen = []

    def score(x, t, labels=None):
        seen.append(labels)
        return -x

    x, labels = torch.randn(6, 2), torch.arange(6)
    build_loss(cfg)(ScoreModel(score, "vp"), x, labels=labels)
    build_loss(cfg)(ScoreModel(score, "vp"), x)
    assert seen[0] is labels and seen[1] is None


def test_importance_sampler_is_built_once_per_sde():
    loss, model = DSMLoss(likelihood_weighting=True, importance_sampling=True), ScoreModel(lambda x, t: -x, "vp")
    loss(model, torch.randn(4, 2))
    first = loss.t_sampler(model.sde)
    loss(model, torch.randn(4, 2))
    assert loss.t_sampler(model.sde) is first
    assert loss.t_sampler(get_sde("vp", beta_max=10.0)) is not first


def test_a_registered_loss_is_one_class():
    @register_loss("l2_to_minus_x_test")
    class Toy(DSMLoss):
        pass

    try:
        assert isinstance(build_loss("l2_to_minus_x_test"), Loss)
        with pytest.raises(ValueError, match="only Loss subclasses can be registered as a loss"):
            register_loss("not_a_loss")(dict)
    finally:
        LOSSES._items.pop("l2_to_minus_x_test")
