"""Benchmark PF-ODE likelihoods on the exact mixtures: error against the exact log p_eps, NFE and
wall time for each solver, time variable and divergence mode, all measured in one run.

    python experiments/bench_likelihood.py            # default: a few minutes on 2 CPU cores
    python experiments/bench_likelihood.py --quick
    python experiments/bench_likelihood.py --ckpt outputs/digits/checkpoints/last.ckpt   # a trained model

Errors are split as in the tests: 'solver err' uses the mixture's exact prior p_T (so only the ODE
solver errs); 'prior mismatch' is log N(x_T; 0, s(T)^2 I) - log p_T(x_T) at the ODE's end point.
With --ckpt (digits test images, one fixed Hutchinson probe per image) there is no exact answer:
errors are against the same ODE solved at rtol = atol = 1e-8 (the work-precision comparison).
"""
from __future__ import annotations

import argparse
from typing import Dict, List

import torch

import sde_score
from sde_score.io import write_json
from sde_score.likelihood import log_likelihood

CONFIGS = [  # label, solver, time variable, divergence, n_probes, tol
    ("rk45 t exact (paper's solver)", "rk45", "t", "exact", 1, 1e-5),
    ("dopri5 t exact", "dopri5", "t", "exact", 1, 1e-5),
    ("dopri5 sigma exact", "dopri5", "sigma", "exact", 1, 1e-5),
    ("dopri5 log_sigma exact", "dopri5", "log_sigma", "exact", 1, 1e-5),
    ("dopri5 t exact tol1e-4", "dopri5", "t", "exact", 1, 1e-4),
    ("rk45 t hutchinson x1 (paper)", "rk45", "t", "hutchinson", 1, 1e-5),
    ("dopri5 t hutchinson x1", "dopri5", "t", "hutchinson", 1, 1e-5),
]


def evaluate(targets, sdes, n: int, eps: float, configs, seed: int) -> List[Dict]:
    """One row per (target, SDE, config): NFE, time, solver error against the exact log p_eps (with
    the exact prior p_T) and the prior mismatch at the ODE's end point."""
    rows: List[Dict] = []
    log_likelihood(lambda x, t: -x, torch.zeros(2, 2), "vp", progress=False)  # warm imports out of timings
    for tname in targets:
        target = sde_score.get_target(tname)
        x = target.sample(n, torch.Generator().manual_seed(seed), dtype=torch.float64)
        for sname in sdes:
            sde = sde_score.get_sde(sname)
            exact_prior = target.with_exact_prior(sde)
            truth = target.log_prob_t(x, eps, sde)
            p_T = target.marginal(sde, sde.T)
            for label, solver, tv, div, probes, tol in configs:
                res = log_likelihood(target.score_fn(sde), x, exact_prior, eps=eps, solver=solver,
                                     time_variable=tv, divergence=div, n_probes=probes, rtol=tol, atol=tol,
                                     generator=torch.Generator().manual_seed(seed), progress=False)
                mismatch = sde.prior_logp(res.latent) - p_T.log_prob(res.latent)
                err = res.logp - truth
                rows.append(dict(target=tname, sde=sname, config=label, nfe=res.nfe,
                                 seconds=round(res.wall_time, 3), solver_mae=float(err.abs().mean()),
                                 solver_max=float(err.abs().max()), solver_bias=float(err.mean()),
                                 prior_mismatch=float(mismatch.mean())))
                print("{target:7s} {sde:5s} {config:32s} nfe={nfe:4d} {seconds:6.2f}s solver MAE={solver_mae:.2e} "
                      "max={solver_max:.2e} prior mismatch={prior_mismatch:+.4f}".format(**rows[-1]), flush=True)
    return rows


MODEL_CONFIGS = [  # label, solver, time variable, tol: work-precision points on a trained model
    ("rk45 t (paper)", "rk45", "t", 1e-4), ("rk45 t (paper)", "rk45", "t", 1e-5), ("rk45 t (paper)", "rk45", "t", 3e-6),
    ("dopri5 t", "dopri5", "t", 1e-4), ("dopri5 t", "dopri5", "t", 1e-5),
    ("dopri5 sigma", "dopri5", "sigma", 1e-4), ("dopri5 sigma", "dopri5", "sigma", 3e-5),
    ("dopri5 sigma", "dopri5", "sigma", 1e-5), ("dopri5 sigma", "dopri5", "sigma", 3e-6),
    ("dopri5 log_sigma", "dopri5", "log_sigma", 1e-5),
]


def evaluate_model(ckpt: str, n: int, eps: float, configs, seed: int, ref_tol: float = 1e-8) -> List[Dict]:
    """Work-precision rows for a trained digits model: NFE, time and error against a reference solve of
    the same ODE (same probes) at ``ref_tol``, in float64."""
    from sde_score.data import DigitsDataModule
    from sde_score.module import ScoreModule

    model = ScoreModule.load(ckpt).double()
    dm = DigitsDataModule(seed=seed)
    dm.setup()
    x = dm.dequantized("test")[:n].double()

    def run(solver, tv, tol):
        return log_likelihood(model, x, eps=eps, solver=solver, time_variable=tv, rtol=tol, atol=tol,
                              generator=torch.Generator().manual_seed(seed), progress=False, scaler=dm.scaler)

    ref = run("dopri5", "t", ref_tol)
    print(f"reference dopri5 t tol={ref_tol:g}: nfe={ref.nfe} bpd={float(ref.bpd.mean()):.4f}", flush=True)
    rows = []
    for label, solver, tv, tol in configs:
        res = run(solver, tv, tol)
        err = (res.logp - ref.logp).abs()
        rows.append(dict(config=label, tol=tol, nfe=res.nfe, seconds=round(res.wall_time, 2),
                         mae=float(err.mean()), max=float(err.max())))
        print("{config:18s} tol={tol:<6g} nfe={nfe:4d} {seconds:7.2f}s MAE={mae:.2e} max={max:.2e}".format(**rows[-1]),
              flush=True)
    return rows


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default="ring8,gmm16d")
    p.add_argument("--sdes", default="ve,vp,subvp")
    p.add_argument("--num-points", type=int, default=500, help="mixture points (with --ckpt: test images, at most 50)")
    p.add_argument("--eps", type=float, default=1e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="experiments/results")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--ckpt", default=None, help="a trained digits ScoreModule: work-precision table instead")
    args = p.parse_args(argv)
    if args.ckpt:
        n = 4 if args.quick else min(args.num_points, 50)
        configs = MODEL_CONFIGS[:2] if args.quick else MODEL_CONFIGS
        rows = evaluate_model(args.ckpt, n, args.eps, configs, args.seed, ref_tol=1e-6 if args.quick else 1e-8)
        result = dict(rows=rows, ckpt=args.ckpt, num_points=n, eps=args.eps, seed=args.seed)
        write_json(f"{args.out}/bench_likelihood_digits.json", result)
        return result
    n = 20 if args.quick else args.num_points
    configs = CONFIGS[:2] if args.quick else CONFIGS
    rows = evaluate(args.targets.split(","), args.sdes.split(","), n, args.eps, configs, args.seed)
    result = dict(rows=rows, num_points=n, eps=args.eps, seed=args.seed, torch=torch.__version__)
    write_json(f"{args.out}/bench_likelihood.json", result)
    return result


if __name__ == "__main__":
    main()
