"""Imputation on hard conditions, against the exact conditional: gmm16d (4 full-covariance modes,
weights 0.1/0.2/0.3/0.4), every other coordinate observed (offsets 0 and 1), the observation placed by
``GaussianMixture.balanced_observation`` between two modes where the exact conditional splits evenly.

    python experiments/bench_impute_hard.py            # ~10 min on 2 cores
    python experiments/bench_impute_hard.py --quick    # seconds (smoke test)
    python experiments/bench_impute_hard.py --target image64 --n 100 --sdes vp --particles 64 --steps 1000

Per condition, SDE and method: mode-weight TV against the exact conditional weights and its floor
(the expected TV of as many exact draws), the mean exact log-density of the imputed part minus that of
exact draws (gap, nats) with its standard error, the same gap to the ideal end point (exact conditional draws forward-
perturbed to eps and denoised there by the exact Tweedie step, as the SMC ends: ``benchmarks.tweedie_end``;
it leaves out the error of the final denoising step itself, which on image64's 0.03-wide directions is ~3 nats),
the SMC's smallest mean ESS over the steps, NFE.
``--dps 0.1 1`` adds the DPS baseline at those step sizes; ``--particles 16 64 256`` shows how the SMC's
error changes with the particle count.  Prints a table and writes bench_impute_hard.json under --out.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

import sde_score
from sde_score.benchmarks import impute_conditions, tweedie_end
from sde_score.io import write_json
from sde_score.metrics import mean_log_prob, mode_weight_tv, tv_floor
from sde_score.sampling.impute import KERNEL_VARIANCES


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200, help="imputations per condition")
    p.add_argument("--steps", type=int, default=500, help="steps of replacement and DPS")
    p.add_argument("--smc-steps", type=int, default=None,
                   help="steps per SMC pass (default: impute's, 200 x 5 passes = 996 score evaluations)")
    p.add_argument("--sweeps", type=int, default=None, help="SMC passes (default: impute's, 5)")
    p.add_argument("--kernel-variance", choices=KERNEL_VARIANCES, default="stein",
                   help="the SMC kernel's variance (impute's kernel_variance; default: impute's, stein)")
    p.add_argument("--particles", type=int, nargs="+", default=[64, 16],
                   help="SMC particle counts (with the default ESS threshold 0.02)")
    p.add_argument("--compare-resampling", action="store_true",
                   help="also K=64 with resampling at ESS < K/2 (the default before #13's change)")
    p.add_argument("--no-replacement", action="store_true", help="skip the replacement baseline")
    p.add_argument("--dps", type=float, nargs="*", default=[], metavar="SCALE",
                   help="also DPS (approximate baseline) at these step sizes zeta'")
    p.add_argument("--noise-std", type=float, default=0.0,
                   help="observation noise: y = x_known + noise_std z (the posterior then covers every coordinate)")
    p.add_argument("--sdes", nargs="+", default=["vp", "ve"])
    p.add_argument("--target", choices=["gmm16d", "image64"], default="gmm16d",
                   help="image64: 8 / 32 / 56 of 64 pixels observed (top rows) between modes 1 and 2, and a "
                        "low-density observation")
    p.add_argument("--only", nargs="+", default=None, metavar="CONDITION",
                   help="run only these conditions, named as in the table (e.g. 'obs[0::2] 1|2')")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="experiments/results")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.steps, args.particles, args.sdes = 20, 30, [4], ["vp"]
        args.smc_steps, args.sweeps = 30, 2
    target = sde_score.get_target(args.target)
    rows = []
    print(f"{'condition':<16} {'sde':<3} {'method':<16} {'TV':>6} {'floor':>6} {'gap':>7} {'se':>5} {'gap_end':>7} "
          f"{'se':>5} {'minESS':>7} {'NFE':>5}")
    names = [name for name, _, _ in impute_conditions(target, args.target, args.noise_std)]
    unknown = sorted(set(args.only or []) - set(names))
    if unknown:
        raise ValueError(f"unknown condition(s) {unknown}; the conditions are {names}")
    for name, known, x in impute_conditions(target, args.target, args.noise_std, args.quick):
        if args.only is not None and name not in args.only:
            continue
        A = torch.eye(target.dim, dtype=torch.float64)[known.reshape(-1)]
        # noise-free: the conditional of the unknown part; noisy: the posterior of every coordinate
        cond = target.conditional(known, x) if args.noise_std == 0 else target.posterior(A, x[known], args.noise_std)
        part = ~known if args.noise_std == 0 else torch.ones_like(known)
        exact = cond.sample(args.n, torch.Generator().manual_seed(args.seed + 1), dtype=torch.float64)
        lp_exact, se_exact = mean_log_prob(cond, exact)
        floor = tv_floor(cond, args.n)
        full = x[None].expand((args.n,) + tuple(x.shape)).clone()  # exact draws of the whole state
        full[:, part] = exact.reshape(args.n, -1).to(full.dtype)
        for sde_name in args.sdes:
            sde = sde_score.get_sde(sde_name)
            ideal = tweedie_end(sde, target.score_fn(sde), full, torch.Generator().manual_seed(args.seed + 2))
            lp_ideal, se_ideal = mean_log_prob(cond, ideal[:, part])
            smc = {k: v for k, v in dict(steps=args.smc_steps, sweeps=args.sweeps).items() if v is not None}
            smc["kernel_variance"] = args.kernel_variance
            kv = "" if args.kernel_variance == "stein" else f" {args.kernel_variance}"
            runs = [("smc", dict(num_particles=k, **smc), f"smc K={k}{kv}") for k in args.particles]
            if args.compare_resampling:
                runs.append(("smc", dict(num_particles=64, ess_threshold=0.5, **smc), "smc K=64 ESS<K/2"))
            if not args.no_replacement:
                runs.append(("replacement", {}, "replace"))
            runs += [("dps", dict(scale=s), f"dps {s:g}") for s in args.dps]
            for method, opts, label in runs:
                x_known = x[None].expand((args.n,) + tuple(x.shape)).float().clone()
                if method != "smc":
                    opts = dict(opts, steps=args.steps)
                out, info = sde_score.impute(target.score_fn(sde), x_known, known, sde, method,
                                             noise_std=args.noise_std, return_info=True, progress=False,
                                             generator=torch.Generator().manual_seed(args.seed), **opts)
                xu = out[:, part].double()
                lp, se = mean_log_prob(cond, xu)
                ess = min(info.extra["ess"]) if "ess" in info.extra else float("nan")
                row = dict(condition=name, sde=sde_name, method=label, tv=mode_weight_tv(cond, xu), floor=floor,
                           gap=lp - lp_exact, gap_se=math.hypot(se, se_exact), gap_end=lp - lp_ideal,
                           gap_end_se=math.hypot(se, se_ideal), min_ess=ess, nfe=info.nfe,
                           weights_exact=cond.weights.tolist(), weights=cond.responsibilities(xu).mean(0).tolist(),
                           n=args.n)
                rows.append(row)
                print(f"{name:<16} {sde_name:<3} {label:<16} {row['tv']:>6.3f} {floor:>6.3f} {row['gap']:>7.2f} "
                      f"{row['gap_se']:>5.2f} {row['gap_end']:>7.2f} {row['gap_end_se']:>5.2f} {ess:>7.1f} "
                      f"{info.nfe:>5}")
    result = dict(rows=rows, target=args.target, seed=args.seed, n=args.n, steps=args.steps, smc_steps=args.smc_steps,
                  sweeps=args.sweeps, noise_std=args.noise_std, kernel_variance=args.kernel_variance)
    suffix = ("" if args.target == "gmm16d" else f"_{args.target}") + (
        "" if args.noise_std == 0 else f"_noise{args.noise_std:g}")
    write_json(Path(args.out) / f"bench_impute_hard{suffix}.json", result)
    return result


if __name__ == "__main__":
    main()
