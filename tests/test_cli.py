"""The `sde-score` CLI: fit / predict and config round trips, bad configs fail clearly, resume after
kill -9 continues at the saved step, DDP on 2 CPU processes predicts the same samples as one
process, loss configs and checkpoints from before loss objects."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import sde_score
from sde_score.cli import main as cli_main
from sde_score.models import ScoreMLP
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
    # each of these failed only after training had run (or exited 0 and broke every later predict)
    ({"model.sampler": {"method": "pc", "snrr": 0.1}}, "unknown option(s) snrr for method 'pc'"),
    ({"model.val_sample_images": -3}, "val_sample_images must be an integer >= 0, got -3"),
    ({"trainer.callbacks": [{"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                             "init_args": {"dirpath": "{file}/ckpt"}}]}, "the checkpoint dirpath"),
])
def test_bad_config_values(tmp_path, override, match, capsys):
    (tmp_path / "file").write_text("a file, not a directory")
    key, value = next(iter(override.items()))
    if key == "trainer.callbacks":
        value[0]["init_args"]["dirpath"] = str(tmp_path / "file" / "ckpt")
    cfg = _tiny_config(tmp_path, **{key: value})
    with pytest.raises((ValueError, PermissionError, SystemExit)) as info:
        cli_main(["fit", "--config", str(cfg)])
    text = str(info.value) + capsys.readouterr().err
    assert match in text, text[-2000:]


def test_predict_settings_given_at_predict_win_and_the_sde_cannot_change(tmp_path):
    cfg = _tiny_config(tmp_path, **{"model.sde": "ve", "trainer.max_steps": 10})
    cli_main(["fit", "--config", str(cfg)])
    last = str(tmp_path / "ckpt" / "last.ckpt")
    base = ["predict", "--config", str(cfg), "--ckpt_path", last]
    with pytest.raises(ValueError, match="model.sde='vp' differs from the checkpoint's 've'"):
        cli_main(base + ["--model.sde", "vp"])
    with pytest.raises(ValueError, match="steps must be an integer >= 2, got 1"):  # the given sampler is used
        cli_main(base + ["--model.sampler", "{method: pc, steps: 1}"])
    cli_main(base)
    saved = np.load(tmp_path / "pred" / "samples.npz")["samples"]
    cli_main(base + ["--model.sampler", "{method: dpm_solver, steps: 8}"])
    assert not np.allclose(np.load(tmp_path / "pred" / "samples.npz")["samples"], saved)
    (tmp_path / "file").write_text("a file, not a directory")
    with pytest.raises(PermissionError, match="the prediction output_dir"):
        cli_main(base + ["--trainer.callbacks+=sde_score.callbacks.PredictionWriter",
                         "--trainer.callbacks.output_dir", str(tmp_path / "file" / "pred")])


def test_explicit_model_keys(tmp_path):
    from sde_score.cli import explicit_model_keys

    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  sde: ve\n  lr: 0.1\ntrainer: {max_steps: 3}\n")
    assert explicit_model_keys(["predict", "--config", str(cfg), "--model.sampler={method: ode}",
                                "--model.sde_kwargs.sigma_max", "5", "--model", "{sample_seed: 3}"]) == \
        {"sde", "lr", "sampler", "sde_kwargs", "sample_seed"}


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


def test_cli_loss_object_from_yaml_and_legacy_checkpoint(tmp_path):
    """A loss named by class_path/init_args in YAML trains and is saved as data; a checkpoint written
    before losses were objects (loss name + module-level DSM options) still loads in both loaders."""
    loss = {"class_path": "dsm", "init_args": {"likelihood_weighting": True, "importance_sampling": True}}
    cfg = _tiny_config(tmp_path, **{"model.loss": loss, "trainer.max_steps": 5})
    cli_main(["fit", "--config", str(cfg)])
    last = tmp_path / "ckpt" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert saved["hyper_parameters"]["loss"] == loss  # the CLI saves the config as given
    direct = ScoreModule(ScoreMLP((2,), width=8, depth=1), loss=sde_score.losses.DSMLoss(likelihood_weighting=True))
    assert direct.hparams["loss"] == {  # a loss object is saved as the data that rebuilds it
        "class_path": "sde_score.losses.DSMLoss",
        "init_args": {"eps": 1e-5, "likelihood_weighting": True, "importance_sampling": False, "reduce_mean": False}}
    assert ScoreModule.load(last).loss == sde_score.losses.DSMLoss(likelihood_weighting=True, importance_sampling=True)
    cli_main(["predict", "--config", str(cfg), "--ckpt_path", str(last)])
    old = dict(saved["hyper_parameters"])
    old.update(loss="dsm", loss_kwargs={}, likelihood_weighting=True, importance_sampling=True, reduce_mean=True,
               eps=1e-4)
    legacy = tmp_path / "legacy.ckpt"
    torch.save({**saved, "hyper_parameters": old}, legacy)
    expect = sde_score.losses.DSMLoss(eps=1e-4, likelihood_weighting=True, importance_sampling=True, reduce_mean=True)
    assert ScoreModule.load(legacy).loss == expect
    cli_main(["predict", "--config", str(cfg), "--ckpt_path", str(legacy)])
    assert np.load(tmp_path / "pred" / "samples.npz")["samples"].shape == (300, 2)


def test_cli_trains_a_diffusers_unet_from_yaml(tmp_path):
    pytest.importorskip("diffusers")
    unet = {"block_out_channels": [8, 16], "layers_per_block": 1, "norm_num_groups": 4,
            "down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"]}
    cfg = _tiny_config(tmp_path, **{
        "trainer.max_steps": 4,
        "model.net": {"class_path": "diffusers_unet", "init_args": {"data_shape": [1, 8, 8], "unet": unet}},
        "model.sampler": {"method": "dpm_solver", "steps": 4},
        "data": {"class_path": "sde_score.data.DigitsDataModule",
                 "init_args": {"batch_size": 32, "predict_samples": 8, "predict_batch_size": 8}}})
    cli_main(["fit", "--config", str(cfg)])
    cli_main(["predict", "--config", str(cfg), "--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt")])
    z = np.load(tmp_path / "pred" / "samples.npz")
    assert z["samples"].shape == (8, 1, 8, 8) and np.isfinite(z["samples"]).all()
    assert type(ScoreModule.load(str(tmp_path / "ckpt" / "last.ckpt")).net).__name__ == "DiffusersUNet"


def _config_in(tmp_path: Path, name: str, data_root: Path, **data_args) -> Path:
    """A config of experiments/configs with its outputs moved under tmp_path and its data at data_root."""
    cfg = yaml.safe_load((ROOT / "experiments" / "configs" / name).read_text())
    tr = cfg["trainer"]
    tr.update(accelerator="cpu", default_root_dir=str(tmp_path), enable_progress_bar=False,
              logger={"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path)}})
    for cb in tr["callbacks"]:
        for key in ("dirpath", "output_dir"):
            if key in cb["init_args"]:
                cb["init_args"][key] = str(tmp_path / key)
    cfg["data"]["init_args"].update(root=str(data_root), **data_args)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_trains_the_tiny_ncsnpp_on_a_png_folder(tmp_path):
    """experiments/configs/imagefolder_tiny.yaml (NCSN++, VE, the network given sigma) fits on generated
    16 x 16 PNGs (24 x 20 ones, cropped and resized) and predicts a picture."""
    from image_files import write_png_folder

    write_png_folder(tmp_path / "images", n_per_class=10, size=20, classes=None)
    cfg = _config_in(tmp_path, "imagefolder_tiny.yaml", tmp_path / "images")
    cli_main(["fit", "--config", str(cfg), "--trainer.max_steps", "3", "--trainer.limit_val_batches", "1"])
    ckpt = tmp_path / "dirpath" / "last.ckpt"
    assert ckpt.is_file()
    cli_main(["predict", "--config", str(cfg), "--ckpt_path", str(ckpt)])
    samples = np.load(tmp_path / "output_dir" / "samples.npz")["samples"]
    assert samples.shape == (16, 3, 16, 16) and np.isfinite(samples).all()
    assert (tmp_path / "output_dir" / "samples.png").is_file()


@pytest.mark.parametrize("name, params", [("cifar10_ncsnpp_ve.yaml", 107_587_075),
                                          ("cifar10_ddpmpp_vp.yaml", 61_804_419)])
def test_paper_cifar10_configs_build_the_paper_networks(tmp_path, name, params, capsys):
    """The GPU configs parse through the CLI and build the paper code's networks (its parameter count) with the
    paper's training settings; their data module reads CIFAR-10's batch files."""
    from image_files import write_cifar10
    from sde_score.image_data import CIFAR10DataModule

    write_cifar10(tmp_path / "cifar", n=4)
    cfg = _config_in(tmp_path, name, tmp_path / "cifar")
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(cfg), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    model_cfg = printed["model"]
    module = ScoreModule(**model_cfg)
    fourier = getattr(module.net, "fourier", None)  # the paper's frozen parameter, a buffer here
    n = sum(p.numel() for p in module.net.parameters()) + (fourier.W.numel() if fourier is not None else 0)
    assert n == params
    assert (module.lr, module.hparams.warmup_steps, module.hparams.grad_clip) == (2e-4, 5000, 1.0)
    ema = [c for c in printed["trainer"]["callbacks"] if c["class_path"].endswith("WarmupEMA")]
    assert ema[0]["init_args"]["decay"] == (0.999 if "ncsnpp" in name else 0.9999)
    dm = CIFAR10DataModule(**printed["data"]["init_args"])
    assert dm.data_shape == (3, 32, 32) and dm.batch_size == 128
