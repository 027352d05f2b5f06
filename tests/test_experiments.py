"""Experiment and benchmark scripts: --help parses, and a tiny run of each writes its files."""
import ast
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

import sde_score

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["quickstart", "bench_samplers", "bench_likelihood", "likelihood_eval", "langevin_failure", "nfe_curve",
           "digits_inpaint", "likelihood_accuracy", "digits_bpd", "digits_guidance",
           "bench_impute_hard", "digits_superres", "bench_compile", "sample_quality", "digits_networks",
           "linear_response", "schedule_polish"]
ALLOWED_ROOTS = set(sys.stdlib_module_names) | {"sde_score", "torch", "numpy", "yaml", "scipy", "tqdm", "sklearn",
                                                "torchsde", "torchdiffeq", "pytorch_lightning"}


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_scripts_are_all_listed_and_import_only_the_public_library():
    """Scripts never import each other, touch sys.path or import private names: what they share
    lives in the library (sde_score.benchmarks, metrics)."""
    assert sorted(p.stem for p in (ROOT / "experiments").glob("*.py")) == sorted(SCRIPTS)
    for name in SCRIPTS:
        tree = ast.parse((ROOT / "experiments" / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.module.split(".")[0] in ALLOWED_ROOTS, (name, node.module)
                assert not any(part.startswith("_") for part in node.module.split(".")[1:]), (name, node.module)
                assert not any(a.name.startswith("_") for a in node.names), (name, [a.name for a in node.names])
            elif isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] in ALLOWED_ROOTS for a in node.names), name
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert (node.value.id, node.attr) != ("sys", "path"), name


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        _load(name).main(["--help"])
    assert e.value.code == 0 and "usage" in capsys.readouterr().out


def test_quickstart_tiny(tmp_path):
    cfg = yaml.safe_load((ROOT / "experiments/configs/toy2d.yaml").read_text().replace("outputs/toy2d", str(tmp_path)))
    cfg["trainer"]["max_steps"] = 20
    cfg["model"]["sampler"] = {"method": "pc", "steps": 20}
    cfg["model"]["val_sample_images"] = 0
    cfg["data"]["init_args"].update(predict_samples=200, predict_batch_size=100, n_test=50)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = _load("quickstart").main(["--config", str(path), "--logger", "false", "--no-progress", "--num-test", "20"])
    assert (tmp_path / "predict" / "samples.png").exists()
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["num_samples"] == 200 and saved["test_nll_nats"] == res["test_nll_nats"]
    assert "mode_weight_tv" in saved and "exact_test_nll_nats" in saved


def test_bench_and_experiments_tiny(tmp_path):
    out = str(tmp_path)
    r = _load("bench_samplers").main(["--quick", "--targets", "ring8", "--sdes", "vp", "--out", out])
    assert r["quality"] and r["overhead"] and r["impute"]
    assert (tmp_path / "bench_samplers.json").exists() and (tmp_path / "bench_samplers.png").exists()
    r = _load("bench_samplers").main(["--ideal", "--quick", "--ideal-targets", "ring8", "--ideal-sdes", "vp",
                                      "--out", out])
    assert all(row["ideal_gap"] is not None and row["ideal_floor"] > 0 for row in r["rows"])
    assert (tmp_path / "bench_samplers_ideal.png").exists()
    r = _load("bench_likelihood").main(["--quick", "--targets", "ring8", "--sdes", "vp", "--out", out])
    assert all(row["solver_mae"] < 1e-2 for row in r["rows"])
    r = _load("likelihood_accuracy").main(["--targets", "ring8", "--sdes", "ve", "--num-points", "8", "--out", out])
    assert len(r["rows"]) == 6
    r = _load("nfe_curve").main(["--quick", "--targets", "ring8", "--sdes", "vp", "--out", out])
    assert (tmp_path / "nfe_curve_ring8.png").exists()
    r = _load("linear_response").main(["--quick", "--out", out])
    assert len(r["rows"]) == 2 and all(row["predicted_gap"] is not None for row in r["rows"])
    assert (tmp_path / "linear_response.png").exists()
    r = _load("schedule_polish").main(["--quick", "--out", out])
    assert len(r["rows"]) == 1 and (tmp_path / "schedule_polish.json").exists()
    r = _load("likelihood_eval").main(["--target", "ring8", "--num-points", "16", "--out", out, "--no-progress"])
    assert r["num_points"] == 16 and (tmp_path / "ring8_vp_ring8_test.csv").exists()
    r = _load("langevin_failure").main(["--num-samples", "200", "--langevin-steps", "50", "--train-steps", "20",
                                        "--out", out, "--no-progress"])
    assert (tmp_path / "langevin_failure.png").exists() and len(r["weights"]) == 3


