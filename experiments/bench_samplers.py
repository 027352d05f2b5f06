"""Benchmark every sampler on the exact mixtures: NFE, wall time, mode-weight TV, log-density gap;
plus the per-call overhead of each sampler around a small MLP score network.

    python experiments/bench_samplers.py                 # default: ~11 minutes on 2 CPU cores
    python experiments/bench_samplers.py --quick         # a smoke run
    python experiments/bench_samplers.py --ckpt experiments/results/digits_bpd/vp/checkpoints/last.ckpt
    python experiments/bench_samplers.py --ideal         # few-step samplers vs the ideal end point (~15 min)

Prints the tables (quality; the log-density gap at 20k samples; overhead; imputation) and writes
JSON (and a quality-vs-NFE PNG) under --out.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Dict, List, Optional

import torch

import sde_score
from sde_score.io import write_json
from sde_score.benchmarks import FITTED, sampler_quality
from sde_score.metrics import tv_floor
from sde_score.models import ScoreMLP
from sde_score.plotting import log_log, pyplot, save_figure

# (label, method, steps, options): one row per sampler configuration
CONFIGS: List[tuple] = [
    ("pc rd+langevin", "pc", 1000, dict(predictor="reverse_diffusion", corrector="langevin")),
    ("pc rd+langevin", "pc", 100, dict(predictor="reverse_diffusion", corrector="langevin")),
    ("pc euler_maruyama", "pc", 1000, dict(predictor="euler_maruyama", corrector="none")),
    ("pc euler_maruyama", "pc", 100, dict(predictor="euler_maruyama", corrector="none")),
    ("pc ancestral", "pc", 1000, dict(predictor="ancestral", corrector="none")),
    ("sde torchsde euler", "sde", 1000, dict(solver="euler")),
    ("sde torchsde adaptive", "sde", 50, dict(adaptive=True, rtol=1e-2, atol=1e-2)),
    ("ode dopri5", "ode", None, dict(solver="dopri5")),
    ("ode rk45 (paper)", "ode", None, dict(solver="rk45")),
    ("heun (EDM)", "heun", 10, {}),
    ("heun (EDM)", "heun", 18, {}),
    ("dpm_solver++ 2M", "dpm_solver", 10, dict(corrector=False)),
    ("dpm_solver++ 2M", "dpm_solver", 20, dict(corrector=False)),
    ("dpm_solver++ 2M+corrector (default below 20)", "dpm_solver", 10, {}),
    ("dpm_solver++ 2M+corrector", "dpm_solver", 20, dict(order=2)),
    ("dpm_solver++ 3M", "dpm_solver", 20, dict(order=3, corrector=False)),
    ("dpm_solver++ 3M+corrector (default from 20)", "dpm_solver", 20, {}),
    ("dpm_solver++ 2M+corrector, fitted levels", "dpm_solver", 20, dict(order=2, schedule=FITTED)),
    ("dpm_solver++ 3M+corrector, fitted levels", "dpm_solver", 20, dict(order=3, schedule=FITTED)),
    ("dpm_solver-2 (single)", "dpm_solver", 11, dict(multistep=False)),
    ("sde_adaptive", "sde_adaptive", 100, dict(rtol=1e-2)),
]


# the 20-NFE samplers against the paper's sampler with 4x the samples: the log-density gap's
# standard error falls to ~0.008 (ring8) / 0.023 (gmm16d) nats, below the differences in question
GAP_CONFIGS: List[tuple] = [
    ("pc rd+langevin", "pc", 1000, dict(predictor="reverse_diffusion", corrector="langevin")),
    ("dpm_solver++ 3M+corrector", "dpm_solver", 20, dict(order=3)),
    ("dpm_solver++ 3M+corrector, fitted levels", "dpm_solver", 20, dict(order=3, schedule=FITTED)),
]


# the samplers that end with the Tweedie step, against the ideal end point (exact p_eps + that step)
IDEAL_CONFIGS: List[tuple] = [
    ("dpm_solver++ 2M+corrector (default below 20)", "dpm_solver", 10, {}),
    ("dpm_solver++ 2M+corrector", "dpm_solver", 20, dict(order=2)),
    ("dpm_solver++ 3M+corrector", "dpm_solver", 10, dict(order=3)),
    ("dpm_solver++ 3M+corrector (default from 20)", "dpm_solver", 20, {}),
    ("dpm_solver++ 3M+corrector, fitted levels", "dpm_solver", 20, dict(order=3, schedule=FITTED)),
    ("heun (EDM)", "heun", 18, {}),
    ("ode dopri5", "ode", None, dict(solver="dopri5")),
]


def plot_ideal(rows: List[Dict], path: str) -> None:
    """|gap to the ideal end point| against NFE per (target, SDE), with the floor."""
    plt = pyplot()
    keys = sorted({(r["target"], r["sde"]) for r in rows})
    cols = 3
    fig, axes = plt.subplots((len(keys) + cols - 1) // cols, cols, figsize=(4.5 * cols, 3.6 * ((len(keys) + 2) // 3)),
                             squeeze=False)
    for ax, key in zip(axes.flat, keys):
        sel = [r for r in rows if (r["target"], r["sde"]) == key]
        for r in sel:
            ax.scatter(r["nfe"], max(abs(r["ideal_gap"]), 1e-4), label=f'{r["sampler"]} ({r["steps"] or "adaptive"})')
        ax.axhline(sel[0]["ideal_floor"], ls="--", c="gray", lw=1, label="floor (95 %)")
        log_log(ax, "NFE", "|gap to the ideal end point| (nats)")
        ax.set_title(f"{key[0]}, {key[1]}")
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    list(axes.flat)[0].legend(fontsize=6, loc="lower left")
    save_figure(fig, path)


def run_ideal(args) -> dict:
    n = 200 if args.quick else args.ideal_samples
    configs = [(lab, m, st, o) for lab, m, st, o in IDEAL_CONFIGS if not (args.quick and m == "ode")]
    print(f"== gap to the ideal end point, {n} samples, seed {args.seed}")
    rows = sampler_quality(args.ideal_targets.split(","), args.ideal_sdes.split(","), n, args.seed, configs,
                           args.progress)
    print(f"\n{'target':8s} {'sde':6s} {'sampler':42s} {'NFE':>5s} {'ideal gap':>10s} {'floor':>7s} {'/floor':>7s}")
    for r in rows:
        print(f"{r['target']:8s} {r['sde']:6s} {r['sampler'] + ' ' + str(r['steps'] or ''):42s} {r['nfe']:5d} "
              f"{r['ideal_gap']:+10.3f} {r['ideal_floor']:7.3f} {abs(r['ideal_gap']) / r['ideal_floor']:7.2f}")
    result = dict(rows=rows, num_samples=n, seed=args.seed)
    write_json(f"{args.out}/bench_samplers_ideal.json", result)
    plot_ideal(rows, f"{args.out}/bench_samplers_ideal.png")
    return result


def run_overhead(batch: int, seed: int, steps: int, reps: int) -> List[Dict]:
    """wall / (the same NFE of bare network calls, timed right after) for a small MLP: the share of
    time spent outside the network.  Pairing each run with its own bare loop keeps machine drift
    out of the ratio."""
    torch.manual_seed(seed)
    net = ScoreMLP((2,), width=256, depth=3).eval()
    x = torch.randn(batch, 2)
    t = torch.rand(batch)

    def bare(nfe: int) -> float:
        with torch.no_grad():
            t0 = time.perf_counter()
            for _ in range(nfe):
                net(x, t)
            return time.perf_counter() - t0

    bare(10)  # warm-up
    rows = []
    for label, method, opts in [("pc rd+langevin", "pc", dict()),
                                ("pc euler_maruyama", "pc", dict(predictor="euler_maruyama", corrector="none")),
                                ("pc ancestral", "pc", dict(predictor="ancestral", corrector="none")),
                                ("sde torchsde euler", "sde", dict()),
                                ("ode dopri5", "ode", dict(solver="dopri5", rtol=1e-3, atol=1e-3)),
                                ("heun", "heun", dict()),
                                ("dpm_solver", "dpm_solver", dict(order=2)),
                                ("ode rk45 (paper)", "ode", dict(solver="rk45", rtol=1e-3, atol=1e-3))]:
        ratios, calls = [], []
        n_steps = steps if method in ("pc", "sde") else None
        for _ in range(reps):
            _, info = sde_score.sample(net, "vp", method, shape=(batch, 2), steps=n_steps, progress=False,
                                       generator=torch.Generator().manual_seed(seed), return_info=True, **opts)
            ref = bare(info.nfe)
            ratios.append(info.wall_time / ref)
            calls.append(ref / info.nfe)
        rows.append(dict(sampler=label, nfe=info.nfe, score_call_ms=round(1e3 * statistics.median(calls), 3),
                         overhead_ratio=round(statistics.median(ratios), 3)))
        print("{sampler:24s} nfe={nfe:5d} call={score_call_ms:.3f}ms wall/(nfe*call)={overhead_ratio:.3f}"
              .format(**rows[-1]), flush=True)
    return rows


def run_impute(n: int, particles: int, steps: int, seed: int, smc_steps: Optional[int] = None) -> List[Dict]:
    """Imputation of half of bimodal16d: mode-weight TV of the imputed half against the exact
    conditional, for the replacement baseline (``steps``) and SMC (``smc_steps`` per pass; None: impute's
    default, 5 passes of 200)."""
    target, sde = sde_score.get_target("bimodal16d"), sde_score.get_sde("vp")
    known = torch.arange(16) < 8
    x0 = target.sample(50, torch.Generator().manual_seed(3))
    cond, xk = None, None
    for j in range(50):
        cond = target.conditional(known, x0[j])
        if sorted(cond.weights.tolist())[-2] > 0.1:
            xk = x0[j].expand(n, 16).clone()
            break
    rows = []
    for label, method, opts in [("replacement (paper)", "replacement", dict(steps=steps)),
                                (f"smc K={particles}", "smc", dict(num_particles=particles, steps=smc_steps))]:
        out, info = sde_score.impute(target.score_fn(sde), xk, known, sde, method=method,
                                     generator=torch.Generator().manual_seed(seed), progress=False,
                                     return_info=True, **opts)
        w = cond.responsibilities(out[:, 8:]).mean(0)
        rows.append(dict(method=label, exact_weights=[round(v, 4) for v in cond.weights.tolist()],
                         weights=[round(v, 4) for v in w.tolist()], tv=0.5 * float((w - cond.weights).abs().sum()),
                         tv_floor=tv_floor(cond, n), nfe=info.nfe, seconds=round(info.wall_time, 2)))
        print("{method:22s} tv={tv:.4f} (floor {tv_floor:.4f}) weights={weights} exact={exact_weights} "
              "nfe={nfe} {seconds}s".format(**rows[-1]), flush=True)
    return rows


def plot(rows: List[Dict], path: str) -> None:
    plt = pyplot()
    keys = sorted({(r["target"], r["sde"]) for r in rows})
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        sel = [r for r in rows if (r["target"], r["sde"]) == key]
        for r in sel:
            ax.scatter(r["nfe"], r["tv"], label=f'{r["sampler"]} ({r["steps"] or "adaptive"})')
        ax.axhline(sel[0]["tv_floor"], ls="--", c="gray", lw=1, label="statistical floor")
        log_log(ax, "NFE", "mode-weight TV")
        ax.set_title(f"{key[0]}, {key[1]}")
    axes[0][-1].legend(fontsize=6, loc="upper right")
    save_figure(fig, path)


def run_ode_distance(ckpt: str, n: int, seed: int, quick: bool = False) -> List[Dict]:
    """A trained model has no exact density: per-sample RMS distance (model space) of the 20-NFE
    samplers' samples to the PF-ODE solved at tol 1e-6 from the same x_T, on log-SNR levels and on
    levels fitted by ``optimized_schedule`` (pilot of 256 points)."""
    from sde_score.module import ScoreModule

    model = ScoreModule.load(ckpt)

    def gen():
        return torch.Generator().manual_seed(seed)

    tol = 1e-4 if quick else 1e-6
    ref = sde_score.sample(model, method="ode", num_samples=n, generator=gen(), rtol=tol, atol=tol, progress=False)
    levels = sde_score.optimized_schedule(model, steps=20, pilot_samples=16 if quick else 256,
                                          fine_levels=40 if quick else 120,
                                          generator=torch.Generator().manual_seed(seed + 2), progress=False)
    rows = []
    for label, opts in [("2M+corrector", dict(order=2)), ("3M+corrector (default)", {})]:
        for sched_label, schedule in [("log-SNR levels", "log_snr"), ("fitted levels", levels)]:
            x = sde_score.sample(model, method="dpm_solver", num_samples=n, steps=20, schedule=schedule,
                                 generator=gen(), progress=False, **opts)
            dist = (x - ref).flatten(1).pow(2).mean(1).sqrt()
            rows.append(dict(sampler=f"dpm_solver++ {label}, {sched_label}", nfe=20, rms_distance=float(dist.mean()),
                             max_distance=float(dist.max())))
            print("{sampler:44s} nfe={nfe} distance to the PF-ODE map: mean {rms_distance:.4f} max {max_distance:.4f}"
                  .format(**rows[-1]), flush=True)
    return rows


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default="ring8,gmm16d")
    p.add_argument("--sdes", default="ve,vp")
    p.add_argument("--num-samples", type=int, default=5000)
    p.add_argument("--gap-samples", type=int, default=20000, help="samples of the log-density gap comparison")
    p.add_argument("--batch", type=int, default=4096, help="batch of the overhead measurement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="experiments/results")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for tests")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--ideal", action="store_true", help="only the gap to the ideal end point (Tweedie-ending samplers)")
    p.add_argument("--ideal-targets", default="ring8,gmm16d,image64")
    p.add_argument("--ideal-sdes", default="ve,vp,subvp")
    p.add_argument("--ideal-samples", type=int, default=5000)
    p.add_argument("--ckpt", default=None,
                   help="trained ScoreModule checkpoints (comma-separated): only the few-step samplers' distance to "
                        "each one's PF-ODE map")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.ideal:
        return run_ideal(args)
    if args.ckpt:
        n = 8 if args.quick else 256
        rows = []
        for ckpt in args.ckpt.split(","):
            print(f"== distance to the PF-ODE map, {ckpt}, {n} samples")
            rows += [dict(row, ckpt=ckpt) for row in run_ode_distance(ckpt, n, args.seed, args.quick)]
        result = dict(rows=rows, ckpt=args.ckpt, num_samples=n, seed=args.seed)
        write_json(f"{args.out}/bench_samplers_ckpt.json", result)
        return result
    n, configs, steps, reps = args.num_samples, CONFIGS, 200, 3
    if args.quick:
        n, steps, reps = 200, 30, 1
        configs = [(lab, m, (s if s is None else min(s, 30)), o) for lab, m, s, o in CONFIGS
                   if m != "sde_adaptive"]
    print(f"== quality on exact mixtures, {n} samples, seed {args.seed}")
    quality = sampler_quality(args.targets.split(","), args.sdes.split(","), n, args.seed, configs, args.progress)
    gap_n = 200 if args.quick else args.gap_samples
    print(f"== log-density gap at {gap_n} samples")
    gap = sampler_quality(args.targets.split(","), args.sdes.split(","), gap_n, args.seed,
                          [(lab, m, min(st, 30) if args.quick else st, o) for lab, m, st, o in GAP_CONFIGS],
                          args.progress)
    print(f"== overhead, ScoreMLP at batch {args.batch if not args.quick else 256}")
    overhead = run_overhead(256 if args.quick else args.batch, args.seed, steps, reps)
    print("== imputation of half of bimodal16d (VP, exact score)")
    impute_rows = run_impute(100 if args.quick else 1000, 4 if args.quick else 32, 30 if args.quick else 500,
                             args.seed, smc_steps=30 if args.quick else None)
    result = dict(quality=quality, gap=gap, overhead=overhead, impute=impute_rows, num_samples=n, seed=args.seed,
                  torch=torch.__version__, threads=torch.get_num_threads())
    write_json(f"{args.out}/bench_samplers.json", result)
    plot(quality, f"{args.out}/bench_samplers.png")
    return result


if __name__ == "__main__":
    main()
