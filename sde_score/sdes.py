"""Forward SDEs dx = f(x, t) dt + g(t) dw and their reverse-time / probability-flow forms.

Song et al. 2021, "Score-Based Generative Modeling through SDEs", Sec. 3 and App. B-C.
Every SDE here is linear in x with an isotropic Gaussian kernel,
    p_0t(x_t | x_0) = N(x_t; alpha(t) x_0, sigma(t)^2 I),
so a subclass states only ``_drift_diffusion``, ``_alpha_sigma``, ``default_eps`` and ``hparams``
and gets every sampler and the likelihood: the discretisation defaults to Euler-Maruyama and the
inverse of sigma(t)/alpha(t) to a bisection; VE, VP and sub-VP override both with their closed
forms (NCSN / DDPM chains, exact inverses).  Shapes: ``x`` is (B, ...), ``t`` is (B,) (a float is
broadcast).
"""
from __future__ import annotations

import abc
import math
from typing import Optional, Sequence, Tuple

import torch

from .checks import ScoreFn, check_finite, check_int, check_number
from .registry import Registry

SDES: Registry[type] = Registry("SDE")
register_sde = SDES.register


def get_sde(name: str, **kwargs) -> "SDE":
    """Build a registered SDE by (case-insensitive) name, e.g. ``get_sde("vp", N=500)``."""
    return SDES.get(name)(**kwargs)


def bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample vector (B,) so it broadcasts against x (B, ...)."""
    return v.reshape(v.shape + (1,) * (x.dim() - v.dim()))


class SDE(abc.ABC):
    """A forward SDE on [0, T] with an isotropic Gaussian perturbation kernel."""

    name: str = "sde"
    T: float = 1.0
    ode_time_variable: str = "t"  # what PF-ODE solvers integrate over by default ("t", "sigma", "log_sigma")

    def __init__(self, N: int = 1000) -> None:
        self.N = check_int("N", N, minimum=1)

    # -- formulas each subclass states -------------------------------------------------------
    @property
    @abc.abstractmethod
    def default_eps(self) -> float:
        """Smallest time used by samplers (avoids the singular score at t = 0)."""

    @property
    @abc.abstractmethod
    def hparams(self) -> dict:
        """Constructor arguments (used to copy the SDE and to store it in checkpoints)."""

    @abc.abstractmethod
    def _drift_diffusion(self, x: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        ...

    @abc.abstractmethod
    def _alpha_sigma(self, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        ...

    def _t_from_edm_sigma(self, s: torch.Tensor) -> torch.Tensor:
        """Inverse of sigma(t)/alpha(t) by bisection on [0, T] (it increases with t for every SDE
        with a Gaussian kernel that forgets the data); 60 halvings reach float64 resolution."""
        target = s.double()
        lo, hi = torch.zeros_like(target), torch.full_like(target, self.T)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            alpha, sigma = self._alpha_sigma(mid)
            below = sigma / alpha < target
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return (0.5 * (lo + hi)).to(s.dtype)

    def _discretize(self, x: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Euler-Maruyama with dt = T / N: f = f(x, t) dt, G = g(t) sqrt(dt) (the paper code's default)."""
        dt = self.T / self.N
        drift, g = self._drift_diffusion(x, t)
        return drift * dt, g * math.sqrt(dt)

    @property
    def prior_std(self) -> float:
        """Std of the isotropic Gaussian prior N(0, prior_std^2 I) approximating p_T."""
        return 1.0

    # -- public interface ---------------------------------------------------------------------
    def check_t(self, t, like: Optional[torch.Tensor] = None, *, name: str = "t") -> torch.Tensor:
        """Return t as a (B,) tensor (broadcasting a float), checking it lies in [0, T]."""
        if not torch.is_tensor(t):  # a Python float keeps its float64 precision
            t = torch.tensor(check_number(name, t), dtype=torch.float64)
        if like is not None:
            t = t.to(device=like.device, dtype=like.dtype if like.is_floating_point() else t.dtype)
            if t.dim() == 0:
                t = t.expand(like.shape[0])
            if t.shape != like.shape[:1]:
                raise ValueError(f"{name} must have shape ({like.shape[0]},) to match x, got {tuple(t.shape)}")
        check_finite(name, t)
        if bool(((t < 0) | (t > self.T)).any()):
            bad = t[(t < 0) | (t > self.T)][0].item()
            raise ValueError(f"{name} must lie in [0, T={self.T}], got {bad}")
        return t

    def sde(self, x: torch.Tensor, t) -> Tuple[torch.Tensor, torch.Tensor]:
        """Drift f(x, t) (like x) and diffusion g(t) (B,) of the forward SDE (eq. 5)."""
        return self._drift_diffusion(x, self.check_t(t, x))

    def diffusion(self, t) -> torch.Tensor:
        """Diffusion coefficient g(t) (B,) of the forward SDE (eq. 5); it does not depend on x."""
        t = self.check_t(t)
        return self._drift_diffusion(t.reshape(-1, 1), t.reshape(-1))[1]

    def alpha_sigma(self, t) -> Tuple[torch.Tensor, torch.Tensor]:
        """Kernel coefficients: p_0t(x_t | x_0) = N(alpha(t) x_0, sigma(t)^2 I); each (B,)."""
        t = self.check_t(t)
        return self._alpha_sigma(t)

    def marginal_prob(self, x0: torch.Tensor, t) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mean (like x0) and std (B,) of the perturbation kernel p_0t(x_t | x_0)."""
        alpha, sigma = self._alpha_sigma(self.check_t(t, x0))
        return bcast(alpha, x0) * x0, sigma

    def posterior_coeffs(self, t, s) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(a, b, std), each like t: the forward process's posterior q(x_s | x_t, x_0) = N(a x_t + b x_0, std^2 I)
        for s < t (Ho et al. 2020, eq. 7, for any linear-drift SDE: x_t | x_s ~ N(alpha_t/alpha_s x_s,
        sigma_t^2 - (alpha_t/alpha_s)^2 sigma_s^2)).  With x_0 = Tweedie's estimate it is the ancestral kernel
        on an arbitrary grid: its mean is E[x_s | x_t] for any data, its variance lacks b^2 Cov[x_0 | x_t]."""
        a_t, s_t = self.alpha_sigma(t)
        a_s, s_s = self.alpha_sigma(s)
        a_ts = a_t / a_s
        v_ts = (s_t ** 2 - a_ts ** 2 * s_s ** 2).clamp(min=0)  # round-off only: s_t >= a_ts s_s for s <= t
        return a_ts * s_s ** 2 / s_t ** 2, a_s * v_ts / s_t ** 2, (v_ts * s_s ** 2 / s_t ** 2).sqrt()

    def edm_sigma(self, t) -> torch.Tensor:
        """Noise-to-signal ratio sigma(t)/alpha(t): the sigma of EDM's scaled coordinates x/alpha."""
        alpha, sigma = self.alpha_sigma(t)
        return sigma / alpha

    def t_from_edm_sigma(self, s: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`edm_sigma`: the time at which sigma(t)/alpha(t) = s."""
        s = check_finite("edm sigma", torch.as_tensor(s))
        if bool((s <= 0).any()):
            raise ValueError("edm sigma must be > 0")
        return self._t_from_edm_sigma(s)

    def prior_sampling(self, shape: Sequence[int], generator: Optional[torch.Generator] = None,
                       device=None, dtype=None) -> torch.Tensor:
        """Draw x_T ~ N(0, prior_std^2 I) of the given full shape (B, ...)."""
        return self.prior_std * torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """Log-density (nats) of the prior at z (B, ...); returns (B,)."""
        d = z[0].numel()
        s2 = self.prior_std ** 2
        return -0.5 * d * math.log(2 * math.pi * s2) - z.flatten(1).pow(2).sum(1) / (2 * s2)

    def discretize(self, x: torch.Tensor, t) -> Tuple[torch.Tensor, torch.Tensor]:
        """One forward step of the discrete chain, x_{i+1} = x_i + f + G z (eq. 45-47 / App. E);
        returns f (like x) and G (B,). ``t`` is mapped to the nearest index of the N-point grid."""
        return self._discretize(x, self.check_t(t, x))

    def timestep_index(self, t: torch.Tensor) -> torch.Tensor:
        """Index i in 0..N-1 of the grid point i T / (N - 1) at or just below t, as in the paper's
        code (truncation keeps the indices of linspace(T, eps, N) distinct while eps (N-1) < T);
        the 1e-4 slack absorbs float32 rounding of grid points that lie exactly on the grid."""
        if self.N == 1:
            return torch.zeros_like(t, dtype=torch.long)
        return torch.floor(t.double() * (self.N - 1) / self.T + 1e-4).long().clamp(0, self.N - 1)

    def langevin_scale(self, t: torch.Tensor) -> torch.Tensor:
        """Factor a_i of the Langevin corrector's step size (Alg. 4-5): 1 unless overridden."""
        return torch.ones_like(t)

    def discrete_levels_problem(self, levels: str = "N") -> Optional[str]:
        """Why the N-level discretisation (``discretize``, ``langevin_scale``, ancestral steps) is not
        defined for this N, naming the count ``levels`` (e.g. a sampler's "steps"); None if it is."""
        return None

    def with_N(self, N: int) -> "SDE":
        """A copy with another number of discretisation steps."""
        return type(self)(**{**self.hparams, "N": N})

    def ancestral_step(self, x: torch.Tensor, t: torch.Tensor, score: torch.Tensor
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mean and std (B,) of one ancestral-sampling step x_i -> x_{i-1} (App. F)."""
        raise ValueError(f"ancestral sampling is not defined for the {self.name!r} SDE; "
                         f"use it with 've' or 'vp'")

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> "ReverseSDE":
        """The reverse-time SDE (eq. 6) or, with ``probability_flow``, the PF-ODE (eq. 13)."""
        return ReverseSDE(self, score_fn, probability_flow)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.hparams.items())
        return f"{type(self).__name__}({args})"


class ReverseSDE:
    """Reverse-time SDE dx = [f - g^2 score] dt + g dw_bar, integrated from T down to 0.

    ``sde``/``discretize`` return the drift in forward-time convention, so a step from t to
    t - dt is ``x - drift * dt + diffusion * sqrt(dt) z`` (and ``x - f + G z`` when discretised).
    With ``probability_flow`` the drift is f - 1/2 g^2 score and the diffusion is zero (eq. 13):
    this is the single definition of the PF-ODE used by samplers, encoders and likelihoods.
    """

    def __init__(self, forward: SDE, score_fn: ScoreFn, probability_flow: bool = False) -> None:
        self.forward = forward
        self.score_fn = score_fn
        self.probability_flow = probability_flow
        self.T = forward.T
        self.N = forward.N
        self._coef = 0.5 if probability_flow else 1.0

    def sde(self, x: torch.Tensor, t) -> Tuple[torch.Tensor, torch.Tensor]:
        t = self.forward.check_t(t, x)
        drift, diffusion = self.forward._drift_diffusion(x, t)
        score = self.score_fn(x, t)
        drift = drift - bcast(diffusion ** 2, x) * score * self._coef
        return drift, torch.zeros_like(diffusion) if self.probability_flow else diffusion

    def discretize(self, x: torch.Tensor, t) -> Tuple[torch.Tensor, torch.Tensor]:
        t = self.forward.check_t(t, x)
        f, G = self.forward._discretize(x, t)
        rev_f = f - bcast(G ** 2, x) * self.score_fn(x, t) * self._coef
        return rev_f, torch.zeros_like(G) if self.probability_flow else G


def ddpm_ancestral(x: torch.Tensor, score: torch.Tensor, beta: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """DDPM ancestral sampling (Ho et al. 2020; Song 2021 eq. 47): mean (x + beta s) / sqrt(1 - beta), std
    sqrt(beta)."""
    mean = (x + bcast(beta, x) * score) / bcast(torch.sqrt(1 - beta), x)
    return mean, torch.sqrt(beta)


@register_sde("ve")
class VESDE(SDE):
    """Variance exploding SDE (SMLD / NCSN): sigma(t) = sigma_min (sigma_max/sigma_min)^t (eq. 30).

    f = 0 and g(t) = sigma(t) sqrt(2 log(sigma_max/sigma_min)).  As in the paper's code the
    kernel std is sigma(t) itself, so p_0 = p_data * N(0, sigma_min^2 I).  Discretised with
    NCSN's geometric noise levels sigma_i = sigma(i / (N - 1)).
    """

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000) -> None:
        super().__init__(N)
        self.sigma_min = check_number("sigma_min", sigma_min, positive=True)
        self.sigma_max = check_number("sigma_max", sigma_max, positive=True)
        if self.sigma_max <= self.sigma_min:
            raise ValueError(f"sigma_max must be > sigma_min, got sigma_max={sigma_max}, "
                             f"sigma_min={sigma_min}")
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    @property
    def hparams(self) -> dict:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "N": self.N}

    @property
    def default_eps(self) -> float:
        return 1e-5

    @property
    def prior_std(self) -> float:
        return self.sigma_max

    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def _drift_diffusion(self, x, t):
        g = self._sigma(t) * math.sqrt(2 * self._log_ratio)
        return torch.zeros_like(x), g

    def _alpha_sigma(self, t):
        return torch.ones_like(t), self._sigma(t)

    def _t_from_edm_sigma(self, s):
        return torch.log(s / self.sigma_min) / self._log_ratio

    def discrete_sigma(self, i: torch.Tensor) -> torch.Tensor:
        """NCSN noise level sigma_i, i in 0..N-1 (geometric from sigma_min to sigma_max);
        sigma_{-1} = 0."""
        frac = i.to(torch.float64) / max(self.N - 1, 1)
        s = self.sigma_min * torch.exp(frac * self._log_ratio)
        return torch.where(i < 0, torch.zeros_like(s), s)

    def _adjacent_sigmas(self, t: torch.Tensor):
        i = self.timestep_index(t)
        return self.discrete_sigma(i).to(t), self.discrete_sigma(i - 1).to(t)

    def _discretize(self, x, t):
        # SMLD: x_i = x_{i-1} + sqrt(sigma_i^2 - sigma_{i-1}^2) z  (eq. 45)
        sigma, adjacent = self._adjacent_sigmas(t)
        return torch.zeros_like(x), torch.sqrt(sigma ** 2 - adjacent ** 2)

    def ancestral_step(self, x, t, score):
        # Song 2021 App. F, eq. 47: the SMLD ancestral sampler.
        sigma, adjacent = self._adjacent_sigmas(t)
        mean = x + bcast(sigma ** 2 - adjacent ** 2, x) * score
        std = torch.sqrt(adjacent ** 2 * (sigma ** 2 - adjacent ** 2) / sigma ** 2)
        return mean, std


class _LinearBetaSDE(SDE):
    """Shared pieces of VP and sub-VP: beta(t) = beta_min + t (beta_max - beta_min) and
    log alpha(t) = -t^2 (beta_max - beta_min)/4 - t beta_min / 2 (eq. 33)."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000) -> None:
        super().__init__(N)
        self.beta_min = check_number("beta_min", beta_min, nonneg=True)
        self.beta_max = check_number("beta_max", beta_max, positive=True)
        if self.beta_max <= self.beta_min:
            raise ValueError(f"beta_max must be > beta_min, got beta_max={beta_max}, "
                             f"beta_min={beta_min}")

    @property
    def hparams(self) -> dict:
        return {"beta_min": self.beta_min, "beta_max": self.beta_max, "N": self.N}

    @property
    def default_eps(self) -> float:
        return 1e-3

    def _beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def _log_alpha(self, t):
        return -0.25 * t ** 2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def _t_from_log_alpha(self, log_alpha):
        # Root of (b1-b0)/4 t^2 + b0/2 t + log_alpha = 0 in its cancellation-free form.
        d = self.beta_max - self.beta_min
        return -2 * log_alpha / (0.5 * self.beta_min + torch.sqrt(0.25 * self.beta_min ** 2 - d * log_alpha))

    def discrete_levels_problem(self, levels: str = "N") -> Optional[str]:
        # Only the discrete chain needs beta_i = beta_max / N < 1 at the top; the continuous SDE,
        # its Euler-Maruyama steps and the ODE solvers run at any N.
        if self.beta_max >= self.N:
            return (f"the DDPM discretisation needs beta_max / N < 1 (beta_i <= beta_max / N), got "
                    f"beta_max={self.beta_max}, {levels}={self.N}; use {levels} > {int(self.beta_max)}")
        return None

    def discrete_beta(self, i: torch.Tensor) -> torch.Tensor:
        """DDPM's beta_i = beta_min/N + i (beta_max - beta_min) / (N (N - 1)), i in 0..N-1."""
        problem = self.discrete_levels_problem()
        if problem:
            raise ValueError(problem)
        frac = i.to(torch.float64) / max(self.N - 1, 1)
        return (self.beta_min + frac * (self.beta_max - self.beta_min)) / self.N

    def langevin_scale(self, t):
        return 1 - self.discrete_beta(self.timestep_index(t)).to(t)


def _vp_alpha_sigma(log_alpha: torch.Tensor):
    """(alpha, sigma) of a variance-preserving SDE from log alpha: sigma^2 = 1 - alpha^2.  log alpha <= 0 for every
    VP schedule; round-off can put it a hair above 0 at t = 0 (CosineVP: a vectorised cos / log one ulp above its
    scalar constant, +1e-20 on an AMD EPYC), and then sigma(0) = sqrt(-expm1(2 log alpha)) was NaN."""
    la = log_alpha.clamp(max=0.0)
    return torch.exp(la), torch.sqrt(-torch.expm1(2 * la))


@register_sde("vp")
class VPSDE(_LinearBetaSDE):
    """Variance preserving SDE (DDPM): dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw (eq. 32)."""

    name = "vp"

    def _discretize(self, x, t):
        # DDPM: x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) z  (eq. 46); sub-VP has no such chain and keeps
        # the Euler discretisation (as the paper code's subVPSDE)
        beta = self.discrete_beta(self.timestep_index(t)).to(t)
        return bcast(torch.sqrt(1 - beta), x) * x - x, torch.sqrt(beta)

    def _drift_diffusion(self, x, t):
        beta = self._beta(t)
        return -0.5 * bcast(beta, x) * x, torch.sqrt(beta)

    def _alpha_sigma(self, t):
        return _vp_alpha_sigma(self._log_alpha(t))

    def _t_from_edm_sigma(self, s):
        # sigma/alpha = sqrt(alpha^-2 - 1)  =>  log alpha = -log(1 + s^2)/2
        return self._t_from_log_alpha(-0.5 * torch.log1p(s ** 2))

    def ancestral_step(self, x, t, score):
        beta = self.discrete_beta(self.timestep_index(t)).to(t)
        return ddpm_ancestral(x, score, beta)


@register_sde("subvp")
class SubVPSDE(_LinearBetaSDE):
    """sub-VP SDE: diffusion sqrt(beta(t) (1 - exp(-2 int_0^t beta))) (eq. 34); std 1 - alpha^2."""

    name = "subvp"

    def _drift_diffusion(self, x, t):
        beta = self._beta(t)
        discount = -torch.expm1(4 * self._log_alpha(t))
        return -0.5 * bcast(beta, x) * x, torch.sqrt(beta * discount)

    def _alpha_sigma(self, t):
        la = self._log_alpha(t)
        return torch.exp(la), -torch.expm1(2 * la)

    def _t_from_edm_sigma(self, s):
        # (1 - alpha^2)/alpha = s  =>  alpha = 2 / (s + sqrt(s^2 + 4))
        return self._t_from_log_alpha(torch.log(2 / (s + torch.sqrt(s ** 2 + 4))))


class _LogAlphaVPSDE(SDE):
    """A VP SDE given by log alpha(t) (sigma^2 = 1 - alpha^2): dx = (d log alpha/dt) x dt + g dw with
    g^2 = -2 d log alpha/dt (Song 2021 eq. 32 with beta(t) = -2 d log alpha/dt; Kingma et al. 2021).
    A subclass states ``_log_alpha``, its derivative ``_dlog_alpha`` and inverse ``_t_from_log_alpha``."""

    def _drift_diffusion(self, x, t):
        d = self._dlog_alpha(t)
        return bcast(d, x) * x, torch.sqrt(-2 * d)

    def _alpha_sigma(self, t):
        return _vp_alpha_sigma(self._log_alpha(t))

    def _t_from_edm_sigma(self, s):
        return self._t_from_log_alpha(-0.5 * torch.log1p(s ** 2))


def _linear_alphas_cumprod(n: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    return torch.cumprod(1 - torch.linspace(beta_start, beta_end, n, dtype=torch.float64), 0)


@register_sde("discrete_vp")
class DiscreteVPSDE(_LogAlphaVPSDE):
    """The VP SDE of a discrete noise table (a DDPM / diffusers schedule): alphas_cumprod abar_n,
    n = 0..N-1, placed at t_n = (n + 1) / N with log alpha(t_n) = log(abar_n) / 2, log alpha piecewise
    linear in t between the grid points and from log alpha(0) = 0 (DPM-Solver's discrete
    ``NoiseScheduleVP``, Lu et al. 2022, App. D).  On the grid its DDPM chain is the table's own:
    beta_n = 1 - abar_n / abar_{n-1}; its ``discretize`` / ``ancestral_step`` are DDPM's there.  A model
    trained on the table's integer timesteps takes ``index(t) = N t - 1`` (``external.wrap(...,
    time_input="index")``).  Default table: DDPM's linear betas 1e-4 .. 0.02, N = 1000 (Ho et al. 2020).
    ``N`` other than the table's length sets a sampler's step count; the discrete chain then refuses."""

    name = "discrete_vp"
    # beta(t) jumps at each of the N grid points: an adaptive solve in t steps through every kink (1e-2 nats
    # off at rtol 1e-5 on gmm16d), one in log sigma never sees them (1.3e-4)
    ode_time_variable = "log_sigma"

    def __init__(self, alphas_cumprod: Optional[Sequence[float]] = None, N: Optional[int] = None) -> None:
        table = (_linear_alphas_cumprod() if alphas_cumprod is None
                 else torch.as_tensor(alphas_cumprod, dtype=torch.float64))
        if table.dim() != 1 or len(table) < 2:
            raise ValueError(f"alphas_cumprod must be a 1-D table of >= 2 values, got shape {tuple(table.shape)}")
        check_finite("alphas_cumprod", table)
        if not bool(((table > 0) & (table < 1)).all()) or not bool((table[1:] < table[:-1]).all()):
            raise ValueError("alphas_cumprod must lie in (0, 1) and strictly decrease")
        super().__init__(len(table) if N is None else N)
        self.table = table
        n = len(table)
        self._t = torch.arange(n + 1, dtype=torch.float64) / n * self.T  # knots 0, t_0, ..., t_{N-1}
        self._la = torch.cat([torch.zeros(1, dtype=torch.float64), 0.5 * torch.log(table)])

    @property
    def hparams(self) -> dict:
        return {"alphas_cumprod": self.table.tolist(), "N": self.N}

    @property
    def default_eps(self) -> float:
        return self.T / len(self.table)  # t_0, DDPM's last denoising level

    def _segment(self, t: torch.Tensor) -> torch.Tensor:
        return (torch.searchsorted(self._t.to(t.device), t.double().contiguous(), right=True) - 1).clamp(
            0, len(self.table) - 1)

    def _log_alpha(self, t):
        i = self._segment(t)
        t_k, la = self._t.to(t.device), self._la.to(t.device)
        w = (t.double() - t_k[i]) / (t_k[i + 1] - t_k[i])
        return (la[i] + w * (la[i + 1] - la[i])).to(t.dtype)

    def _dlog_alpha(self, t):
        i = self._segment(t)
        t_k, la = self._t.to(t.device), self._la.to(t.device)
        return ((la[i + 1] - la[i]) / (t_k[i + 1] - t_k[i])).to(t.dtype)

    def _t_from_log_alpha(self, log_alpha):
        la, t_k = self._la.to(log_alpha.device), self._t.to(log_alpha.device)
        v = log_alpha.double().clamp(min=float(la[-1]), max=0.0)
        i = (torch.searchsorted(-la, -v.contiguous(), right=True) - 1).clamp(0, len(self.table) - 1)
        w = (v - la[i]) / (la[i + 1] - la[i])
        return (t_k[i] + w * (t_k[i + 1] - t_k[i])).to(log_alpha.dtype)

    def index(self, t: torch.Tensor) -> torch.Tensor:
        """The table's (fractional) timestep n = N t / T - 1 at time t.  Within 1e-3 of an integer it is
        that integer: a float32 grid time carries ~1e-4 of round-off, and models trained on integer timesteps
        (diffusers' UNets) should see exactly those."""
        n = t.double() * (len(self.table) / self.T) - 1
        r = torch.round(n)
        return torch.where((n - r).abs() < 1e-3, r, n).to(t.dtype)

    def discrete_levels_problem(self, levels: str = "N") -> Optional[str]:
        if self.N != len(self.table):
            return (f"the DDPM chain of this noise table has its {len(self.table)} levels; got {levels}={self.N} "
                    f"(use {levels}={len(self.table)}, or a continuous method)")
        return None

    def timestep_index(self, t: torch.Tensor) -> torch.Tensor:
        return torch.round(t.double() * (len(self.table) / self.T) - 1).long().clamp(0, len(self.table) - 1)

    def discrete_beta(self, i: torch.Tensor) -> torch.Tensor:
        """beta_n = 1 - abar_n / abar_{n-1} (abar_{-1} = 1)."""
        problem = self.discrete_levels_problem()
        if problem:
            raise ValueError(problem)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), self.table[:-1]]).to(i.device)
        return 1 - self.table.to(i.device)[i] / prev[i]

    def langevin_scale(self, t):
        return 1 - self.discrete_beta(self.timestep_index(t)).to(t)

    def _discretize(self, x, t):
        beta = self.discrete_beta(self.timestep_index(t)).to(t)
        return bcast(torch.sqrt(1 - beta), x) * x - x, torch.sqrt(beta)

    def ancestral_step(self, x, t, score):
        beta = self.discrete_beta(self.timestep_index(t)).to(t)
        return ddpm_ancestral(x, score, beta)