def test_digits_bpd_tiny(tmp_path):
    r = _load("digits_bpd").main(["--variants", "vp", "--max-steps", "3", "--num-test", "4", "--out", str(tmp_path),
                                  "--no-progress", "--fourier-scale", "16"])
    models = [row["model"] for row in r["rows"]]
    assert models == ["gaussian_full_cov", "gaussian_per_pixel", "vp"]
    from sde_score.module import ScoreModule

    net = ScoreModule.load(str(tmp_path / "vp" / "checkpoints" / "last.ckpt")).net
    assert net.init_args["fourier_scale"] == 16  # the paper's recipe, as asked
    assert (tmp_path / "vp_samples.png").exists()
    path = _load("digits_inpaint").main(["--ckpt", str(tmp_path / "vp" / "checkpoints" / "last.ckpt"),
                                         "--num-images", "2", "--steps", "25", "--smc-steps", "25",
                                         "--num-particles", "2",
                                         "--out", str(tmp_path), "--no-progress"])
    assert path.exists()
    ckpt = str(tmp_path / "vp" / "checkpoints" / "last.ckpt")
    r = _load("bench_likelihood").main(["--ckpt", ckpt, "--paper-ckpt", ckpt, "--quick", "--out", str(tmp_path)])
    assert len(r["rows"]) == 3 and (tmp_path / "bench_likelihood_digits.json").exists()
    assert "speedup" in r["equal_accuracy"]
    # one model as both recipes: the end-to-end rows are the same rows (same probes), so the same summary
    assert r["end_to_end"]["paper_nfe"] == r["equal_accuracy"]["paper_nfe"]
    # the paper's two-pass procedure solves the same ODE as solver="rk45": same values, same NFE
    from sde_score.data import DigitsDataModule
    from sde_score.module import ScoreModule

    bench = _load("bench_likelihood")
    model = ScoreModule.load(str(tmp_path / "vp" / "checkpoints" / "last.ckpt"))
    dm = DigitsDataModule(seed=0)
    dm.setup()
    x = dm.dequantized("test")[:3].float()
    logp, nfe, _ = bench.paper_procedure(model, x, 1e-5, 1e-4, torch.Generator().manual_seed(1))
    ours = sde_score.log_likelihood(model, x, solver="rk45", rtol=1e-4, atol=1e-4, progress=False,
                                    generator=torch.Generator().manual_seed(1))
    assert nfe == ours.nfe
    # the same arithmetic in the same order: identical up to float32 round-off (measured 0.0)
    torch.testing.assert_close(logp, ours.logp, rtol=0, atol=1e-5)
    r = _load("bench_samplers").main(["--ckpt", str(tmp_path / "vp" / "checkpoints" / "last.ckpt"), "--quick",
                                      "--out", str(tmp_path)])
    assert len(r["rows"]) == 4 and (tmp_path / "bench_samplers_ckpt.json").exists()


def test_digits_guidance_tiny(tmp_path):
    """A conditional UNet trained for a few steps through the CLI config's own settings, then the judge."""
    import pytorch_lightning as pl

    from sde_score.data import DigitsDataModule
    from sde_score.module import ScoreModule

    cfg = yaml.safe_load((ROOT / "experiments" / "configs" / "digits_cond.yaml").read_text())["model"]
    net = {"class_path": "unet", "init_args": {**cfg["net"]["init_args"], "channels": [8, 16], "attention": False}}
    model = ScoreModule(net, sde=cfg["sde"], num_classes=cfg["num_classes"], label_dropout=cfg["label_dropout"])
    pl.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
               default_root_dir=tmp_path, inference_mode=False,
               callbacks=[pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)]
               ).fit(model, DigitsDataModule(batch_size=32))
    from sde_score.classifier_module import ClassifierModule

    clf = ClassifierModule({"class_path": "noise_classifier", "init_args": {"channels": [8, 16]}})
    pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
               default_root_dir=tmp_path, callbacks=[pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "clf",
                                                                                  save_last=True)]
               ).fit(clf, DigitsDataModule(batch_size=32))
    r = _load("digits_guidance").main(["--ckpt", str(tmp_path / "last.ckpt"), "--scales", "0", "1", "--per-class",
                                       "10", "--steps", "4", "--out", str(tmp_path),
                                       "--classifier", str(tmp_path / "clf" / "last.ckpt")])
    assert [(row["guidance"], row["scale"]) for row in r["rows"]] == [
        ("classifier_free", 0.0), ("classifier_free", 1.0), ("classifier", 0.0), ("classifier", 1.0)]
    assert r["judge_test_accuracy"] > 0.9
    assert all(row["num_samples"] == 100 for row in r["rows"])
    assert json.loads((tmp_path / "digits_guidance.json").read_text())["rows"][1]["nfe"] == 4
    assert (tmp_path / "digits_guidance.png").exists() and (tmp_path / "digits_cond_grid.png").exists()


