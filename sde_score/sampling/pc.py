"""Predictor-corrector sampling (Song et al. 2021, Sec. 4.2 and Alg. 1-3).

A predictor takes one step of a discretised reverse-time SDE; a corrector runs score-based
MCMC at a fixed time.  Each is one small class plus one registry line.
"""
from __future__ import annotations

import abc
from typing import Callable, Optional, Tuple

import torch

from ..checks import ScoreFn, check_int, check_number
from ..registry import Registry
from ..sdes import SDE, bcast
from .methods import register_method
from .schedules import time_grid
from .state import Callback, SamplerStep, check_state, gaussian_like, progress_bar

PREDICTORS: Registry[type] = Registry("predictor")
CORRECTORS: Registry[type] = Registry("corrector")
register_predictor = PREDICTORS.register
register_corrector = CORRECTORS.register

Step = Tuple[torch.Tensor, torch.Tensor]  # (x with noise, x_mean without the last noise)


class Predictor(abc.ABC):
    """One reverse-time step from t to t - dt.  ``discrete``: it steps the SDE's N-level chain."""

    discrete = False

    def __init__(self, sde: SDE, score_fn: ScoreFn) -> None:
        self.sde = sde
        self.score_fn = score_fn
        self.rsde = sde.reverse(score_fn)

    @abc.abstractmethod
    def update(self, x: torch.Tensor, t: torch.Tensor, dt: float,
               generator: Optional[torch.Generator]) -> Step:
        ...


class Corrector(abc.ABC):
    """``n_steps`` of score-based MCMC targeting p_t, with signal-to-noise ratio ``snr``.
    ``discrete``: its step size uses the N-level chain (``SDE.langevin_scale``)."""

    discrete = True

    def __init__(self, sde: SDE, score_fn: ScoreFn, snr: float, n_steps: int) -> None:
        self.sde = sde
        self.score_fn = score_fn
        self.snr = check_number("snr", snr, positive=True)
        self.n_steps = check_int("n_corrector_steps", n_steps, minimum=1)

    @abc.abstractmethod
    def step_size(self, x: torch.Tensor, t: torch.Tensor, grad: torch.Tensor,
                  noise: torch.Tensor) -> torch.Tensor:
        """Langevin step size per sample (B,)."""

    def update(self, x: torch.Tensor, t: torch.Tensor, generator: Optional[torch.Generator]) -> Step:
        x_mean = x
        for _ in range(self.n_steps):
            grad = self.score_fn(x, t)
            noise = gaussian_like(x, generator)
            step = bcast(self.step_size(x, t, grad, noise), x)
            x_mean = x + step * grad
            x = x_mean + torch.sqrt(2 * step) * noise
        return x, x_mean


@register_predictor("euler_maruyama")
class EulerMaruyamaPredictor(Predictor):
    """x <- x - [f - g^2 s] dt + g sqrt(dt) z (Euler-Maruyama on the reverse SDE, eq. 6)."""

    def update(self, x, t, dt, generator):
        drift, diffusion = self.rsde.sde(x, t)
        x_mean = x - drift * dt
        return x_mean + bcast(diffusion, x) * dt ** 0.5 * gaussian_like(x, generator), x_mean


@register_predictor("reverse_diffusion")
class ReverseDiffusionPredictor(Predictor):
    """x <- x - f_i + G_i^2 s + G_i z, the reverse of the SDE's own discretisation (eq. 46)."""

    discrete = True

    def update(self, x, t, dt, generator):
        f, G = self.rsde.discretize(x, t)
        x_mean = x - f
        return x_mean + bcast(G, x) * gaussian_like(x, generator), x_mean


@register_predictor("ancestral")
class AncestralSamplingPredictor(Predictor):
    """SMLD ancestral sampling for VE, DDPM ancestral sampling for VP (eq. 47)."""

    discrete = True

    def update(self, x, t, dt, generator):
        mean, std = self.sde.ancestral_step(x, t, self.score_fn(x, t))
        return mean + bcast(std, x) * gaussian_like(x, generator), mean


@register_predictor("none")
class NoPredictor(Predictor):
    def update(self, x, t, dt, generator):
        return x, x


