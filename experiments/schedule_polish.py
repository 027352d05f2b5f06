"""A study for the few-step goals: levels polished so that DPM-Solver++ is exact on the data's Gaussian directions.

1. Spectrum: from a pilot PF-ODE solve (512 points, 120 log-SNR levels), the unresolved noise fraction
   F(sigma) = E|D - x_hat|^2 / (d sigma^2) at each level; for N(0, v) directions it is the mean of
   sigma^2 / (v + sigma^2), so non-negative least squares over a grid of v gives the fraction w(v) of
   directions at each variance.
2. Polish: starting from a schedule (``optimized_schedule``'s fitted levels, or log-SNR), move the levels to
   minimise sum_v w(v) (r_v - 1)^2 + mu * mean (lambda - lambda_start)^2, where r_v is the solver's
   ``gaussian_response`` (its std ratio to the ideal end point along a direction of variance v), by Adam on
   the log step sizes (no score evaluations).
3. Measure: the gap to the ideal end point of 5000 samples (exact scores) on the start and the polished levels.

Not a default: README records where it helps (10 levels on gmm16d) and where it hurts (ring8, whose modes are
not Gaussian directions).

    python experiments/schedule_polish.py            # ~5 minutes on 2 CPU cores
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Tuple

import numpy as np
import scipy.optimize
import torch

from sde_score.benchmarks import exact_target_parser, fitted_levels, ideal_end_point
from sde_score.io import write_json
from sde_score.metrics import mean_log_prob
from sde_score.sampling import default_order, gaussian_response, sample, sigma_schedule
from sde_score.sdes import SDE, get_sde
from sde_score.targets import get_target


def spectrum(score, sde: SDE, shape: Tuple[int, ...], variances: torch.Tensor, seed: int) -> Tuple[torch.Tensor, float]:
    """Fractions w (V,) of directions at each variance (non-negative least squares) and the fit's residual."""
    levels = sigma_schedule(sde, 120, sde.default_eps, "log_snr")
    unresolved = []

    def record(step):
        alpha = float(sde.alpha_sigma(torch.tensor([step.t], dtype=torch.float64))[0][0])
        unresolved.append(float((step.denoised - step.x / alpha).flatten(1).pow(2).mean()) / step.sigma ** 2)

    x_T = sde.prior_sampling(shape, torch.Generator().manual_seed(seed), dtype=torch.float64)
    with torch.no_grad():
        sample(score, sde, "dpm_solver", x_T=x_T, schedule=levels, order=3, progress=False, callback=record)
    s2 = torch.tensor(levels, dtype=torch.float64) ** 2
    design = (s2[:, None] / (variances[None] + s2[:, None])).numpy()
    w, residual = scipy.optimize.nnls(design, np.array(unresolved))
    return torch.tensor(w, dtype=torch.float64), float(residual)


def polish(levels: List[float], variances: torch.Tensor, weights: torch.Tensor, order: int, mu: float,
           iters: int = 300, lr: float = 0.02) -> List[float]:
    """The levels moved (end points fixed) to minimise the weighted Gaussian-response error plus mu times the
    mean squared shift in lambda = -log sigma."""
    lam0 = torch.tensor([-math.log(s) for s in levels], dtype=torch.float64)
    span = float(lam0[-1] - lam0[0])
    z = torch.log(lam0.diff()).clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)

    def lams() -> torch.Tensor:
        return torch.cat([lam0[:1], lam0[0] + (torch.softmax(z, 0) * span).cumsum(0)])

    for _ in range(iters):
        opt.zero_grad()
        lam = lams()
        loss = (weights * (gaussian_response(lam, variances, order) - 1) ** 2).sum() + mu * (lam - lam0).pow(2).mean()
        loss.backward()
        opt.step()
    out = torch.exp(-lams().detach()).tolist()
    out[0], out[-1] = levels[0], levels[-1]
    return out


def main(argv=None) -> dict:
    p = exact_target_parser(__doc__, num_samples=5000, quick_help="ring8 / VE / 10 levels, 200 samples, for tests")
    p.add_argument("--steps", default="10,20")
    p.add_argument("--mu", type=float, default=1e-3)
    args = p.parse_args(argv)
    targets, sdes, steps_list = args.targets.split(","), args.sdes.split(","), args.steps.split(",")
    n = args.num_samples
    if args.quick:
        targets, sdes, steps_list, n = ["ring8"], ["ve"], ["10"], 200
    variances = torch.logspace(-6, 2, 49, dtype=torch.float64)
    rows = []
    print(f"{'target':8s} {'sde':6s} {'levels':>6s} {'order':>5s} {'fitted':>8s} {'polished':>9s} {'log-SNR':>8s} "
          f"{'polished':>9s} {'floor':>6s}")
    for tname in targets:
        target = get_target(tname)
        for sname in sdes:
            sde = get_sde(sname)
            score = target.score_fn(sde)
            weights, residual = spectrum(score, sde, (512,) + target.data_shape, variances, args.seed + 7)
            ideal = target.log_prob(ideal_end_point(target, sde, 20 * n, torch.Generator().manual_seed(args.seed + 3)))
            floor = 1.96 * float(ideal.std()) * (1 / n + 1 / (20 * n)) ** 0.5
            x_T = sde.prior_sampling((n,) + target.data_shape, torch.Generator().manual_seed(args.seed),
                                     dtype=torch.float64)
            for steps in map(int, steps_list):
                order = default_order(steps)
                fitted = list(fitted_levels(tname, sname, steps, args.seed)[0])
                log_snr = sigma_schedule(sde, steps, sde.default_eps, "log_snr")
                gaps = {}
                starts = (("fitted", fitted), ("log_snr", log_snr))
                candidates = [c for name, start in starts
                              for c in ((name, start), (f"{name}_polished", polish(start, variances, weights, order,
                                                                                   args.mu)))]
                for name, levels in candidates:
                    with torch.no_grad():
                        x = sample(score, sde, "dpm_solver", x_T=x_T, schedule=levels, order=order, progress=False)
                    gaps[name] = mean_log_prob(target, x)[0] - float(ideal.mean())
                top = torch.argsort(weights, descending=True)[:3]
                rows.append(dict(target=tname, sde=sname, steps=steps, order=order, floor=floor, mu=args.mu,
                                 spectrum={f"{float(variances[i]):.3g}": float(weights[i]) for i in top},
                                 spectrum_residual=residual, **{f"gap_{k}": v for k, v in gaps.items()}))
                print(f"{tname:8s} {sname:6s} {steps:6d} {order:5d} {gaps['fitted']:+8.3f} "
                      f"{gaps['fitted_polished']:+9.3f} {gaps['log_snr']:+8.3f} {gaps['log_snr_polished']:+9.3f} "
                      f"{floor:6.3f}", flush=True)
    result = dict(rows=rows, num_samples=n, seed=args.seed, mu=args.mu)
    write_json(Path(args.out) / "schedule_polish.json", result)
    return result


if __name__ == "__main__":
    main()
