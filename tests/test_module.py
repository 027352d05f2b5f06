"""ScoreModule and the `sde-score` CLI: a few steps reduce the loss, checkpoints hold EMA weights and
reload with weights_only, resume after kill -9 continues at the saved step, DDP on 2 CPU processes
predicts the same samples as one process, configs round-trip, bad configs fail clearly."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml

import sde_score
from sde_score.cli import main as cli_main
from sde_score.data import Toy2DDataModule
from sde_score.models import ScoreMLP, UNet
from sde_score.module import ScoreModule

ROOT = Path(__file__).resolve().parents[1]


def _tiny_config(tmp_path: Path, **overrides) -> Path:
    cfg = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 30, "default_root_dir": str(tmp_path),
                    "enable_progress_bar": False, "enable_model_summary": False, "log_every_n_steps": 5,
                    "logger": {"class_path": "pytorch_lightning.loggers.CSVLogger",
                               "init_args": {"save_dir": str(tmp_path / "logs")}},
                    "callbacks": [
                        {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                         "init_args": {"dirpath": str(tmp_path / "ckpt"), "save_last": True,
                                       "every_n_train_steps": 10}},
                        {"class_path": "pytorch_lightning.callbacks.EMAWeightAveraging",
                         "init_args": {"decay": 0.9}},
                        {"class_path": "sde_score.callbacks.PredictionWriter",
                         "init_args": {"output_dir": str(tmp_path / "pred")}}]},
        "model": {"net": {"class_path": "sde_score.models.ScoreMLP",
                          "init_args": {"data_shape": [2], "width": 32, "depth": 1}},
                  "sde": "vp", "lr": 1e-3, "sampler": {"method": "pc", "steps": 30}},
        "data": {"class_path": "sde_score.data.Toy2DDataModule",
                 "init_args": {"name": "ring8", "n_train": 2000, "n_val": 200, "n_test": 200, "batch_size": 128,
                               "predict_samples": 300, "predict_batch_size": 100}},
    }
    for key, value in overrides.items():
        node = cfg
        *path, last = key.split(".")
        for k in path:
            node = node[k]
        node[last] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_few_steps_reduce_loss_and_ema_checkpoint(tmp_path):
    pl.seed_everything(0)
    dm = Toy2DDataModule("ring8", n_train=4000, n_val=500, batch_size=256)
    model = ScoreModule(ScoreMLP((2,), width=64, depth=2), sde="vp", lr=3e-3)
    dm.setup()
    val = dm.val

    def val_loss():
        torch.manual_seed(0)
        return float(model._loss(val))

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


def test_cli_fit_predict_and_config_round_trip(tmp_path, capsys):
    cfg = _tiny_config(tmp_path)
    cli_main(["fit", "--config", str(cfg)])
    assert (tmp_path / "ckpt" / "last.ckpt").exists()
    cli_main(["predict", "--config", str(cfg), "--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt")])
    z = np.load(tmp_path / "pred" / "samples.npz")
    assert z["samples"].shape == (300, 2) and np.isfinite(z["samples"]).all()
    assert (tmp_path / "pred" / "samples.png").stat().st_size > 1000
    assert not list((tmp_path / "pred").glob(".*"))  # no shard or temporary file left
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(cfg), "--print_config"])
    printed = capsys.readouterr().out
    (tmp_path / "printed.yaml").write_text(printed)
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(tmp_path / "printed.yaml"), "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out) == yaml.safe_load(printed)


@pytest.mark.parametrize("override,match", [
    ({"model.sde": "cld"}, "unknown SDE 'cld'"),
    ({"model.lr": -0.1}, "lr must be > 0"),
    ({"model.loss": "nce"}, "unknown loss 'nce'"),
    ({"data": {"class_path": "sde_score.data.TensorDataModule", "init_args": {"path": "/nonexistent.npz"}}},
     "does not exist"),
])
def test_bad_config_values(tmp_path, override, match, capsys):
    cfg = _tiny_config(tmp_path, **override)
    with pytest.raises((ValueError, SystemExit)) as info:
        cli_main(["fit", "--config", str(cfg)])
    text = str(info.value) + capsys.readouterr().err
    assert match in text, text[-2000:]


def _run(args, **kw):
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "sde_score.cli"] + args, cwd=ROOT, env=env,
                          capture_output=True, text=True, **kw)


def test_resume_after_kill_continues_at_saved_step(tmp_path):
    cfg = _tiny_config(tmp_path, **{"trainer.max_steps": 100000})
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.Popen([sys.executable, "-m", "sde_score.cli", "fit", "--config", str(cfg)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    last = tmp_path / "ckpt" / "last.ckpt"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if last.exists():
                try:
                    if torch.load(last, weights_only=True)["global_step"] >= 30:
                        break
                except Exception:  # being replaced right now
                    pass
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    step = torch.load(last, weights_only=True)["global_step"]
    assert step >= 30
    out = _run(["fit", "--config", str(cfg), "--ckpt_path", "last", "--trainer.max_steps", str(step + 20)],
               timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"Restoring states from the checkpoint path at {last}" in out.stderr + out.stdout
    assert torch.load(last, weights_only=True)["global_step"] == step + 20


def test_ddp_two_cpu_processes_fit_and_predict_same_samples(tmp_path):
    cfg = _tiny_config(tmp_path, **{"trainer.max_steps": 10})
    out = _run(["fit", "--config", str(cfg), "--trainer.strategy", "ddp", "--trainer.devices", "2"], timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    ckpt = str(tmp_path / "ckpt" / "last.ckpt")
    out = _run(["predict", "--config", str(cfg), "--ckpt_path", ckpt, "--trainer.strategy", "ddp",
                "--trainer.devices", "2"], timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    ddp = np.load(tmp_path / "pred" / "samples.npz")["samples"]
    out = _run(["predict", "--config", str(cfg), "--ckpt_path", ckpt], timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    single = np.load(tmp_path / "pred" / "samples.npz")["samples"]
    assert ddp.shape == (300, 2)
    np.testing.assert_allclose(ddp, single, rtol=1e-5, atol=1e-5)  # per-batch seeds: same samples