@register_corrector("langevin")
class LangevinCorrector(Corrector):
    """Langevin MCMC with step 2 a (snr ||z|| / ||s||)^2 (Alg. 4); a = 1 - beta_i for VP-type SDEs.

    As in the paper's code the norms are averaged over the batch: per-sample norms make the step
    explode for a sample that sits where the score vanishes (a mode centre), which in low
    dimension happens often and destroys the mode weights."""

    def __init__(self, sde: SDE, score_fn: ScoreFn, snr: float, n_steps: int) -> None:
        super().__init__(sde, score_fn, snr, n_steps)
        if self.snr > 1:  # the step is 2 snr^2 |z|^2/|s|^2: beyond 1 it overshoots the mode (1e10-scale samples)
            raise ValueError(f"snr of the 'langevin' corrector must lie in (0, 1] (the paper uses 0.01-0.22), "
                             f"got {snr}")

    def step_size(self, x, t, grad, noise):
        grad_norm = grad.flatten(1).norm(dim=1).mean()
        noise_norm = noise.flatten(1).norm(dim=1).mean()
        return 2 * self.sde.langevin_scale(t) * (self.snr * noise_norm / grad_norm) ** 2


@register_corrector("annealed_langevin")
class AnnealedLangevinCorrector(Corrector):
    """NCSN annealed Langevin (Song & Ermon 2019, Alg. 1): step 2 a (snr sigma(t))^2, i.e.
    proportional to the noise variance at t (Alg. 5 of Song 2021)."""

    def step_size(self, x, t, grad, noise):
        _, sigma = self.sde.alpha_sigma(t)
        return 2 * self.sde.langevin_scale(t) * (self.snr * sigma) ** 2


@register_corrector("none")
class NoCorrector(Corrector):
    discrete = False

    def update(self, x, t, generator):
        return x, x

    def step_size(self, x, t, grad, noise):  # pragma: no cover - never called
        raise NotImplementedError


AfterStep = Callable[[torch.Tensor, torch.Tensor, float], Step]


@register_method("pc")
def pc_sample(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, steps: int, eps: float,
              generator: Optional[torch.Generator] = None, progress: bool = True,
              callback: Optional[Callback] = None, after_step: Optional[AfterStep] = None,
              predictor: str = "reverse_diffusion", corrector: str = "langevin", snr: float = 0.16,
              n_corrector_steps: int = 1, denoise: bool = True) -> torch.Tensor:
    """Predictor-corrector sampler (Alg. 1-3) from x_T = x on the grid t_i = linspace(T, eps, steps).

    The SDE is re-discretised with N = ``steps`` so discrete predictors use the same noise levels
    as the grid.  With ``denoise`` the last predictor step adds no noise (the paper's code).
    ``after_step(x, x_mean, t_next) -> (x, x_mean)``: the public projection hook, called after each
    step with the state, its noise-free mean and the time reached; what it returns replaces them
    (replacement imputation and inverse problems project onto their constraint here).
    Returns samples (B, ...).
    """
    sde = sde if steps == sde.N else sde.with_N(steps)
    pred = PREDICTORS.get(predictor)(sde, score_fn)
    corr = CORRECTORS.get(corrector)(sde, score_fn, snr, n_corrector_steps)
    problem = sde.discrete_levels_problem("steps") if pred.discrete or corr.discrete else None
    if problem:
        raise ValueError(f"pc with predictor {predictor!r} and corrector {corrector!r} on {sde.name!r}: {problem} "
                         f"(predictor 'euler_maruyama' with corrector 'none' needs no discrete levels)")
    ts = time_grid(sde, steps, eps, x.device)
    dt = (sde.T - eps) / max(steps - 1, 1)
    x_mean = x
    for i in progress_bar(range(steps), progress, f"pc[{predictor}+{corrector}]"):
        t = ts[i].expand(x.shape[0])
        if callback is not None:
            callback(SamplerStep(i, float(ts[i]), float(sde.edm_sigma(ts[i:i + 1].double())), x))
        x, x_mean = corr.update(x, t, generator)
        x, x_mean = pred.update(x, t, dt, generator)
        if after_step is not None:
            t_next = float(ts[i + 1]) if i + 1 < steps else eps
            x, x_mean = after_step(x, x_mean, t_next)
        check_state(x, i, ts[i])
    return x_mean if denoise else x
