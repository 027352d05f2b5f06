"""Benchmark PF-ODE likelihoods on the exact mixtures: error against the exact log p_eps, NFE and
wall time for each solver, time variable and divergence mode, all measured in one run.

    python experiments/bench_likelihood.py            # default: a few minutes on 2 CPU cores
    python experiments/bench_likelihood.py --quick
    python experiments/bench_likelihood.py --ckpt outputs/digits/checkpoints/last.ckpt   # a trained model
    python experiments/bench_likelihood.py --ckpt A.ckpt --paper-ckpt B.ckpt   # default recipe A vs paper recipe B

Errors are split as in the tests: 'solver err' uses the mixture's exact prior p_T (so only the ODE
solver errs); 'prior mismatch' is log N(x_T; 0, s(T)^2 I) - log p_T(x_T) at the ODE's end point.
With --ckpt (digits test images, one fixed Hutchinson probe per image, float32 model) there is no
exact answer: errors are against the same ODE solved in float64 at rtol = atol = 1e-8 (the
work-precision comparison); the paper's procedure (score_sde's likelihood.py: scipy RK45 in t, the
model called once for the drift and once more for the divergence) is timed beside ours.  With
--paper-ckpt (the same network trained with the paper's recipe, e.g. its time embedding) both models get
the table, and the end-to-end summary compares the paper's procedure on the paper's model with the
default on ours, each at the accuracy the paper's procedure reaches at its tolerance 1e-5.
"""
from __future__ import annotations

import argparse
import math
import time
from typing import Dict, List

import torch

from sde_score.benchmarks import likelihood_accuracy
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


PAPER = "paper procedure (RK45, 2 passes)"
DEFAULT = "dopri5 t (default)"
MODEL_CONFIGS = [  # label, solver, time variable, tol: work-precision points on a trained model
    (PAPER, "rk45", "t", 1e-4), (PAPER, "rk45", "t", 1e-5), (PAPER, "rk45", "t", 3e-6),
    ("rk45 t, one forward pass", "rk45", "t", 1e-5),
    (DEFAULT, "dopri5", "t", 1e-4), (DEFAULT, "dopri5", "t", 3e-5), (DEFAULT, "dopri5", "t", 1e-5),
    (DEFAULT, "dopri5", "t", 3e-6),
    ("dopri5 sigma", "dopri5", "sigma", 1e-5), ("dopri5 log_sigma", "dopri5", "log_sigma", 1e-5),
]


def paper_procedure(model, x: torch.Tensor, eps: float, tol: float, generator: torch.Generator):
    """score_sde's likelihood.py procedure, re-implemented for the comparison: scipy RK45 in t on the
    flattened batch, and each ODE evaluation calls the model twice — once for the drift, once more
    (with a graph) for the Hutchinson divergence.  Same probes as ``log_likelihood`` with this seed.
    Returns (logp (B,), nfe, seconds)."""
    from sde_score.likelihood import divergence_estimates, hutchinson_probes
    from sde_score.sampling.ode import PFODE, integrate

    sde, D = model.sde, x[0].numel()
    probes = hutchinson_probes(x.shape, 1, "rademacher", generator, x.device, x.dtype)
    ode = PFODE(sde, model)

    def func(v, y):
        xv = y[:, :D].reshape(x.shape)
        with torch.no_grad():
            dx = ode(v, xv)
        with torch.enable_grad():
            xg = xv.detach().requires_grad_(True)
            div = divergence_estimates(ode(v, xg), xg, probes)
        return torch.cat([dx.flatten(1), div.detach()], 1)

    start = time.perf_counter()
    y0 = torch.cat([x.flatten(1), torch.zeros(x.shape[0], 1, dtype=x.dtype)], 1)
    yT, nfe = integrate(func, y0, eps, sde.T, solver="rk45", rtol=tol, atol=tol)
    logp = sde.prior_logp(yT[:, :D].reshape(x.shape)) + yT[:, D]
    return logp, nfe, time.perf_counter() - start


def time_at_accuracy(rows: List[Dict], mae: float):
    """Seconds the rows' method needs for a given MAE: log-log interpolation between the two
    tolerances that bracket it; when every row is more accurate than that, the cheapest row's time (an upper
    bound, flagged by the second value True).  (None, False) when no row reaches the MAE."""
    pts = sorted((r["mae"], r["seconds"]) for r in rows)
    for (e0, s0), (e1, s1) in zip(pts, pts[1:]):
        if e0 <= mae <= e1:
            w = 0.0 if e1 == e0 else math.log(mae / e0) / math.log(e1 / e0)
            return math.exp(math.log(s0) + w * (math.log(s1) - math.log(s0))), False
    within = [sec for e, sec in pts if e <= mae]
    return (min(within), True) if within else (None, False)


