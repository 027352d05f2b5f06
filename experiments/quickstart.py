"""Quickstart, the main job: train a small score model, sample it, write a picture and a likelihood.

    python experiments/quickstart.py                      # toy2d.yaml: ring8 mixture, VE SDE (~1.5 min)
    python experiments/quickstart.py --config experiments/configs/toy2d_vp.yaml

Writes under the config's trainer.default_root_dir (outputs/toy2d): checkpoints/,
predict/samples.npz and predict/samples.png (samples over the data), and result.json with the
mode-weight TV of the samples and the test NLL (nats and bits/dim) from the PF-ODE next to the
exact NLL of the mixture the model was trained on.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from sde_score.benchmarks import load_yaml
from sde_score.cli import main as cli_main
from sde_score.data import Toy2DDataModule
from sde_score.io import write_json
from sde_score.likelihood import log_likelihood
from sde_score.metrics import mean_se, mode_weight_tv, tv_floor
from sde_score.module import ScoreModule


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="experiments/configs/toy2d.yaml")
    p.add_argument("--max-steps", type=int, default=None, help="override trainer.max_steps")
    p.add_argument("--num-test", type=int, default=500, help="test points for the likelihood")
    p.add_argument("--logger", default=None, help="'false' to disable the (offline wandb) logger")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    cfg = load_yaml(args.config)
    out = Path(cfg["trainer"]["default_root_dir"])
    ckpt = Path(_callback(cfg, "ModelCheckpoint")["dirpath"]) / "last.ckpt"
    predict_dir = Path(_callback(cfg, "PredictionWriter")["output_dir"])
    common = ["--config", args.config]
    if args.logger is not None:
        common += ["--trainer.logger", args.logger]
    if args.no_progress:
        common += ["--trainer.enable_progress_bar", "false"]
    print(f"== fit ({args.config})", flush=True)
    cli_main(["fit"] + common + (["--trainer.max_steps", str(args.max_steps)] if args.max_steps else []))
    print("== predict", flush=True)
    cli_main(["predict"] + common + ["--ckpt_path", str(ckpt)])

    module = ScoreModule.load(str(ckpt))
    x = torch.from_numpy(np.load(predict_dir / "samples.npz")["samples"])
    result = {"config": args.config, "checkpoint": str(ckpt), "num_samples": len(x),
              "samples_png": str(predict_dir / "samples.png")}
    if not cfg["data"]["class_path"].endswith("Toy2DDataModule"):
        raise ValueError(f"quickstart evaluates 2-D toy configs; {args.config} uses {cfg['data']['class_path']}")
    dm = Toy2DDataModule(**cfg["data"].get("init_args", {}))
    dm.setup()
    test = dm.test[: args.num_test].double()
    print("== likelihood (PF-ODE, exact divergence)", flush=True)
    eps = getattr(module.loss, "eps", 1e-5)  # the smallest time the model was trained at
    res = log_likelihood(module.double(), test, eps=eps, divergence="exact", progress=not args.no_progress)
    nll = -res.logp
    nll_mean, nll_se = mean_se(nll)
    result.update(test_nll_nats=nll_mean, test_nll_stderr=nll_se,
                  test_bpd=float(res.bpd.mean()), likelihood_nfe=res.nfe)
    if dm.target is not None:
        result.update(mode_weight_tv=mode_weight_tv(dm.target, x), tv_floor=tv_floor(dm.target, len(x)),
                      exact_test_nll_nats=float(-dm.target.log_prob_t(test, eps, module.sde).mean()))
    write_json(out / "result.json", result)
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()})
    return result


def _callback(cfg: dict, name: str) -> dict:
    for cb in cfg["trainer"].get("callbacks", []):
        if cb["class_path"].endswith(name):
            return cb.get("init_args", {})
    raise ValueError(f"the config has no {name} callback")


if __name__ == "__main__":
    main()
