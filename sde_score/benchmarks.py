"""Harnesses shared by the benchmark scripts under ``experiments/``: sampler quality and likelihood
accuracy against the exact mixture targets, and YAML configs (mean and standard error:
``metrics.mean_se``).

Each returns plain rows (dicts) that the scripts print, plot and write as JSON; the scripts import
them from here and never from each other.
"""
from __future__ import annotations

import argparse
import functools
import itertools
import math
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import torch

from .checks import check_choice
from .likelihood import log_likelihood
from .metrics import mean_log_prob, mode_weight_tv, tv_floor
from .sampling import CountingScore, final_denoise, gaussian_response, optimized_schedule, sample
from .sampling.schedules import FITTED
from .sdes import SDE, bcast, get_sde
from .targets import GaussianMixture, get_target


def load_yaml(path: Union[str, Path]) -> dict:
    """A YAML config as a dict (a clear error for a missing file or a non-mapping document)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config {str(path)!r} does not exist")
    cfg = yaml.safe_load(path.read_text())
    if not isinstance(cfg, dict):
        raise ValueError(f"config {str(path)!r} is not a YAML mapping")
    return cfg


@functools.lru_cache(maxsize=None)
def fitted_levels(tname: str, sname: str, steps: int, seed: int) -> Tuple[Tuple[float, ...], int]:
    """optimized_schedule's levels for a target's exact score, and the pilot's score evaluations
    (512 pilot points; not part of the per-sample NFE).  Fitted once per (target, SDE, steps, seed)
    and shared by every configuration that uses them."""
    target, sde = get_target(tname), get_sde(sname)
    score = CountingScore(target.score_fn(sde))
    levels = optimized_schedule(score, sde, steps, shape=(1,) + target.data_shape,
                                generator=torch.Generator().manual_seed(seed + 2), progress=False)
    return tuple(levels), score.nfe


# methods whose last step is the Tweedie denoiser at eps: dpm_solver and heun (D at the last level), ode, sde and
# sde_adaptive (final_denoise, on by default)
TWEEDIE_END = ("dpm_solver", "heun", "ode", "sde", "sde_adaptive")


def ideal_end_point(target: GaussianMixture, sde: SDE, n: int, generator: torch.Generator) -> torch.Tensor:
    """Exact samples of p_eps (eps = ``sde.default_eps``) followed by the exact Tweedie step at eps: where a
    sampler that ends with that step lands when its only error is that of the denoising step itself, so
    that a sampler's log-density gap to these samples is its discretisation error alone."""
    return tweedie_end(sde, target.score_fn(sde), target.sample(n, generator, dtype=torch.float64), generator)


