"""Pieces every sampler shares: the NFE counter, state checks, progress bars, denoising."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import torch
from tqdm.auto import tqdm

from ..sdes import SDE, bcast

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SampleInfo:
    """What a sampler did: score evaluations (NFE), wall time in seconds, and method details."""

    nfe: int = 0
    wall_time: float = 0.0
    method: str = ""
    extra: dict = field(default_factory=dict)


class CountingScore:
    """Wraps a score function and counts its evaluations (NFE, one per batched call)."""

    def __init__(self, score_fn: ScoreFn) -> None:
        self.score_fn = score_fn
        self.nfe = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return self.score_fn(x, t)


def check_state(x: torch.Tensor, step: int, t) -> None:
    """Raise FloatingPointError naming the step and time if the sampler state is not finite."""
    if not bool(torch.isfinite(x).all()):
        t = float(t.flatten()[0]) if torch.is_tensor(t) else float(t)
        raise FloatingPointError(f"non-finite values in the sampler state at step {step} (t={t:.6g}); "
                                 f"check the score model, the step count or the step size")


def progress_bar(it: Iterable, progress: bool, desc: str, total: Optional[int] = None):
    return tqdm(it, desc=desc, total=total, disable=not progress, leave=False, dynamic_ncols=True)


def tweedie_denoise(sde: SDE, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Posterior mean E[x_0 | x_t] = (x_t + sigma(t)^2 score(x_t, t)) / alpha(t) (Tweedie's formula):
    the exact noise-free final step for samples that stop at t = eps."""
    alpha, sigma = sde.alpha_sigma(t)
    return (x + bcast(sigma ** 2, x) * score_fn(x, t)) / bcast(alpha, x)


def time_grid(sde: SDE, steps: int, eps: float, device) -> torch.Tensor:
    """``steps`` equally spaced times from T down to eps (the paper's sampling grid)."""
    return torch.linspace(sde.T, eps, steps, device=device)


def gaussian_like(x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Standard normal noise shaped like x, drawn from ``generator`` (on x's device)."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
