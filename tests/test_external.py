"""Adapters for outside models against the exact mixture score: a network that predicts eps, v, x0 or a
denoised image at any time input, built from the exact score by the inverse formulas, wraps back to the
exact score (float64, 1e-6) for every SDE."""
from types import SimpleNamespace

import pytest
import torch

from sde_score import SDES, get_sde, get_target, sample
from sde_score.external import (PREDICTIONS, TIME_INPUTS, prediction_from_score, time_from_input, time_input,
                                wrap)


def _fake_net(target, sde, prediction, kind):
    """What an outside network trained for ``prediction`` at ``kind`` time inputs would output (exactly)."""
    def net(x_in, tau):
        t = time_from_input(kind, tau, sde)
        alpha, sigma = sde.alpha_sigma(t)
        x = x_in * alpha[:, None] if prediction == "denoiser" else x_in
        return prediction_from_score(prediction, target.score(x, t, sde), x, alpha, sigma)
    return net


@pytest.mark.parametrize("sde_name", [n for n in SDES.names() if n != "vp_const_test"])
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("kind", TIME_INPUTS)
def test_every_adapter_round_trips_the_exact_score(sde_name, prediction, kind):
    target, sde = get_target("gmm16d"), get_sde(sde_name)
    g = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(32, 16, generator=g, dtype=torch.float64)
    t = sde.default_eps + (sde.T - sde.default_eps) * torch.rand(32, generator=g, dtype=torch.float64)
    model = wrap(_fake_net(target, sde, prediction, kind), sde, prediction=prediction, time_input=kind)
    torch.testing.assert_close(model(x, t), target.score(x, t, sde), rtol=1e-6, atol=1e-6)


def test_time_inputs_are_the_named_quantities():
    sde = get_sde("discrete_vp")
    t = torch.tensor([0.001, 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(time_input("index", t, sde), torch.tensor([0.0, 499.0, 999.0], dtype=torch.float64))
    s = sde.edm_sigma(t)
    torch.testing.assert_close(time_input("c_noise", t, sde), 0.25 * torch.log(s))
    for kind in TIME_INPUTS:
        torch.testing.assert_close(time_from_input(kind, time_input(kind, t, sde), sde), t)


def test_outputs_are_unwrapped_and_learned_variance_split():
    target, sde = get_target("ring8"), get_sde("vp")
    eps_net = _fake_net(target, sde, "eps", "t")

    def diffusers_like(x, tau):  # returns an object with .sample holding (mean, variance) channels
        eps = eps_net(x, tau)
        return SimpleNamespace(sample=torch.cat([eps, torch.full_like(eps, 7.0)], 1))

    model = wrap(diffusers_like, sde, output="sample", learned_variance=True)
    x, t = torch.randn(5, 2, dtype=torch.float64), torch.full((5,), 0.3, dtype=torch.float64)
    torch.testing.assert_close(model(x, t), target.score(x, t, sde))
    with pytest.raises(ValueError, match="returned a SimpleNamespace; pass output='sample'"):
        wrap(diffusers_like, sde)(x, t)
    with pytest.raises(ValueError, match="learned_variance expects 4 output channels"):
        wrap(eps_net, sde, learned_variance=True)(x, t)


def test_labels_reach_the_network_by_keyword_and_samplers_run_on_wrapped_models():
    target, sde = get_target("ring8"), get_sde("ve")
    classes = torch.arange(8)

    def net(x, tau, class_labels=None):
        return prediction_from_score("eps", target.score(x, tau, sde, class_labels, classes), x,
                                     *sde.alpha_sigma(tau))

    model = wrap(net, sde, labels="class_labels", num_classes=8, data_shape=(2,))
    ref = sample(target.score_fn(sde), sde, "dpm_solver", shape=(500, 2), labels=3,
                 generator=torch.Generator().manual_seed(0), progress=False)
    x = sample(model, method="dpm_solver", num_samples=500, labels=3, generator=torch.Generator().manual_seed(0),
               progress=False)
    torch.testing.assert_close(x, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kwargs,match", [
    (dict(prediction="noise"), "unknown prediction 'noise'"),
    (dict(time_input="step"), "unknown time_input 'step'"),
    (dict(output=3), "output must be an attribute name or a callable"),
])
def test_wrap_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        wrap(lambda x, t: x, "vp", **kwargs)


def _paper_checkpoint(net, path, shadow_shift=0.5, step=1234):
    """The layout score_sde_pytorch's training loop saves: a DataParallel state dict, the EMA's shadow
    parameters in parameters() order, the optimizer state and the step."""
    model = {f"module.{k}": v.clone() for k, v in net.state_dict().items()}
    shadow = [p.detach().clone() + shadow_shift for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(net.parameters())
    torch.save(dict(optimizer=opt.state_dict(), model=model,
                    ema=dict(decay=0.9999, num_updates=step, shadow_params=shadow), step=torch.tensor(step)), path)
    return shadow


def test_score_sde_checkpoint_layout_is_read_with_its_ema(tmp_path):
    from sde_score.external import load_score_sde_checkpoint
    from sde_score.models import UNet

    torch.manual_seed(0)
    src = UNet((1, 8, 8), channels=(8, 16), emb_dim=16)
    shadow = _paper_checkpoint(src, tmp_path / "checkpoint_10.pth")
    dst = UNet((1, 8, 8), channels=(8, 16), emb_dim=16)
    info = load_score_sde_checkpoint(tmp_path / "checkpoint_10.pth", dst)
    assert info == {"step": 1234, "ema_decay": 0.9999, "num_updates": 1234}
    for p, s in zip(dst.parameters(), shadow):
        torch.testing.assert_close(p, s)
    for name, buf in src.named_buffers():  # buffers (the Fourier W) come from the model state
        torch.testing.assert_close(dict(dst.named_buffers())[name], buf)
    raw = UNet((1, 8, 8), channels=(8, 16), emb_dim=16)
    load_score_sde_checkpoint(tmp_path / "checkpoint_10.pth", raw, ema=False)
    for a, b in zip(raw.state_dict().values(), src.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_score_sde_checkpoint_errors(tmp_path):
    from sde_score.external import load_score_sde_checkpoint
    from sde_score.models import ScoreMLP, UNet

    _paper_checkpoint(ScoreMLP((2,), width=8, depth=1), tmp_path / "a.pth")
    with pytest.raises(ValueError, match="does not fit UNet: missing"):
        load_score_sde_checkpoint(tmp_path / "a.pth", UNet((1, 8, 8), channels=(8, 16), emb_dim=16))
    (tmp_path / "b.pth").write_bytes(b"\x80\x02truncated")
    with pytest.raises(ValueError, match="truncated or not a checkpoint"):
        load_score_sde_checkpoint(tmp_path / "b.pth", ScoreMLP((2,)))

    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"model": Payload()}, tmp_path / "c.pth")
    with pytest.raises(ValueError, match="holds pickled objects"):
        load_score_sde_checkpoint(tmp_path / "c.pth", ScoreMLP((2,)))