def exact_target_parser(doc: str, targets: str = "ring8,gmm16d,image64", num_samples: int = 4000,
                        quick_help: str = "a smoke run, for tests") -> argparse.ArgumentParser:
    """The command line of the scripts that sweep exact targets and SDEs: --targets, --sdes, --num-samples,
    --seed, --out, --quick; a script adds its own options to it."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default=targets)
    p.add_argument("--sdes", default="ve,vp,subvp")
    p.add_argument("--num-samples", type=int, default=num_samples)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="experiments/results")
    p.add_argument("--quick", action="store_true", help=quick_help)
    return p


@functools.lru_cache(maxsize=None)
def _component_spectra(tname: str) -> Tuple[Tuple[float, torch.Tensor], ...]:
    target = get_target(tname)
    return tuple((float(w), torch.linalg.eigvalsh(cov)) for w, cov in zip(target.weights, target.covs))


def gaussian_response_gap(tname: str, levels: Sequence[float], order: int) -> float:
    """The mean log-density gap (nats) to the ideal end point that DPM-Solver++ on ``levels`` would have on the
    target ``tname`` if its only error were its Gaussian response (``sampling.gaussian_response``): a direction
    of std ratio r costs (r^2 - 1) / 2, summed over every eigen-direction of every component (weighted)."""
    lams = torch.tensor([-math.log(s) for s in levels], dtype=torch.float64)
    return sum(w * float(-(gaussian_response(lams, ev, order) ** 2 - 1).sum() / 2)
               for w, ev in _component_spectra(tname))


def tweedie_end(sde: SDE, score_fn, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """x0 (B, ...) float64 forward-perturbed to eps = ``sde.default_eps`` and denoised there by the exact Tweedie
    step of ``score_fn``: for exact draws x0 of a law, the ideal end point of a sampler of that law."""
    eps = sde.default_eps
    alpha, sigma = sde.alpha_sigma(torch.full((x0.shape[0],), eps, dtype=torch.float64))
    x = bcast(alpha, x0) * x0 + bcast(sigma, x0) * torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    return final_denoise(sde, score_fn, x, eps)


def impute_conditions(target: GaussianMixture, family: str = "gmm16d", noise_std: float = 0.0,
                      quick: bool = False):
    """The hard imputation conditions of experiments/bench_impute_hard.py (and the tests): yields (name, known
    bool mask of data_shape, x float64 of data_shape holding the observation at the known entries, 0 elsewhere).

    ``gmm16d`` (``target`` = get_target("gmm16d")): every other coordinate observed (offsets 0 and 1), at the
    point between modes i and j where the exact conditional splits them evenly (``balanced_observation``).
    ``image64``: the top 1 / 4 / 7 rows of 8 observed between modes 1 and 2, and a low-density observation (top 4
    rows 3 sd out along the widest direction of mode 3's observed marginal).  ``quick``: the first only."""
    check_choice("family", family, ("gmm16d", "image64"))
    if family == "image64":  # the top rows observed
        for rows in (1, 4, 7):
            known = torch.zeros(1, 8, 8, dtype=torch.bool)
            known[:, :rows] = True
            x = torch.zeros(1, 8, 8, dtype=torch.float64)
            x[known] = target.balanced_observation(known, 1, 2, noise_std)
            yield f"rows[:{rows}] 1|2", known, x
            if quick:
                return
        known = torch.zeros(1, 8, 8, dtype=torch.bool)
        known[:, :4] = True
        m = known.reshape(-1)  # low density: 3 sd out along the widest direction of mode 3's observed marginal
        ev, U = torch.linalg.eigh(target.covs[3][m][:, m])
        x = torch.zeros(1, 8, 8, dtype=torch.float64)
        x[known] = target.means[3][m] + 3 * ev[-1].sqrt() * U[:, -1]
        yield "rows[:4] tail of 3", known, x
        return
    for offset in (0, 1):
        known = torch.zeros(16, dtype=torch.bool)
        known[offset::2] = True
        for i, j in itertools.combinations(range(target.num_components), 2):
            try:
                y = target.balanced_observation(known, i, j, noise_std)
            except ValueError:  # the two weights never cross on that segment
                continue
            x = torch.zeros(16, dtype=torch.float64)
            x[known] = y
            yield f"obs[{offset}::2] {i}|{j}", known, x
            if quick:
                return


def sampler_quality(targets: Sequence[str], sdes: Sequence[str], n: int, seed: int, configs: Sequence[tuple],
                    progress: bool = False) -> List[Dict]:
    """Samples of each (label, method, steps, options) config against the exact target: one row per
    (target, SDE, config) with NFE, seconds, mode-weight TV and its floor, and the mean exact
    log-density gap.  ``schedule=FITTED`` in options stands for ``optimized_schedule``'s levels.  The
    gap's reference is a 20x larger exact sample, so its standard error (``gap_se``) is nearly all
    the sampler's own.  For methods that end with the Tweedie step (``TWEEDIE_END``), ``ideal_gap`` is
    the gap to the ideal end point (``ideal_end_point``, 20x larger) and ``ideal_floor`` the 95 % quantile
    of |that gap| for exact samples of this size, 1.96 sd(log p) sqrt(1/n + 1/(20 n))."""
    rows = []
    for tname in targets:
        target = get_target(tname)
        ref_logp, _ = mean_log_prob(target, target.sample(20 * n, torch.Generator().manual_seed(seed + 1)))
        for sname in sdes:
            sde = get_sde(sname)
            ideal_logp = ideal_floor = None
            if any(c[1] in TWEEDIE_END for c in configs):
                ideal = ideal_end_point(target, sde, 20 * n, torch.Generator().manual_seed(seed + 3))
                ideal_lp = target.log_prob(ideal)
                ideal_logp = float(ideal_lp.mean())
                ideal_floor = 1.96 * float(ideal_lp.std()) * (1 / n + 1 / (20 * n)) ** 0.5
            for label, method, steps, opts in configs:
                pilot_nfe = 0
                if opts.get("schedule") == FITTED:
                    levels, pilot_nfe = fitted_levels(tname, sname, steps, seed)
                    opts = dict(opts, schedule=levels)
                x, info = sample(target.score_fn(sde), sde, method, shape=(n,) + target.data_shape,
                                 steps=steps, generator=torch.Generator().manual_seed(seed),
                                 progress=progress, return_info=True, **opts)
                logp, logp_se = mean_log_prob(target, x)
                tweedie = method in TWEEDIE_END and opts.get("denoise", True)
                rows.append(dict(target=tname, sde=sname, sampler=label, steps=steps, nfe=info.nfe,
                                 pilot_nfe=pilot_nfe, seconds=round(info.wall_time, 3), tv=mode_weight_tv(target, x),
                                 tv_floor=tv_floor(target, n), logp_gap=logp - ref_logp, gap_se=logp_se,
                                 ideal_gap=logp - ideal_logp if tweedie else None, ideal_floor=ideal_floor))
                ideal = f" ideal gap={rows[-1]['ideal_gap']:+.4f} (floor {ideal_floor:.4f})" if tweedie else ""
                print("{target:7s} {sde:5s} {sampler:36s} steps={steps!s:5s} nfe={nfe:5d} {seconds:7.2f}s "
                      "tv={tv:.4f} gap={logp_gap:+.4f} +- {gap_se:.4f}".format(**rows[-1]) + ideal, flush=True)
    return rows


def likelihood_accuracy(targets: Sequence[str], sdes: Sequence[str], n: int, eps: float, configs: Sequence[tuple],
                        seed: int) -> List[Dict]:
    """PF-ODE log-likelihoods of exact target samples for each (label, solver, time variable,
    divergence, n_probes, tol) config; one row per (target, SDE, config): NFE, time, solver error
    against the exact log p_eps (with the exact prior p_T) and the prior mismatch at the ODE's end
    point."""
    rows: List[Dict] = []
    log_likelihood(lambda x, t: -x, torch.zeros(2, 2), "vp", progress=False)  # warm imports out of timings
    for tname in targets:
        target = get_target(tname)
        x = target.sample(n, torch.Generator().manual_seed(seed), dtype=torch.float64)
        for sname in sdes:
            sde = get_sde(sname)
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


def reconstruction_args(doc: str, argv=None, default_ckpt: str = "outputs/digits/checkpoints/last.ckpt"):
    """The command line of the digits reconstruction scripts (inpainting, super-resolution): checkpoint,
    image count, steps, SMC particles, seed, output folder, progress."""
    import argparse

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default=default_ckpt)
    p.add_argument("--num-images", type=int, default=10)
    p.add_argument("--steps", type=int, default=300, help="steps of the replacement baseline")
    p.add_argument("--smc-steps", type=int, default=None,
                   help="steps per SMC pass (default: impute's, 200 x 5 passes)")
    p.add_argument("--num-particles", type=int, default=64, help="SMC particles per image (the library default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="experiments/results")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def smc_and_replacement(run, args) -> List[torch.Tensor]:
    """``run(method, generator=..., progress=..., steps=..., **options)`` for SMC (``args.num_particles``,
    ``args.smc_steps`` per pass) and for the replacement baseline (``args.steps``), each from the same seed: the
    two rows a reconstruction picture compares."""
    return [run(method, generator=torch.Generator().manual_seed(args.seed), progress=not args.no_progress, **opts)
            for method, opts in (("smc", dict(num_particles=args.num_particles, steps=args.smc_steps)),
                                 ("replacement", dict(steps=args.steps)))]
