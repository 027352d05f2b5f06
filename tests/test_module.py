"""ScoreModule: a few steps reduce the loss, checkpoints hold EMA weights and reload with
weights_only, non-finite losses stop training, the energy parameterization is conservative, and
loss objects are saved as data."""

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import sde_score
from sde_score.data import Toy2DDataModule
from sde_score.models import ScoreMLP, UNet
from sde_score.module import ScoreModule

ROOT = Path(__file__).resolve().parents[1]


def test_few_steps_reduce_loss_and_ema_checkpoint(tmp_path):
    pl.seed_everything(0)
    dm = Toy2DDataModule("ring8", n_train=4000, n_val=500, batch_size=256)
    model = ScoreModule(ScoreMLP((2,), width=64, depth=2), sde="vp", lr=3e-3)
    dm.setup()
    val = dm.val

    def val_loss():
        torch.manual_seed(0)
        return float(model._loss(val)[0])

    before = val_loss()
    ema = pl.callbacks.EMAWeightAveraging(decay=0.9)
    trainer = pl.Trainer(max_steps=150, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, inference_mode=False,
                         callbacks=[ema, pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)])
    trainer.fit(model, dm)
    after = val_loss()
    assert after < 0.8 * before, (before, after)
    loaded = ScoreModule.load(str(tmp_path / "last.ckpt"))  # weights_only=True
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert "current_model_state" in ckpt  # EMA in state_dict, raw weights kept beside it
    for k, v in loaded.state_dict().items():
        torch.testing.assert_close(v, ckpt["state_dict"][k])
    assert not all(torch.equal(ckpt["state_dict"][k], ckpt["current_model_state"][k]) for k in ckpt["state_dict"])
    x = sde_score.sample(loaded, num_samples=16, steps=30, progress=False)
    assert x.shape == (16, 2)


def test_non_finite_loss_stops_training():
    model = ScoreModule(ScoreMLP((2,), width=8, depth=1), sde="vp")
    with pytest.raises(FloatingPointError, match="non-finite training loss .* at global step 0"):
        model.training_step(torch.full((4, 2), float("nan")), 0)


def test_energy_parameterization_is_conservative():
    model = ScoreModule(UNet((1, 8, 8), channels=(8, 16), attention=False, out_dim=1), sde="vp",
                        parameterization="energy")
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    model = model.double()
    t = torch.full((3,), 0.5, dtype=torch.float64)
    s = model(x, t)
    assert s.shape == x.shape
    xg = x.clone().requires_grad_(True)
    torch.testing.assert_close(s, -torch.autograd.grad(model.energy(xg, t).sum(), xg)[0])
    # the Jacobian of a gradient field is symmetric
    xf = x[:1].clone().requires_grad_(True)
    jac = torch.autograd.functional.jacobian(lambda z: model(z, t[:1]).flatten(), xf).reshape(64, 64)
    torch.testing.assert_close(jac, jac.T, atol=1e-8, rtol=1e-6)


def test_loss_is_an_object_checked_against_the_sde():
    net = ScoreMLP((2,), width=8, depth=1)
    model = ScoreModule(net, sde="ve", loss={"class_path": "smld", "init_args": {"reduce_mean": True}})
    assert model.loss == sde_score.losses.SMLDLoss(reduce_mean=True)
    assert model.hparams["loss"] == {"class_path": "sde_score.losses.SMLDLoss", "init_args": {"reduce_mean": True}}
    with pytest.raises(ValueError, match="loss 'smld' needs the 've' SDE"):
        ScoreModule(net, sde="vp", loss="smld")
    with pytest.raises(ValueError, match="eps must"):
        ScoreModule(net, sde="vp", loss=sde_score.losses.DSMLoss(eps=1.5))
    with pytest.raises(TypeError, match="unexpected keyword argument 'likelihood_weighting'"):
        ScoreModule(net, sde="vp", likelihood_weighting=True)  # moved into the loss


@pytest.mark.parametrize("t,exc,match", [
    (torch.zeros(3), ValueError, r"scale_by_sigma divides the score by sigma\(t\) = 0 at t = 0 \('vp' SDE\)"),
    (torch.full((3, 1), 0.5), ValueError, r"t must have shape \(3,\) to match x, got \(3, 1\)"),
    (torch.full((3,), 1.5), ValueError, r"t must lie in \[0, T=1.0\], got 1.5"),
])
def test_forward_checks_t(t, exc, match):
    model = ScoreModule(ScoreMLP((2,), width=8, depth=1), sde="vp")  # scale_by_sigma by default
    with pytest.raises(exc, match=match):
        model(torch.zeros(3, 2), t)


def test_forward_takes_float64_and_scalar_t():
    model = ScoreModule(ScoreMLP((2,), width=8, depth=1), sde="vp")
    x = torch.zeros(3, 2)
    ref = model(x, torch.full((3,), 0.5))
    torch.testing.assert_close(model(x, torch.full((3,), 0.5, dtype=torch.float64)), ref)
    torch.testing.assert_close(model(x, 0.5), ref)


