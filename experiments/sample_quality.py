"""Digits-FID and KID of every sampler against NFE, for a trained digits model.

    sde-score fit --config experiments/configs/digits.yaml          # the model (a few minutes)
    python experiments/sample_quality.py --ckpt outputs/digits/checkpoints/last.ckpt

Features: ``sde_score.features.DigitsFeatureNet`` (penultimate layer of a small digits classifier, trained on
the training split when --features does not exist yet, then saved there).  Reference: the training split's
feature statistics (dequantized, data space [0, 1]).  Every score is reported with its sample count; the
"real digits" row is the test split against the same reference (its FID is the floor at that count).
Prints a table, writes sample_quality.json and sample_quality.png (FID against NFE per sampler).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, List

import torch

from sde_score import sample
from sde_score.data import DigitsDataModule
from sde_score.evaluation import evaluate, feature_stats
from sde_score.features import digits_feature_net
from sde_score.io import write_json
from sde_score.module import ScoreModule
from sde_score.plotting import log_log, pyplot, save_figure

GRID = {  # method -> (options, steps grid)
    "pc": ({"predictor": "euler_maruyama", "corrector": "none"}, [20, 50, 100, 200, 500]),
    "ode": ({}, [None]),
    "heun": ({}, [5, 10, 18]),
    "dpm_solver": ({"order": 2}, [5, 10, 20, 50]),  # 2M + corrector at every level count, as README's row
}
QUICK = {"pc": ({"predictor": "euler_maruyama", "corrector": "none"}, [4]), "dpm_solver": ({"order": 2}, [4])}


def plot(rows: List[Dict], num_samples: int, path: Path) -> None:
    """digits-FID against NFE per sampler (log-log), the real test digits as a dashed line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in rows[1:]):
        pts = [(r["nfe"], r["fid"]) for r in rows if r["method"] == method]
        ax.plot(*zip(*pts), "o-", label=method)
    ax.axhline(rows[0]["fid"], color="gray", ls="--", label=f"real test digits (n={rows[0]['num_samples']})")
    log_log(ax, "NFE (network evaluations per sample)", f"digits-FID (n={num_samples})")
    ax.legend()
    save_figure(fig, path)


def main(argv=None) -> Dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default="outputs/digits/checkpoints/last.ckpt")
    p.add_argument("--features", default="experiments/results/digits_features.pt")
    p.add_argument("--feature-epochs", type=int, default=40, help="training epochs of a new feature network")
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="two samplers at 4 steps (a smoke run)")
    p.add_argument("--out", default="experiments/results")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    model = ScoreModule.load(args.ckpt)
    dm = DigitsDataModule(seed=args.seed)
    dm.setup()
    net = digits_feature_net(args.features, args.seed, args.feature_epochs)
    ref = feature_stats(dm.scaler.to_data(dm.dequantized("train")), net, name="DigitsFeatureNet")
    kid = dict(kid_subsets=args.kid_subsets, kid_subset_size=min(args.num_samples, 1000), seed=args.seed)
    real = evaluate(dm.scaler.to_data(dm.dequantized("test")), ref, net, **kid)
    rows: List[Dict] = [dict(method="real digits (test split)", steps=None, nfe=0, seconds=0.0, **real)]
    for method, (options, steps_grid) in (QUICK if args.quick else GRID).items():
        for steps in steps_grid:
            start, x, nfe = time.perf_counter(), [], 0
            for i, n in enumerate(range(0, args.num_samples, args.batch)):
                b = min(args.batch, args.num_samples - n)
                xb, info = sample(model, method=method, num_samples=b, steps=steps, return_info=True,
                                  generator=torch.Generator().manual_seed(args.seed * 1000 + i),
                                  progress=not args.no_progress, **options)
                x.append(dm.scaler.to_data(xb))
                nfe = info.nfe
            res = evaluate(torch.cat(x), ref, net, **kid)
            rows.append(dict(method=method, steps=steps, nfe=nfe, seconds=round(time.perf_counter() - start, 1),
                             **res))
            print(f"{method:12s} steps {str(steps):5s} NFE {nfe:4d}  FID {res['fid']:8.3f}  "
                  f"KID {res['kid']:8.3f} +- {res['kid_std']:.3f}  (n={res['num_samples']})", flush=True)
    print(f"\n{'method':26s} {'steps':>5s} {'NFE':>5s} {'digits-FID':>10s} {'KID':>9s} {'n':>6s} {'ref n':>6s}")
    for r in rows:
        print(f"{r['method']:26s} {str(r['steps']):>5s} {r['nfe']:5d} {r['fid']:10.3f} {r['kid']:9.3f} "
              f"{r['num_samples']:6d} {r['num_reference']:6d}")
    result = dict(ckpt=args.ckpt, num_samples=args.num_samples, reference="digits train split", rows=rows)
    write_json(out / "sample_quality.json", result)
    plot(rows, args.num_samples, out / "sample_quality.png")
    return result


if __name__ == "__main__":
    main()
