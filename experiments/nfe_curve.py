"""Sample quality against the number of score evaluations (NFE) for every sampler and SDE on the
exact mixtures: mode-weight TV, mean log-density gap, and the gap to the ideal end point (exact p_eps
samples + the Tweedie step the ODE-type samplers end with; ``benchmarks.ideal_end_point``) with its
floor, one PNG per target.

    python experiments/nfe_curve.py                     # ~5 minutes on 2 CPU cores
"""
from __future__ import annotations

from pathlib import Path

from sde_score.benchmarks import FITTED, exact_target_parser, sampler_quality
from sde_score.io import write_json
from sde_score.plotting import log_log, pyplot, save_figure

SWEEP = (
    [("pc rd+langevin", "pc", s, {}) for s in (50, 150, 500)]
    + [("pc euler_maruyama", "pc", s, dict(corrector="none", predictor="euler_maruyama")) for s in (50, 150, 500)]
    + [("ode dopri5", "ode", None, dict(rtol=tol, atol=tol)) for tol in (1e-2, 1e-3, 1e-5)]
    + [("heun", "heun", s, {}) for s in (4, 8, 16, 32)]
    + [("dpm_solver 2M", "dpm_solver", s, dict(order=2, corrector=False)) for s in (5, 10, 20, 40)]
    + [("dpm_solver 2M+corrector", "dpm_solver", s, dict(order=2)) for s in (5, 10, 20, 40)]
    + [("dpm_solver 3M", "dpm_solver", s, dict(order=3, corrector=False)) for s in (5, 10, 20, 40)]
    + [("dpm_solver 3M+corrector", "dpm_solver", s, dict(order=3)) for s in (5, 10, 20, 40)]
    + [("dpm_solver 3M+corrector, fitted levels", "dpm_solver", s, dict(order=3, schedule=FITTED))
       for s in (5, 10, 20, 40)]
)


def plot(rows, target: str, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for (sde, ls) in (("ve", "-"), ("vp", "--"), ("subvp", ":")):
        for sampler in dict.fromkeys(r["sampler"] for r in rows):
            sel = sorted((r for r in rows if r["target"] == target and r["sde"] == sde and r["sampler"] == sampler),
                         key=lambda r: r["nfe"])
            if not sel:
                continue
            nfe = [r["nfe"] for r in sel]
            axes[0].plot(nfe, [r["tv"] for r in sel], ls, marker="o", ms=3, label=f"{sampler} ({sde})")
            axes[1].plot(nfe, [abs(r["logp_gap"]) for r in sel], ls, marker="o", ms=3)
            if sel[0]["ideal_gap"] is not None:
                axes[2].plot(nfe, [max(abs(r["ideal_gap"]), 1e-4) for r in sel], ls, marker="o", ms=3)
    floor = next(r["tv_floor"] for r in rows if r["target"] == target)
    axes[0].axhline(floor, color="gray", lw=1, ls=":", label="statistical floor")
    ideal_floor = max(r["ideal_floor"] for r in rows if r["target"] == target)
    axes[2].axhline(ideal_floor, color="gray", lw=1, ls=":")
    for ax, name in zip(axes, ("mode-weight TV", "|mean log-density gap| (nats)",
                               "|gap to the ideal end point| (nats)")):
        log_log(ax, "NFE", name)
    axes[0].legend(fontsize=6, ncol=2)
    fig.suptitle(f"{target}: quality vs score evaluations (exact score)")
    save_figure(fig, path, dpi=90)


def main(argv=None) -> dict:
    args = exact_target_parser(__doc__, quick_help="two cheap samplers, for tests").parse_args(argv)
    sweep = [c for c in SWEEP if c[1] in ("heun", "dpm_solver")][:3] if args.quick else SWEEP
    n = 200 if args.quick else args.num_samples
    targets = args.targets.split(",")
    rows = sampler_quality(targets, args.sdes.split(","), n, args.seed, sweep, progress=False)
    out = Path(args.out)
    for t in targets:
        plot(rows, t, out / f"nfe_curve_{t}.png")
    result = dict(rows=rows, num_samples=n, seed=args.seed)
    write_json(out / "nfe_curve.json", result)
    return result


if __name__ == "__main__":
    main()
