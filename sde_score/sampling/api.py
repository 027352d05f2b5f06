"""``sample()`` and ``ode_encode()``: the one entry point to every sampler, by name."""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple, Union

import torch

from ..checks import check_int, check_number
from ..registry import Registry
from ..sdes import SDE, get_sde
from .common import CountingScore, SampleInfo, ScoreFn
from .fast import adaptive_sde_sample, dpm_solver_sample, heun_sample
from .langevin import annealed_langevin_sample, langevin_sample
from .ode import PFODE, integrate, ode_sample
from .pc import pc_sample
from .sde_solve import sde_sample


@dataclass(frozen=True)
class MethodSpec:
    fn: Callable[..., torch.Tensor]
    default_eps: Optional[float] = None  # None: the SDE's default_eps
    default_steps: Optional[int] = None  # None: the SDE's N


METHODS: Registry[MethodSpec] = Registry("sampling method")


def register_method(name: str, default_eps: Optional[float] = None, default_steps: Optional[int] = None):
    """Register ``fn(score_fn, sde, shape, *, steps, eps, generator, device, progress, **options)``."""
    def decorator(fn):
        METHODS.register(name)(MethodSpec(fn, default_eps, default_steps))
        return fn
    return decorator


register_method("pc")(pc_sample)
register_method("annealed_langevin", default_eps=0.0)(annealed_langevin_sample)
register_method("langevin")(langevin_sample)
register_method("sde")(sde_sample)
register_method("ode")(ode_sample)
register_method("heun", default_steps=10)(heun_sample)
register_method("dpm_solver", default_steps=20)(dpm_solver_sample)
register_method("sde_adaptive", default_steps=100)(adaptive_sde_sample)

_COMMON = {"score_fn", "sde", "shape", "steps", "eps", "generator", "device", "progress"}


def resolve_model(model, sde: Union[str, SDE, None]) -> Tuple[ScoreFn, SDE, Optional[tuple], torch.device]:
    """Score function, SDE, data shape (or None) and device of ``model``.

    ``model`` is a ScoreModule-like object (with ``.sde`` and ``.data_shape``), an ``nn.Module`` or
    any callable ``score(x, t)``.  ``sde`` defaults to the model's own, else "ve"; naming another
    SDE than the model was trained with is an error.
    """
    if not callable(model):
        raise ValueError(f"model must be callable as score(x, t), got {type(model).__name__}")
    model_sde = getattr(model, "sde", None)
    model_sde = model_sde if isinstance(model_sde, SDE) else None
    if sde is None:
        sde = model_sde if model_sde is not None else get_sde("ve")
    elif isinstance(sde, str):
        sde = get_sde(sde) if model_sde is None or sde.lower() != model_sde.name else model_sde
    elif not isinstance(sde, SDE):
        raise ValueError(f"sde must be an SDE name or instance, got {sde!r}")
    if model_sde is not None and (type(sde) is not type(model_sde) or sde.hparams != model_sde.hparams):
        raise ValueError(f"the model was trained with {model_sde!r}; sampling it with {sde!r} is an error "
                         f"(leave sde=None to use the model's)")
    device = torch.device("cpu")
    if isinstance(model, torch.nn.Module):
        p = next(model.parameters(), None)
        device = p.device if p is not None else device
    data_shape = getattr(model, "data_shape", None)
    return model, sde, (tuple(data_shape) if data_shape is not None else None), device


def _resolve_shape(shape, num_samples, data_shape) -> tuple:
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        if len(shape) < 2 or any(s < 1 for s in shape):
            raise ValueError(f"shape must be the full batch shape (B, ...) with positive sizes, got {shape}")
        if data_shape is not None and shape[1:] != data_shape:
            raise ValueError(f"shape {shape} does not match the model's data shape {data_shape}")
        return shape
    if num_samples is None or data_shape is None:
        raise ValueError("give shape=(B, ...), or num_samples for a model that knows its data_shape")
    return (check_int("num_samples", num_samples),) + data_shape


def _check_options(name: str, fn: Callable, options: dict) -> None:
    accepted = [p for p in inspect.signature(fn).parameters if p not in _COMMON and p not in ("x_init", "after_step")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for method {name!r}; "
                         f"accepted: {', '.join(accepted)}")


def sample(model, sde: Union[str, SDE, None] = None, method: str = "pc", *,
           shape: Optional[Sequence[int]] = None, num_samples: Optional[int] = None,
           steps: Optional[int] = None, eps: Optional[float] = None,
           generator: Optional[torch.Generator] = None, device=None, progress: bool = True,
           return_info: bool = False, **method_options):
    """Draw samples from a score model by a registered method (``METHODS.names()``).

    Args:
        model: ScoreModule, nn.Module or callable ``score(x, t)`` (x (B, ...), t (B,)).
        sde: SDE name or instance; defaults to the model's SDE (else "ve").
        method: "pc", "annealed_langevin", "langevin", "sde", "ode", "heun", "dpm_solver",
            "sde_adaptive", ...
        shape: full batch shape (B, ...); or ``num_samples`` with the model's data shape.
        steps: discretisation steps or noise levels (default ``sde.N``; fast methods: their own);
            eps: final time (default per method/SDE).
        generator: torch.Generator for every random draw (same seed -> identical samples).
        return_info: also return a :class:`SampleInfo` (NFE, wall time).
        method_options: the method's own options, e.g. predictor=..., corrector=..., snr=...
    Returns:
        samples (B, ...) in model space, or (samples, info).
    """
    spec = METHODS.get(method)
    score_fn, sde, data_shape, model_device = resolve_model(model, sde)
    shape = _resolve_shape(shape, num_samples, data_shape)
    schedule = method_options.get("schedule")
    if steps is None and schedule is not None and not isinstance(schedule, str) and hasattr(schedule, "__len__"):
        steps = len(schedule)  # explicit noise levels say how many there are
    if steps is None:
        steps = sde.N if spec.default_steps is None else spec.default_steps
    steps = check_int("steps", steps)
    if eps is None:
        eps = sde.default_eps if spec.default_eps is None else spec.default_eps
    eps = check_number("eps", eps, nonneg=True)
    if not (eps < sde.T and (eps > 0 or spec.default_eps == 0.0)):
        raise ValueError(f"eps must lie in (0, T={sde.T}) for method {method!r}, got {eps}")
    _check_options(method, spec.fn, method_options)
    device = torch.device(device) if device is not None else model_device
    counter = CountingScore(score_fn)
    start = time.perf_counter()
    with torch.no_grad():
        x = spec.fn(counter, sde, shape, steps=steps, eps=eps, generator=generator, device=device,
                    progress=progress, **method_options)
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
    info = SampleInfo(nfe=counter.nfe, wall_time=time.perf_counter() - start, method=method)
    return (x, info) if return_info else x


def ode_encode(model, x: torch.Tensor, sde: Union[str, SDE, None] = None, *, eps: Optional[float] = None,
               solver: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-5,
               time_variable: str = "t", return_info: bool = False):
    """Map data x (B, ...) at time eps to its latent code at T along the PF-ODE (eq. 13)."""
    score_fn, sde, _, _ = resolve_model(model, sde)
    eps = sde.default_eps if eps is None else check_number("eps", eps, positive=True)
    ode = PFODE(sde, CountingScore(score_fn), time_variable)
    start = time.perf_counter()
    with torch.no_grad():
        z, nfe = integrate(ode, x, ode.to_var(eps), ode.to_var(sde.T), solver=solver, rtol=rtol, atol=atol)
    info = SampleInfo(nfe=nfe, wall_time=time.perf_counter() - start, method="ode_encode")
    return (z, info) if return_info else z
