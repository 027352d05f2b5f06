"""Networks on digits at equal training wall-clock: today's UNet, a small NCSN++ and a small DDPM++.

    python experiments/digits_networks.py                   # 3 x 5 minutes of training, then evaluation
    python experiments/digits_networks.py --minutes 10

Every network gets digits.yaml's recipe (VP SDE, DSM, Adam 1e-3 with 200 warm-up steps, batch 128) and an
EMA of 0.999 with the paper code's warm-up (``callbacks.WarmupEMA``: a plain EMA would still hold 30 % of the
initial weights after the ~1200 steps a slower network makes) for the same training time; then the test
split's bits/dim (PF-ODE, Hutchinson, dequantized, data space) and the digits-FID / KID of --num-samples
samples (dpm_solver, 20 steps) against the training split's features (``sde_score.features.DigitsFeatureNet``).
Prints a table, writes digits_networks.json and a sample grid per network.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Dict, List

import pytorch_lightning as pl
import torch

from sde_score import sample
from sde_score.benchmarks import load_yaml
from sde_score.callbacks import WarmupEMA, save_samples_picture
from sde_score.data import DigitsDataModule
from sde_score.evaluation import evaluate, feature_stats
from sde_score.features import digits_feature_net
from sde_score.io import write_json
from sde_score.likelihood import log_likelihood
from sde_score.metrics import mean_se
from sde_score.module import ScoreModule

SMALL = dict(data_shape=[1, 8, 8], nf=32, ch_mult=[1, 2], num_res_blocks=2, attn_resolutions=[4], dropout=0.0)
NETS = {
    "unet": None,  # digits.yaml's own network
    "ncsnpp": {"class_path": "sde_score.models.NCSNpp",
               "init_args": dict(SMALL, fir=True, progressive_input="residual", embedding="fourier")},
    "ddpmpp": {"class_path": "sde_score.models.NCSNpp",
               "init_args": dict(SMALL, fir=False, embedding="positional", time_scale=999.0)},
}


def _train(name: str, model_cfg: dict, dm: DigitsDataModule, minutes: float, max_steps: int, root: Path,
           seed: int) -> Dict:
    shutil.rmtree(root / name, ignore_errors=True)
    pl.seed_everything(seed)
    cfg = dict(model_cfg, val_sample_images=0)
    if NETS[name] is not None:
        cfg["net"] = NETS[name]
    module = ScoreModule(**cfg)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_time={"seconds": int(60 * minutes)}, max_steps=max_steps,
                         logger=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         default_root_dir=str(root / name),
                         callbacks=[pl.callbacks.ModelCheckpoint(dirpath=str(root / name), save_last=True),
                                    WarmupEMA(decay=0.999)])
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    return dict(network=name, params=sum(p.numel() for p in module.net.parameters()), steps=trainer.global_step,
                train_s=round(time.perf_counter() - start, 1))


def main(argv=None) -> Dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    p.add_argument("--minutes", type=float, default=5.0, help="training wall-clock per network")
    p.add_argument("--max-steps", type=int, default=-1, help="also stop here (-1: time only)")
    p.add_argument("--config", default="experiments/configs/digits.yaml")
    p.add_argument("--features", default="experiments/results/digits_features.pt")
    p.add_argument("--num-test", type=int, default=100)
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="experiments/results/digits_networks")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    cfg = load_yaml(args.config)
    model_cfg = cfg["model"]
    dm = DigitsDataModule(batch_size=cfg["data"]["init_args"]["batch_size"], seed=args.seed)
    dm.setup()
    features = digits_feature_net(args.features, args.seed)
    ref = feature_stats(dm.scaler.to_data(dm.dequantized("train")), features, name="DigitsFeatureNet")
    test = dm.dequantized("test")[: args.num_test]
    rows: List[Dict] = []
    for name in args.nets:
        print(f"== train {name} for {args.minutes} minutes", flush=True)
        row = _train(name, model_cfg, dm, args.minutes, args.max_steps, out, args.seed)
        module = ScoreModule.load(str(out / name / "last.ckpt"))
        res = log_likelihood(module, test, eps=1e-5, divergence="hutchinson", scaler=dm.scaler,
                             generator=torch.Generator().manual_seed(args.seed), progress=not args.no_progress)
        row["bpd"], row["bpd_stderr"] = mean_se(res.bpd)
        row["likelihood_nfe"] = res.nfe
        x = sample(module, method="dpm_solver", order=2, num_samples=args.num_samples, progress=not args.no_progress,
                   generator=torch.Generator().manual_seed(args.seed))
        save_samples_picture(str(out / f"{name}_samples.png"), x[:64], dm, title=f"{name}: 64 samples")
        q = evaluate(dm.scaler.to_data(x), ref, features, kid_subsets=args.kid_subsets,
                     kid_subset_size=min(1000, args.num_samples), seed=args.seed)
        row.update(fid=q["fid"], kid=q["kid"], kid_std=q["kid_std"], num_samples=q["num_samples"],
                   num_reference=q["num_reference"])
        rows.append(row)
        print(row, flush=True)
    print(f"\n{'network':8s} {'params':>9s} {'steps':>6s} {'train s':>8s} {'test bits/dim':>16s} "
          f"{'digits-FID':>10s} {'KID':>8s}")
    for r in rows:
        print(f"{r['network']:8s} {r['params']:9d} {r['steps']:6d} {r['train_s']:8.1f} {r['bpd']:8.3f} +- "
              f"{r['bpd_stderr']:.3f} {r['fid']:10.2f} {r['kid']:8.2f}")
    result = dict(rows=rows, minutes=args.minutes, num_test=len(test), num_samples=args.num_samples,
                  sampler="dpm_solver 20 steps", seed=args.seed, threads=torch.get_num_threads())
    write_json(out / "digits_networks.json", result)
    return result


if __name__ == "__main__":
    main()