def evaluate_model(ckpt: str, n: int, eps: float, configs, seed: int, ref_tol: float = 1e-8) -> Dict:
    """Work-precision rows for a trained digits model (float32, as the paper runs it): NFE, time and
    error against a float64 solve of the same ODE (same probes) at ``ref_tol``; and the default's
    speed-up over the paper's procedure at the accuracy the paper reaches at its tolerance 1e-5."""
    from sde_score.data import DigitsDataModule
    from sde_score.module import ScoreModule

    model = ScoreModule.load(ckpt)
    dm = DigitsDataModule(seed=seed)
    dm.setup()
    x = dm.dequantized("test")[:n].float()

    def gen():
        return torch.Generator().manual_seed(seed)

    ref = log_likelihood(ScoreModule.load(ckpt).double(), x.double(), eps=eps, rtol=ref_tol, atol=ref_tol,
                         generator=gen(), progress=False)
    print(f"reference dopri5 t float64 tol={ref_tol:g}: nfe={ref.nfe}", flush=True)
    rows = []
    for label, solver, tv, tol in configs:
        if label == PAPER:
            logp, nfe, seconds = paper_procedure(model, x, eps, tol, gen())
        else:
            res = log_likelihood(model, x, eps=eps, solver=solver, time_variable=tv, rtol=tol, atol=tol,
                                 generator=gen(), progress=False)
            logp, nfe, seconds = res.logp, res.nfe, res.wall_time
        err = (logp.double() - ref.logp).abs()
        rows.append(dict(config=label, tol=tol, nfe=nfe, seconds=round(seconds, 2),
                         ms_per_nfe=round(1e3 * seconds / nfe, 1), mae=float(err.mean()), max=float(err.max())))
        print("{config:34s} tol={tol:<6g} nfe={nfe:4d} {seconds:7.2f}s {ms_per_nfe:5.1f}ms/nfe MAE={mae:.2e} "
              "max={max:.2e}".format(**rows[-1]), flush=True)
    return dict(rows=rows, reference_nfe=ref.nfe, equal_accuracy=equal_accuracy(rows, rows))


def equal_accuracy(paper_rows: List[Dict], default_rows: List[Dict]) -> Dict:
    """The paper's procedure at its tolerance 1e-5 (from ``paper_rows``) against the default's time at that
    MAE, interpolated on ``default_rows``' work-precision points."""
    paper = [r for r in paper_rows if r["config"] == PAPER and r["tol"] == 1e-5]
    if not paper:
        return {}
    t_default, bound = time_at_accuracy([r for r in default_rows if r["config"] == DEFAULT], paper[0]["mae"])
    summary = dict(paper_mae=paper[0]["mae"], paper_seconds=paper[0]["seconds"], paper_nfe=paper[0]["nfe"],
                   default_seconds=t_default, speedup=None if t_default is None else paper[0]["seconds"] / t_default,
                   speedup_is_lower_bound=bound)
    note = " (its loosest tolerance is already more accurate)" if bound else ""
    speedup = "n/a" if t_default is None else (">= " if bound else "") + str(round(summary["speedup"], 2))
    print(f"at the paper's accuracy (tol 1e-5, MAE {paper[0]['mae']:.2e}): paper {paper[0]['seconds']:.2f}s, "
          f"default {'n/a' if t_default is None else round(t_default, 2)}s{note}, speed-up {speedup}", flush=True)
    return summary


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
    p.add_argument("--paper-ckpt", default=None,
                   help="with --ckpt: the same network trained with the paper's recipe, for the end-to-end comparison")
    args = p.parse_args(argv)
    if args.ckpt:
        n = 4 if args.quick else min(args.num_points, 50)
        configs = [MODEL_CONFIGS[i] for i in (1, 4, 6)] if args.quick else MODEL_CONFIGS
        ref_tol = 1e-6 if args.quick else 1e-8
        result = evaluate_model(args.ckpt, n, args.eps, configs, args.seed, ref_tol)
        result.update(ckpt=args.ckpt, num_points=n, eps=args.eps, seed=args.seed, torch=torch.__version__)
        if args.paper_ckpt:
            print(f"== the paper's recipe: {args.paper_ckpt}", flush=True)
            paper = evaluate_model(args.paper_ckpt, n, args.eps, configs, args.seed, ref_tol)
            print("== end to end: the paper's procedure on the paper's recipe, the default on --ckpt", flush=True)
            result.update(paper_ckpt=args.paper_ckpt, paper_recipe=paper,
                          end_to_end=equal_accuracy(paper["rows"], result["rows"]))
        write_json(f"{args.out}/bench_likelihood_digits.json", result)
        return result
    n = 20 if args.quick else args.num_points
    configs = CONFIGS[:2] if args.quick else CONFIGS
    rows = likelihood_accuracy(args.targets.split(","), args.sdes.split(","), n, args.eps, configs, args.seed)
    result = dict(rows=rows, num_points=n, eps=args.eps, seed=args.seed, torch=torch.__version__)
    write_json(f"{args.out}/bench_likelihood.json", result)
    return result


if __name__ == "__main__":
    main()
