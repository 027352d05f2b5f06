"""Exact log-likelihoods through the probability-flow ODE (Song et al. 2021, Sec. 4.3, App. D.2).

log p_eps(x(eps)) = log p_T(x(T)) + int_eps^T div f~(x(t), t) dt, with f~ = f - g^2 s / 2 the
PF-ODE drift (eq. 13, 39), integrated jointly with x.  The divergence is the exact Jacobian trace
(D vector-Jacobian products; small D) or Hutchinson's estimator with fixed probe vectors (one
vector-Jacobian product per probe; unbiased).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import torch
from tqdm.auto import tqdm

from .checks import check_batch, check_choice, check_eps, check_int
from .sampling.api import conditioned
from .sampling.model import counted_run, resolve_model
from .sampling.ode import PFODE, integrate
from .sampling.state import hutchinson_probes
from .sdes import SDE
from .transforms import IDENTITY, AffineScaler

DIVERGENCES = ("hutchinson", "exact")
NOISES = ("rademacher", "gaussian")


@dataclass
class LikelihoodResult:
    """Per-sample results (B,): ``logp`` = log p_eps(x) in nats in model space; ``bpd`` in bits/dim
    in data space (after the scaler's Jacobian and dequantization offset); ``prior_logp`` and
    ``delta_logp`` (= logp - prior_logp, the integrated divergence); ``stderr`` of ``logp`` over
    Hutchinson probes (n_probes > 1, else None); ``nfe`` ODE function evaluations."""

    logp: torch.Tensor
    bpd: torch.Tensor
    prior_logp: torch.Tensor
    delta_logp: torch.Tensor
    nfe: int
    wall_time: float
    stderr: Optional[torch.Tensor] = None
    latent: Optional[torch.Tensor] = None


def divergence_estimates(v: torch.Tensor, x: torch.Tensor, probes: Optional[torch.Tensor]) -> torch.Tensor:
    """(B, P) divergence estimates of v(x): one per Hutchinson probe, or the exact trace (P = 1)."""
    if probes is None:  # exact trace: one VJP per coordinate
        vf = v.flatten(1)
        tr = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for i in range(vf.shape[1]):
            g = torch.autograd.grad(vf[:, i].sum(), x, retain_graph=True)[0]
            tr = tr + g.flatten(1)[:, i]
        return tr[:, None]
    cols = []
    for j in range(probes.shape[0]):
        eps_j = probes[j]
        g = torch.autograd.grad(v, x, eps_j, retain_graph=j < probes.shape[0] - 1)[0]
        cols.append((g * eps_j).flatten(1).sum(1))
    return torch.stack(cols, 1)


def _differentiable(score_fn):
    """score_fn, checked to return an output that autograd connects to x: a detached score (numpy,
    ``no_grad``, ``.detach()``) would drop its part of the divergence and give a wrong log p silently."""
    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = score_fn(x, t)
        if x.requires_grad and not out.requires_grad:
            raise ValueError("the score model's output does not depend on x through autograd (detached, computed "
                             "under torch.no_grad or outside torch); log_likelihood differentiates it for the "
                             "divergence of the probability-flow ODE")
        return out
    return score


def log_likelihood(model, x: torch.Tensor, sde: Union[str, SDE, None] = None, *, eps: float = 1e-5,
                   solver: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-5,
                   divergence: str = "hutchinson", noise: str = "rademacher", n_probes: int = 1,
                   generator: Optional[torch.Generator] = None, progress: bool = True,
                   time_variable: Optional[str] = None, scaler: AffineScaler = IDENTITY,
                   labels=None) -> LikelihoodResult:
    """log p_eps(x) of a score model's PF-ODE for a batch x (B, ...) in model space.

    Args:
        model: ScoreModule, nn.Module or callable score(x, t); sde: name/instance (model's by default).
        eps: start time in (0, T).  solver: a torchdiffeq adaptive method (default "dopri5", stays
            on device) or "rk45" (scipy on CPU, the paper's path).  time_variable: "t", "sigma" or
            "log_sigma" (see ``sampling.ode``; experiments/bench_likelihood.py compares); default the
            SDE's ``ode_time_variable`` ("t"; "log_sigma" for noise tables).
        divergence: "exact" trace or "hutchinson" with ``n_probes`` fixed ``noise`` probes per sample.
        scaler: data <-> model map and number of levels, for bits/dim in data space.
        labels: an int or (B,) class labels: the class-conditional log p_eps(x | label) of a model
            ``score(x, t, labels)``.
    """
    score_fn, sde, data_shape, _ = resolve_model(model, sde)
    check_choice("divergence", divergence, DIVERGENCES)
    check_choice("noise", noise, NOISES)
    n_probes = check_int("n_probes", n_probes)
    eps = check_eps(eps, sde)
    check_batch("x", x, data_shape, solver="log_likelihood")
    if not isinstance(scaler, AffineScaler):
        raise ValueError(f"scaler must be an AffineScaler (data <-> model map for bits/dim), got {scaler!r}")

    B, D = x.shape[0], x[0].numel()
    probes = None
    if divergence == "hutchinson":
        probes = hutchinson_probes(x.shape, n_probes, noise, generator, x.device, x.dtype)
    P = 1 if probes is None else n_probes
    bar = tqdm(desc="likelihood ODE", unit="nfe", disable=not progress, leave=False)
    y0 = torch.cat([x.flatten(1), torch.zeros(B, P, dtype=x.dtype, device=x.device)], 1)
    with counted_run(score_fn, "log_likelihood") as (counter, info):  # one score call per ODE evaluation
        flow = PFODE(sde, _differentiable(conditioned(counter, labels, None, getattr(model, "num_classes", None))),
                     time_variable)

        def augmented(v, y):
            bar.update(1)
            with torch.enable_grad():  # the divergence differentiates the drift in x
                xv = y[:, :D].reshape(x.shape).detach().requires_grad_(True)
                dx = flow(v, xv)
                div = divergence_estimates(dx, xv, probes)
            return torch.cat([dx.detach().flatten(1), div.detach()], 1)

        try:
            yT, _ = integrate(augmented, y0, flow.to_var(eps), flow.to_var(sde.T), solver=solver, rtol=rtol,
                              atol=atol)
        finally:
            bar.close()
    z = yT[:, :D].reshape(x.shape)
    deltas = yT[:, D:]
    prior = sde.prior_logp(z)
    delta = deltas.mean(1)
    logp = prior + delta
    stderr = deltas.std(1) / math.sqrt(P) if P > 1 else None
    return LikelihoodResult(logp=logp, bpd=scaler.bits_per_dim(logp, D), prior_logp=prior, delta_logp=delta,
                            nfe=info.nfe, wall_time=info.wall_time, stderr=stderr, latent=z)
