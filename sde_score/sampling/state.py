"""The sampler state between steps: finiteness checks, noise draws, progress bars and the record
passed to ``callback`` after each step."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
from tqdm.auto import tqdm


@dataclass(frozen=True)
class SamplerStep:
    """What ``callback`` receives at each level ``i`` a method visits, before it steps from there:
    the time ``t``, the noise level ``sigma`` = sigma(t)/alpha(t), the state ``x`` (B, ...) in model
    space, and the denoiser's estimate of x_0 there (``denoised``) where the method computes one,
    else None (it is never computed for the callback alone: that would cost model evaluations).
    Adaptive ODE/SDE solvers call it at every drift evaluation, trial stages included."""

    i: int
    t: float
    sigma: float
    x: torch.Tensor
    denoised: Optional[torch.Tensor] = None


Callback = Callable[[SamplerStep], None]


def check_state(x: torch.Tensor, step: int, t) -> None:
    """Raise FloatingPointError naming the step and time if the sampler state is not finite."""
    if not bool(torch.isfinite(x).all()):
        t = float(t.flatten()[0]) if torch.is_tensor(t) else float(t)
        raise FloatingPointError(f"non-finite values in the sampler state at step {step} (t={t:.6g}); "
                                 f"check the score model, the step count or the step size")


def check_output(x: torch.Tensor, what: str) -> None:
    """Raise FloatingPointError if a finished run's result is not finite (a NaN from the last score
    evaluation or step would otherwise be returned silently)."""
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
        raise FloatingPointError(f"{what} produced non-finite values in its result ({bad} of {x.shape[0]} samples), "
                                 f"from the last step or the final denoising; check the score model")


def progress_bar(it: Iterable, progress: bool, desc: str, total: Optional[int] = None):
    return tqdm(it, desc=desc, total=total, disable=not progress, leave=False, dynamic_ncols=True)


def hutchinson_probes(shape, n_probes: int, noise: str, generator, device, dtype) -> torch.Tensor:
    """(n_probes, *shape) fixed Hutchinson probes, ``noise`` "rademacher" or "gaussian"."""
    # drawn in float32 whatever x's dtype: one seed gives the same probes to a float32 run and to a
    # float64 reference of it (Rademacher signs are exact in both)
    z = torch.randn((n_probes,) + tuple(shape), generator=generator, device=device, dtype=torch.float32)
    return (z.sign() if noise == "rademacher" else z).to(dtype)


def gaussian_like(x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Standard normal noise shaped like x, drawn from ``generator`` (on x's device)."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
