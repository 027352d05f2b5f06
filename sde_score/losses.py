"""Score-matching objectives as loss objects: ``loss(model, x, labels=None, generator=None) -> (B,)``.

``model`` is a score model that knows its SDE (``ScoreModule``, or ``ScoreModel(score_fn, sde)``);
each loss holds only its own options and records them in ``init_args``, so a config or a checkpoint
names it as ``{"class_path": "dsm", "init_args": {...}}`` (registry names or dotted paths, looked up,
never imported).  The caller averages the per-sample loss.  ``labels`` (B,) are passed to the model
when given.

- ``dsm``: continuous-time denoising score matching (Song et al. 2021, eq. 7) with
  lambda(t) = sigma(t)^2, or lambda = g(t)^2 (``likelihood_weighting``, Song et al. 2021b, "Maximum
  Likelihood Training of Score-Based Diffusion Models", Thm. 1), optionally with t importance-sampled
  from q(t) ~ g^2/sigma^2 (their Sec. 5, variance reduction).
- ``smld`` / ``ddpm``: the discrete NCSN (Song & Ermon 2019, eq. 5) and DDPM (Ho et al. 2020, eq. 14)
  losses over the SDE's N noise levels (Song 2021, App. B).
- ``ssm``: sliced score matching with variance reduction (Song et al. 2019, eq. 8).
- ``ism``: Hyvarinen's implicit score matching, tr(grad s) + ||s||^2 / 2 with the exact trace.
Random draws use ``generator`` (on x's device) or the global RNG.
``ssm`` and ``ism`` are the noise-free objectives: data used as is (``noise_t=None``) or perturbed
at one fixed small time ``noise_t``; the network is conditioned on that time (or ``eps``).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Dict, Optional, Tuple

import torch

from .checkpoints import allow_classes
from .checks import check_eps, check_int, check_number
from .registry import ClassRegistry
from .score_model import call_score, model_sde
from .sdes import SDE, VESDE, VPSDE, bcast


def _randn(x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _rand(n: int, x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=x.device, dtype=x.dtype)


class ImportanceTimeSampler:
    """Draws t in [eps, T] with density q(t) = (g(t)^2 / sigma(t)^2) / Z by inverting its CDF,
    tabulated once on a log-spaced grid (the density behaves like 1/t near 0 for VP)."""

    def __init__(self, sde: SDE, eps: float, points: int = 4096) -> None:
        grid = torch.exp(torch.linspace(math.log(eps), math.log(sde.T), points, dtype=torch.float64))
        _, g = sde.sde(torch.zeros(points, 1, dtype=torch.float64), grid)
        _, sigma = sde.alpha_sigma(grid)
        dens = g ** 2 / sigma ** 2
        cdf = torch.cat([torch.zeros(1, dtype=torch.float64),
                         torch.cumsum(0.5 * (dens[1:] + dens[:-1]) * grid.diff(), 0)])
        self.Z = float(cdf[-1])
        self.grid, self.cdf = grid, cdf / cdf[-1]

    def sample(self, n: int, like: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=like.device)
        cdf, grid = self.cdf.to(u.device), self.grid.to(u.device)
        i = torch.searchsorted(cdf, u).clamp(1, len(cdf) - 1)
        w = (u - cdf[i - 1]) / (cdf[i] - cdf[i - 1])
        return (grid[i - 1] + w * (grid[i] - grid[i - 1])).to(device=like.device, dtype=like.dtype)


class Loss(ABC):
    """A score-matching objective.  Subclasses are dataclasses whose fields are their options."""

    # the objective differentiates the score in x (a double backward through the network)
    differentiates_score: ClassVar[bool] = False

    @property
    def init_args(self) -> Dict[str, Any]:
        """The constructor arguments that rebuild this loss (saved in checkpoints)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def check(self, sde: SDE) -> None:
        """Raise ``ValueError`` if this loss cannot train a model of ``sde``."""
        if hasattr(self, "eps"):
            check_eps(self.eps, sde)

    @abstractmethod
    def __call__(self, model, x: torch.Tensor, labels: Optional[torch.Tensor] = None,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Per-sample loss (B,) of ``model`` on data x (B, ...); random draws from ``generator`` (on x's
        device) or the global RNG."""

    def _sde(self, model) -> SDE:
        sde = model_sde(model)
        self.check(sde)
        return sde

    def _reduce(self, v: torch.Tensor) -> torch.Tensor:
        v = v.flatten(1)
        return v.mean(1) if self.reduce_mean else v.sum(1)

    @staticmethod
    def _perturbed_score(model, x: torch.Tensor, t: torch.Tensor, alpha: Optional[torch.Tensor],
                         sigma: torch.Tensor, labels, generator) -> Tuple[torch.Tensor, torch.Tensor]:
        """(score at x_t = alpha x + sigma z, z) with z ~ N(0, I); alpha None is NCSN's x + sigma z."""
        z = _randn(x, generator)
        mean = x if alpha is None else bcast(alpha, x) * x
        return call_score(model, mean + bcast(sigma, x) * z, t, labels), z

    def _noise_residual(self, score: torch.Tensor, z: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """|| sigma s + z ||^2 per sample (B,): the denoising loss with lambda = sigma^2."""
        return self._reduce((score * bcast(sigma, z) + z) ** 2)


LOSSES = ClassRegistry("loss", Loss, "register your own with @sde_score.register_loss(\"name\") on a Loss subclass")
register_loss = LOSSES.register
allow_classes(LOSSES.lookup)  # checkpoints may name registered losses


def build_loss(spec: Any) -> Loss:
    """A Loss as is, or one built from a registered name or ``{"class_path": ..., "init_args": {...}}``."""
    return LOSSES.build(spec)


def _check_flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


@register_loss("dsm")
@dataclass
class DSMLoss(Loss):
    """Continuous DSM: lambda(t) || s(x_t, t) + z / sigma(t) ||^2 with x_t = alpha x + sigma z,
    t ~ U(eps, T) (Song et al. 2021, eq. 7).  lambda = sigma^2, or g^2 with ``likelihood_weighting``;
    ``importance_sampling`` draws t from q(t) ~ g^2 / sigma^2 instead (Song et al. 2021b, Sec. 5)."""

    eps: float = 1e-5
    likelihood_weighting: bool = False
    importance_sampling: bool = False
    reduce_mean: bool = False
    _t_sampler: Optional[Tuple[tuple, ImportanceTimeSampler]] = field(default=None, init=False, repr=False,
                                                                      compare=False)

    def __post_init__(self) -> None:
        check_number("eps", self.eps, positive=True)
        for name in ("likelihood_weighting", "importance_sampling", "reduce_mean"):
            _check_flag(name, getattr(self, name))
        if self.importance_sampling and not self.likelihood_weighting:
            raise ValueError("importance_sampling is defined for likelihood_weighting=True only")

    def t_sampler(self, sde: SDE) -> ImportanceTimeSampler:
        """The importance sampler of t for ``sde`` (tabulated once per SDE)."""
        key = (type(sde), tuple(sorted(sde.hparams.items())), self.eps)
        if self._t_sampler is None or self._t_sampler[0] != key:
            self._t_sampler = (key, ImportanceTimeSampler(sde, self.eps))
        return self._t_sampler[1]

    def __call__(self, model, x, labels=None, generator=None):
        sde = self._sde(model)
        B = x.shape[0]
        if self.importance_sampling:
            t_sampler = self.t_sampler(sde)
            t = t_sampler.sample(B, x, generator)
        else:
            t = self.eps + (sde.T - self.eps) * _rand(B, x, generator)
        alpha, sigma = sde.alpha_sigma(t)
        score, z = self._perturbed_score(model, x, t, alpha, sigma, labels, generator)
        if self.importance_sampling:
            # lambda / q = g^2 / (g^2 / sigma^2 / Z) = Z sigma^2; times 1/(T - eps) to match E_{t~U}
            return self._noise_residual(score, z, sigma) * t_sampler.Z / (sde.T - self.eps)
        if self.likelihood_weighting:
            return self._reduce((score + z / bcast(sigma, x)) ** 2) * sde.diffusion(t) ** 2
        return self._noise_residual(score, z, sigma)


def _discrete_level(sde: SDE, x: torch.Tensor, generator) -> torch.Tensor:
    return torch.randint(0, sde.N, (x.shape[0],), generator=generator, device=x.device)


@register_loss("smld")
@dataclass
class SMLDLoss(Loss):
    """NCSN loss over the VE SDE's N geometric levels (Song & Ermon 2019, eq. 5):
    sigma_i^2 || s(x + sigma_i z, t_i) + z / sigma_i ||^2."""

    reduce_mean: bool = False

    def __post_init__(self) -> None:
        _check_flag("reduce_mean", self.reduce_mean)

    def check(self, sde: SDE) -> None:
        if not isinstance(sde, VESDE):
            raise ValueError(f"loss 'smld' needs the 've' SDE (NCSN noise levels), got {sde.name!r}")

    def __call__(self, model, x, labels=None, generator=None):
        sde = self._sde(model)
        i = _discrete_level(sde, x, generator)
        sigma = sde.discrete_sigma(i).to(x)
        t = i.to(x.dtype) / max(sde.N - 1, 1) * sde.T
        score, z = self._perturbed_score(model, x, t, None, sigma, labels, generator)
        return self._noise_residual(score, z, sigma)


@register_loss("ddpm")
@dataclass
class DDPMLoss(Loss):
    """DDPM's epsilon loss (Ho et al. 2020, eq. 14) over the VP SDE's N betas:
    || sqrt(1 - abar_i) s(x_i, t_i) + z ||^2 with abar_i = prod_j (1 - beta_j).  Summed over
    dimensions by default like every loss here (Ho et al. average: ``reduce_mean=True``)."""

    reduce_mean: bool = False

    def __post_init__(self) -> None:
        _check_flag("reduce_mean", self.reduce_mean)

    def check(self, sde: SDE) -> None:
        if not isinstance(sde, VPSDE):
            raise ValueError(f"loss 'ddpm' needs the 'vp' SDE (DDPM betas), got {sde.name!r}")
        problem = sde.discrete_levels_problem()
        if problem:
            raise ValueError(f"loss 'ddpm': {problem}")

    def __call__(self, model, x, labels=None, generator=None):
        sde = self._sde(model)
        i = _discrete_level(sde, x, generator)
        betas = sde.discrete_beta(torch.arange(sde.N)).to(x)
        abar = torch.cumprod(1 - betas, 0)[i]
        # level i has integrated beta ~ int_0^{(i+1)/N} beta(s) ds, so it sits at t = (i + 1) T / N
        # (this keeps t > 0, where the continuous sigma(t) of scale_by_sigma is non-zero)
        t = (i.to(x.dtype) + 1) / sde.N * sde.T
        std = torch.sqrt(1 - abar)
        score, z = self._perturbed_score(model, x, t, torch.sqrt(abar), std, labels, generator)
        return self._noise_residual(score, z, std)


@dataclass
class _NoiseFreeLoss(Loss):
    """Shared by ssm/ism: data used as is (``noise_t=None``, the network conditioned on t = eps) or
    perturbed once at the fixed time ``noise_t``."""

    differentiates_score: ClassVar[bool] = True
    eps: float = 1e-5
    noise_t: Optional[float] = None
    reduce_mean: bool = False

    def __post_init__(self) -> None:
        check_number("eps", self.eps, positive=True)
        if self.noise_t is not None:
            check_number("noise_t", self.noise_t, positive=True)
        _check_flag("reduce_mean", self.reduce_mean)

    def check(self, sde: SDE) -> None:
        super().check(sde)
        if self.noise_t is not None and not self.noise_t <= sde.T:
            raise ValueError(f"noise_t must lie in (0, T = {sde.T}], got {self.noise_t}")

    def _input(self, sde: SDE, x: torch.Tensor, generator) -> Tuple[torch.Tensor, torch.Tensor]:
        t_val = self.eps if self.noise_t is None else self.noise_t
        t = torch.full((x.shape[0],), t_val, device=x.device, dtype=x.dtype)
        if self.noise_t is not None:
            mean, std = sde.marginal_prob(x, t)
            x = mean + bcast(std, x) * _randn(x, generator)
        return x.detach().requires_grad_(True), t

    def _finish(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return out / x[0].numel() if self.reduce_mean else out


@register_loss("ssm")
@dataclass
class SSMLoss(_NoiseFreeLoss):
    """Sliced score matching, variance-reduced (Song et al. 2019, eq. 8):
    v^T (d s / dx) v + ||s||^2 / 2 with ``n_slices`` projections v ~ N(0, I)."""

    n_slices: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("n_slices", self.n_slices, minimum=1)

    def __call__(self, model, x, labels=None, generator=None):
        xin, t = self._input(self._sde(model), x, generator)
        s = call_score(model, xin, t, labels)
        total = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for _ in range(self.n_slices):
            v = _randn(x, generator)
            gv = torch.autograd.grad((s * v).sum(), xin, create_graph=True)[0]
            total = total + (gv * v).flatten(1).sum(1)
        return self._finish(x, total / self.n_slices + 0.5 * s.flatten(1).pow(2).sum(1))


@register_loss("ism")
@dataclass
class ISMLoss(_NoiseFreeLoss):
    """Implicit score matching (Hyvarinen 2005): tr(d s / dx) + ||s||^2 / 2, exact trace (D passes)."""

    def __call__(self, model, x, labels=None, generator=None):
        xin, t = self._input(self._sde(model), x, generator)
        sf = call_score(model, xin, t, labels).flatten(1)
        trace = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for i in range(sf.shape[1]):
            trace = trace + torch.autograd.grad(sf[:, i].sum(), xin, create_graph=True)[0].flatten(1)[:, i]
        return self._finish(x, trace + 0.5 * sf.pow(2).sum(1))