@register_sde("cosine_vp")
class CosineVPSDE(_LogAlphaVPSDE):
    """The cosine schedule (Nichol & Dhariwal 2021, eq. 17) in continuous time:
    alpha(t)^2 = f(t) / f(0), f(t) = cos((t + s)/(1 + s) pi/2)^2.  alpha reaches 0 at t = 1, so the SDE
    stops at T = 0.9946 (log alpha(T) = -4.78, beta(T) = 629), as DPM-Solver's ``NoiseScheduleVP('cosine')``.
    Discretised by Euler-Maruyama."""

    name = "cosine_vp"
    T = 0.9946

    def __init__(self, s: float = 0.008, N: int = 1000) -> None:
        super().__init__(N)
        self.s = check_number("s", s, nonneg=True)
        self._la0 = math.log(math.cos(self.s / (1 + self.s) * math.pi / 2))

    @property
    def hparams(self) -> dict:
        return {"s": self.s, "N": self.N}

    @property
    def default_eps(self) -> float:
        return 1e-3

    def _theta(self, t):
        return (t + self.s) / (1 + self.s) * (math.pi / 2)

    def _log_alpha(self, t):
        return torch.log(torch.cos(self._theta(t))) - self._la0

    def _dlog_alpha(self, t):
        return -torch.tan(self._theta(t)) * (math.pi / 2) / (1 + self.s)

    def _t_from_log_alpha(self, log_alpha):
        theta = torch.arccos(torch.exp(log_alpha + self._la0).clamp(max=1.0))
        return theta * (2 / math.pi) * (1 + self.s) - self.s