def test_bench_impute_hard_tiny(tmp_path):
    r = _load("bench_impute_hard").main(["--quick", "--dps", "0.5", "--out", str(tmp_path)])
    assert [row["method"] for row in r["rows"]] == ["smc K=4", "replace", "dps 0.5"]
    assert all(0 <= row["tv"] <= 1 and row["nfe"] > 0 for row in r["rows"]) and r["rows"][0]["min_ess"] <= 4
    assert (tmp_path / "bench_impute_hard.json").exists()
    r = _load("bench_impute_hard").main(["--quick", "--noise-std", "0.3", "--compare-resampling", "--out",
                                         str(tmp_path)])
    assert [row["method"] for row in r["rows"]] == ["smc K=4", "smc K=64 ESS<K/2", "replace"]
    assert r["noise_std"] == 0.3 and (tmp_path / "bench_impute_hard_noise0.3.json").exists()
    with pytest.raises(ValueError, match=r"unknown condition\(s\) \['obs\[0::2\] 9\|9'\]"):
        _load("bench_impute_hard").main(["--quick", "--only", "obs[0::2] 9|9", "--out", str(tmp_path)])
    r = _load("bench_impute_hard").main(["--quick", "--target", "image64", "--out", str(tmp_path)])
    assert r["rows"][0]["condition"] == "rows[:1] 1|2" and (tmp_path / "bench_impute_hard_image64.json").exists()


def test_digits_superres_tiny(tmp_path, capsys):
    import pytorch_lightning as pl

    from sde_score.data import DigitsDataModule
    from sde_score.module import ScoreModule

    model = ScoreModule({"class_path": "unet", "init_args": {"channels": [8, 16], "attention": False}}, sde="vp")
    pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
               default_root_dir=tmp_path, callbacks=[pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)]
               ).fit(model, DigitsDataModule(batch_size=32))
    path = _load("digits_superres").main(["--ckpt", str(tmp_path / "last.ckpt"), "--num-images", "2", "--steps", "25",
                                          "--smc-steps", "25", "--num-particles", "2", "--out", str(tmp_path),
                                          "--no-progress"])
    assert path.exists()
    worst = float(capsys.readouterr().out.split("(data space): ")[1].split()[0])
    assert worst < 1e-5  # the reconstructions pool to the observation


def test_bench_compile_tiny(tmp_path):
    """The compiled path through ScoreModule(compile_net=...) with the capture-only backend (inductor's
    compilation takes minutes on 2 cores: the benchmark itself measures it)."""
    r = _load("bench_compile").main(["--backend", "eager", "--nets", "unet_digits", "--batch", "4", "--reps", "1",
                                     "--warmup", "0", "--out", str(tmp_path)])
    assert [row["mode"] for row in r["rows"]] == ["eager", "compiled (eager)"]
    assert r["rows"][1]["train_speedup"] > 0 and (tmp_path / "bench_compile.json").exists()


def test_sample_quality_tiny(tmp_path):
    import pytorch_lightning as pl

    from sde_score.data import DigitsDataModule
    from sde_score.module import ScoreModule

    model = ScoreModule({"class_path": "unet", "init_args": {"channels": [8, 16], "attention": False}}, sde="vp")
    pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
               default_root_dir=tmp_path, callbacks=[pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)]
               ).fit(model, DigitsDataModule(batch_size=32))
    r = _load("sample_quality").main(["--ckpt", str(tmp_path / "last.ckpt"), "--quick", "--num-samples", "20",
                                      "--batch", "10", "--kid-subsets", "2", "--feature-epochs", "1",
                                      "--features", str(tmp_path / "features.pt"), "--out", str(tmp_path),
                                      "--no-progress"])
    assert [(row["method"], row["nfe"]) for row in r["rows"]] == [
        ("real digits (test split)", 0), ("pc", 4), ("dpm_solver", 4)]
    assert all(row["num_samples"] == 20 for row in r["rows"][1:]) and r["rows"][0]["num_samples"] > 300
    assert r["rows"][1]["fid"] > r["rows"][0]["fid"]  # two training steps are far from digits
    assert (tmp_path / "sample_quality.png").exists() and (tmp_path / "features.pt").exists()


def test_digits_networks_tiny(tmp_path):
    from sde_score.features import DigitsFeatureNet

    DigitsFeatureNet().save(tmp_path / "features.pt")  # untrained: the path is what is tested here
    r = _load("digits_networks").main(["--minutes", "1", "--max-steps", "2", "--num-test", "3", "--num-samples", "12",
                                       "--kid-subsets", "2", "--features", str(tmp_path / "features.pt"),
                                       "--out", str(tmp_path), "--no-progress"])
    assert [row["network"] for row in r["rows"]] == ["unet", "ncsnpp", "ddpmpp"]
    assert all(row["steps"] == 2 and row["num_samples"] == 12 and row["bpd"] > 0 for row in r["rows"])
    assert (tmp_path / "ncsnpp_samples.png").exists() and (tmp_path / "digits_networks.json").exists()
