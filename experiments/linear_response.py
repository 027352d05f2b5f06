"""How much of a few-step sampler's error is its error on Gaussian directions: for each target, SDE and
DPM-Solver++ configuration, the gap to the ideal end point predicted from the levels alone
(``benchmarks.gaussian_response_gap``: ``sampling.gaussian_response`` on every eigen-direction of every
mixture component) beside the
measured one (``benchmarks.sampler_quality``), and a PNG of the response ratio against the direction's variance.

On N(0, v) data the solver is a linear map of x_T; if its samples have r times the ideal end point's std along
a direction, their mean log-density there is lower by (r^2 - 1) / 2 nats.  Summed over the 64 directions of
image64 (60 of them 0.03 wide) that is most of the measured gap; on ring8 and gmm16d, where modes must be told
apart, it is not.

    python experiments/linear_response.py          # ~4 minutes on 2 CPU cores
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List

import torch

from sde_score.benchmarks import FITTED, exact_target_parser, fitted_levels, gaussian_response_gap, sampler_quality
from sde_score.io import write_json
from sde_score.plotting import log_log, pyplot, save_figure
from sde_score.sampling import gaussian_response, sigma_schedule
from sde_score.sdes import get_sde

CONFIGS = [(f"{order}M+corrector, {name}", order, schedule, steps)
           for steps in (10, 20) for order in (2, 3)
           for name, schedule in (("log-SNR", "log_snr"), ("fitted", FITTED))]


def levels_of(tname: str, sname: str, schedule: str, steps: int, seed: int) -> List[float]:
    sde = get_sde(sname)
    if schedule == FITTED:
        return list(fitted_levels(tname, sname, steps, seed)[0])  # the same levels sampler_quality uses
    return sigma_schedule(sde, steps, sde.default_eps, schedule)


def plot(curves: Dict[str, Dict], path: Path) -> None:
    plt = pyplot()
    sdes = sorted({c["sde"] for c in curves.values()})
    fig, axes = plt.subplots(1, len(sdes), figsize=(4.6 * len(sdes), 3.6), squeeze=False)
    for ax, sname in zip(axes[0], sdes):
        for label, c in curves.items():
            if c["sde"] == sname:
                ax.plot(c["v"], [max(abs(e), 1e-7) for e in c["r_minus_1"]], label=c["config"])
        ax.axvline(0.03 ** 2, ls=":", c="gray", lw=1, label="image64's thin directions (0.03^2)")
        log_log(ax, "variance v of the Gaussian direction", "|r - 1| (std ratio to the ideal end)")
        ax.set_title(f"{sname}, 20 levels")
    axes[0][0].legend(fontsize=6, loc="lower left")
    save_figure(fig, path)


def main(argv=None) -> dict:
    p = exact_target_parser(__doc__, "image64,gmm16d,ring8", quick_help="one target and SDE, 200 samples, for tests")
    args = p.parse_args(argv)
    targets, sdes = args.targets.split(","), args.sdes.split(",")
    configs, n = CONFIGS, args.num_samples
    if args.quick:
        targets, sdes, n = targets[:1], sdes[:1], 200
        configs = [c for c in CONFIGS if c[3] == 20 and c[2] == "log_snr"]  # no pilot
    runs = [(label, "dpm_solver", steps, dict(order=order, schedule=schedule))
            for label, order, schedule, steps in configs]
    measured = sampler_quality(targets, sdes, n, args.seed, runs)
    spec = {(label, steps): (order, schedule) for label, order, schedule, steps in configs}
    rows = []
    for r in measured:
        order, schedule = spec[r["sampler"], r["steps"]]
        levels = levels_of(r["target"], r["sde"], schedule, r["steps"], args.seed)
        rows.append(dict(target=r["target"], sde=r["sde"], config=r["sampler"], steps=r["steps"], nfe=r["nfe"],
                         measured_gap=r["ideal_gap"], floor=r["ideal_floor"],
                         predicted_gap=gaussian_response_gap(r["target"], levels, order)))
    print(f"\n{'target':8s} {'sde':6s} {'configuration':28s} {'steps':>5s} {'measured':>9s} {'predicted':>10s} "
          f"{'floor':>6s}")
    for r in rows:
        print(f"{r['target']:8s} {r['sde']:6s} {r['config']:28s} {r['steps']:5d} {r['measured_gap']:+9.3f} "
              f"{r['predicted_gap']:+10.3f} {r['floor']:6.3f}")
    v = torch.logspace(-5, 1.5, 60, dtype=torch.float64)
    curves = {}
    for sname in sdes:
        for label, order, schedule, steps in configs:
            if steps != 20:
                continue
            lams = torch.tensor([-math.log(s) for s in levels_of(targets[0], sname, schedule, steps, args.seed)],
                                dtype=torch.float64)
            curves[f"{sname} {label}"] = dict(sde=sname, config=f"{label} ({targets[0]})", v=v.tolist(),
                                              r_minus_1=(gaussian_response(lams, v, order) - 1).tolist())
    out = Path(args.out)
    plot(curves, out / "linear_response.png")
    result = dict(rows=rows, curves=curves, num_samples=n, seed=args.seed)
    write_json(out / "linear_response.json", result)
    return result


if __name__ == "__main__":
    main()
