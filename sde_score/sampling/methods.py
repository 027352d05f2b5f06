"""The registry of sampling methods: a method is one function plus its decorator, in its own module.

The contract (after k-diffusion's ``sample_*(model, x, sigmas, ...)``):
``fn(score_fn, sde, x, *, <what it uses>, generator, progress, callback, **its own options)``, where
``x`` is the start state (B, ...) (a prior draw x_T, or the ``x_T`` a user gave), and
``<what it uses>`` is any of: ``sigmas`` (decreasing noise levels from ``schedules.sigma_schedule``),
``steps`` and ``eps`` (the method builds its time grid with ``schedules.time_grid``), ``eps`` alone.
``sample()`` reads the function's signature: it resolves and passes exactly those, and a common
argument the method does not use (``steps`` to an adaptive solver, say) is an error.
``callback(SamplerStep)`` is called at each level visited, before stepping from it (see
``state.SamplerStep``); methods that accept ``after_step`` document it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..registry import Registry


@dataclass(frozen=True)
class MethodSpec:
    fn: Callable[..., torch.Tensor]
    default_steps: Optional[int] = None  # None: the SDE's N
    default_schedule: str = "karras"  # methods that take sigmas: the level schedule by default
    prior_start: bool = True  # False: the method draws its own start when no x_T is given


METHODS: Registry[MethodSpec] = Registry("sampling method")


def register_method(name: str, default_steps: Optional[int] = None, default_schedule: str = "karras",
                    prior_start: bool = True) -> Callable:
    """Decorator registering a sampler under ``name`` (see the module docstring for the contract)."""
    def decorator(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        METHODS.register(name)(MethodSpec(fn, default_steps, default_schedule, prior_start))
        return fn
    return decorator