def test_class_conditional_module_trains_and_samples_by_label(tmp_path):
    """ring8 with its components as labels: the conditional samples of label k lie in mode k; the
    unconditional score (the null label, trained by label dropout) covers all modes."""
    pl.seed_everything(0)
    dm = Toy2DDataModule("ring8", n_train=8000, n_val=200, batch_size=256)
    model = ScoreModule({"class_path": "score_mlp", "init_args": {"data_shape": [2], "width": 64, "depth": 2}},
                        sde="ve", sde_kwargs={"sigma_max": 10.0}, lr=3e-3, num_classes=8, label_dropout=0.2)
    trainer = pl.Trainer(max_steps=600, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
                         inference_mode=False)
    trainer.fit(model, dm)
    model.eval()
    target = dm.target
    for k in range(8):
        x = sde_score.sample(model, "ve", "dpm_solver", num_samples=100, labels=k, progress=False,
                             generator=torch.Generator().manual_seed(k))
        assert (target.responsibilities(x).argmax(1) == k).float().mean() > 0.9, k
    x = sde_score.sample(model, "ve", "dpm_solver", num_samples=800, labels=0, guidance_scale=0.0, progress=False,
                         generator=torch.Generator().manual_seed(9))
    assert len(target.responsibilities(x).argmax(1).unique()) == 8
    cycled = model.generate(16, seed=0, method="dpm_solver", labels=[2, 5])
    modes = target.responsibilities(cycled).argmax(1)
    assert (modes[0::2] == 2).float().mean() > 0.8 and (modes[1::2] == 5).float().mean() > 0.8


@pytest.mark.parametrize("kwargs,match", [
    (dict(net=ScoreMLP((2,), num_classes=3), num_classes=5), "num_classes=5 needs a network built with num_classes=5"),
    (dict(net={"class_path": "score_mlp", "init_args": {"num_classes": 3}}, num_classes=5),
     "net has num_classes=3, the module num_classes=5"),
    (dict(net=ScoreMLP((2,)), label_dropout=0.1), "label_dropout must lie in \\[0, 1\\] and needs num_classes"),
    (dict(net=ScoreMLP((2,), num_classes=3), label_dropout=1.5), "label_dropout must lie in \\[0, 1\\]"),
    (dict(net=ScoreMLP((2,)), num_classes=0), "num_classes must be an integer >= 1"),
])
def test_bad_class_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScoreModule(sde="vp", **kwargs)


def test_labels_need_a_conditional_module_and_a_conditional_module_needs_labels():
    uncond = ScoreModule(ScoreMLP((2,), width=8, depth=1), sde="vp")
    with pytest.raises(ValueError, match="unconditional .* takes no labels"):
        uncond(torch.zeros(3, 2), torch.full((3,), 0.5), torch.zeros(3, dtype=torch.long))
    cond = ScoreModule(ScoreMLP((2,), width=8, depth=1, num_classes=3), sde="vp")
    with pytest.raises(ValueError, match="needs batches \\(x, labels\\)"):
        cond.training_step(torch.zeros(4, 2), 0)
    with pytest.raises(ValueError, match=r"labels must be class indices of shape \(3,\) in \[0, 3\]"):
        cond(torch.zeros(3, 2), torch.full((3,), 0.5), torch.tensor([0, 1, 4]))
    assert cond.null_label == 3 and uncond.null_label is None
    assert uncond.training_step((torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)), 0).isfinite()


class _LossRecorder(pl.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


@pytest.mark.parametrize("net", [
    {"class_path": "sde_score.models.UNet", "init_args": {"data_shape": [1, 8, 8], "channels": [16, 32]}},
    {"class_path": "sde_score.models.NCSNpp",
     "init_args": {"data_shape": [1, 8, 8], "nf": 16, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [4],
                   "fir": True, "progressive_input": "residual", "dropout": 0.0}}])
def test_bf16_mixed_training_on_cpu_stays_close_to_float32(net):
    """--trainer.precision bf16-mixed on CPU (autocast): the same seed gives the same batches, noise and times,
    so the losses differ only by bfloat16 rounding (unit round-off 2^-8 = 4e-3 per operation, averaged over
    a batch: 8e-4 (UNet) and 2e-4 (NCSN++) measured over 6 steps), and they must differ (autocast is on)."""
    from sde_score.data import DigitsDataModule

    losses = {}
    for precision in ("32-true", "bf16-mixed"):
        pl.seed_everything(0)
        rec = _LossRecorder()
        trainer = pl.Trainer(accelerator="cpu", max_steps=6, precision=precision, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             limit_val_batches=0, callbacks=[rec])
        trainer.fit(ScoreModule(net, sde="vp", lr=1e-3), datamodule=DigitsDataModule(batch_size=64))
        losses[precision] = torch.tensor(rec.losses)
    a, b = losses["32-true"], losses["bf16-mixed"]
    assert len(a) == 6 and torch.isfinite(b).all()
    rel = (a - b).abs() / a
    assert rel.max() < 1e-2 and rel.max() > 0, rel


def test_compile_net_keeps_checkpoint_keys_and_refuses_double_backward():
    net = {"class_path": "sde_score.models.ScoreMLP", "init_args": {"data_shape": [2], "width": 16, "depth": 1}}
    plain, compiled = ScoreModule(net, sde="vp"), ScoreModule(net, sde="vp", compile_net="eager")
    assert list(compiled.state_dict()) == list(plain.state_dict())
    compiled.load_state_dict(plain.state_dict())
    x, t = torch.randn(4, 2), torch.rand(4) * 0.9 + 0.05
    torch.testing.assert_close(compiled(x, t), plain(x, t))
    with pytest.raises(ValueError, match="compile_net=True does not support .*SSMLoss"):
        ScoreModule(net, sde="vp", loss="ssm", compile_net=True)
