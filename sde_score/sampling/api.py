"""``sample()`` and ``ode_encode()``: the one entry point to every registered sampling method.

Importing the method modules registers them (each with ``@register_method`` where it is defined).
"""
from __future__ import annotations

import inspect
from typing import Optional, Sequence, Union

import torch

from ..checks import HALF_DTYPES, check_batch, check_dtype, check_eps, check_finite, check_int, check_number
from ..guidance import classifier_free
from ..sdes import SDE
from .methods import METHODS, MethodSpec
from .model import counted_run, model_dtype, resolve_model, resolve_shape
from .ode import PFODE, integrate
from .schedules import FITTED, fitted_schedule, sigma_schedule
from .state import check_output

# Arguments every method receives from sample() when its signature names them; the rest are its own options.
_PROVIDED = ("score_fn", "sde", "x", "steps", "eps", "sigmas", "generator", "progress", "callback", "shape", "device",
             "dtype")


def _start(spec: MethodSpec, sde: SDE, shape: tuple, x_T: Optional[torch.Tensor], generator,
           device, dtype: torch.dtype) -> Optional[torch.Tensor]:
    """The start state: the given x_T (checked), else a prior draw in the model's dtype (None: the
    method draws its own)."""
    if x_T is not None:
        if not torch.is_tensor(x_T) or tuple(x_T.shape) != shape:
            raise ValueError(f"x_T must be a tensor of shape {shape}, got {getattr(x_T, 'shape', type(x_T))}")
        if not x_T.is_floating_point():
            raise ValueError(f"x_T must be a floating tensor, got {x_T.dtype}")
        return check_finite("x_T", x_T).to(device)
    return sde.prior_sampling(shape, generator, device=device, dtype=dtype) if spec.prior_start else None


def _method_arguments(name: str, spec: MethodSpec, sde: SDE, steps, eps, options: dict) -> dict:
    """steps / eps / sigmas resolved for exactly the parameters the method's function names; a
    method that takes ``sigmas`` uses steps, eps and the ``schedule`` / ``rho`` options to build them."""
    params = inspect.signature(spec.fn).parameters
    levels = "sigmas" in params
    uses = set(params) | ({"steps", "eps"} if levels else set())
    own = [p for p in params if p not in _PROVIDED] + (["schedule", "rho"] if levels else [])
    unknown = sorted(set(options) - set(own)) + [a for a, v in (("steps", steps), ("eps", eps))
                                                 if v is not None and a not in uses]
    if unknown:
        common = [a for a in ("steps", "eps") if a in uses]
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for method {name!r}; accepted: "
                         f"{', '.join(common + own)}")
    args = {}
    if "eps" in uses:
        eps = check_eps(eps, sde)
    if levels:
        schedule = options.pop("schedule", spec.default_schedule)
        if steps is None and (isinstance(schedule, str) or not hasattr(schedule, "__len__")):
            steps = spec.default_steps
        if isinstance(schedule, str) and schedule == FITTED:  # a configuration's check: sample() fits them
            check_int("steps", steps, minimum=2)
            args["sigmas"] = FITTED
        else:
            args["sigmas"] = sigma_schedule(sde, steps, eps, schedule, options.pop("rho", 7.0))
    if "steps" in params:
        # one step from T lands near the prior (samples of absmax ~20 for sigma_max 10): never a sample
        name = "steps"
        if steps is None:
            steps = sde.N if spec.default_steps is None else spec.default_steps
            name = f"steps (default: the SDE's N = {sde.N})" if spec.default_steps is None else name
        args["steps"] = check_int(name, steps, minimum=2)
    if "eps" in params:
        args["eps"] = eps
    return args


def _in_precision(score_fn, dtype: torch.dtype, autocast_device: Optional[torch.device] = None):
    """score_fn evaluated in ``dtype`` and answering in x's dtype: x and t cast to it (a half-precision
    model), or, with ``autocast_device``, under autocast to it (a float32 model in mixed precision: matrix
    products and convolutions in dtype, reductions in float32)."""
    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if autocast_device is None:
            out = score_fn(x.to(dtype), t.to(dtype))
        else:
            with torch.autocast(autocast_device.type, dtype=dtype):
                out = score_fn(x, t)
        return out.to(x.dtype) if torch.is_tensor(out) and out.is_floating_point() else out
    return score


def sampling_precision(model, score_fn, dtype, device: torch.device):
    """(score_fn, state dtype) for ``sample(..., dtype=)``: None follows the model's parameters (a half
    model called in its dtype from a float32 state); bfloat16/float16 with a float32 model runs it under
    autocast; float32/float64 must match a network's parameters."""
    own = model_dtype(model)
    if dtype is None:
        dtype = own
    else:
        dtype = check_dtype("dtype", dtype)
        has_params = isinstance(model, torch.nn.Module) and any(True for _ in model.parameters())
        if dtype in HALF_DTYPES and own not in HALF_DTYPES:
            return _in_precision(score_fn, dtype, device), torch.float32
        if has_params and dtype != own:
            raise ValueError(f"dtype={dtype} but the model's parameters are {own}: convert the model (e.g. "
                             f"model.to({dtype})) or pass dtype=None")
    if dtype in HALF_DTYPES:  # the solvers' arithmetic in float32, the model in its own precision
        return _in_precision(score_fn, dtype), torch.float32
    return score_fn, dtype


def conditioned(score_fn, labels, guidance_scale: Optional[float], num_classes: Optional[int] = None):
    """score_fn itself without labels, else its classifier-free guided score at ``labels``."""
    if labels is None:
        if guidance_scale is not None:
            raise ValueError("guidance_scale needs labels (the classes to guide toward)")
        return score_fn
    return classifier_free(score_fn, labels, 1.0 if guidance_scale is None else guidance_scale, num_classes)


def check_sampler(sampler: dict, sde: SDE) -> dict:
    """Check a sampler configuration {"method": name, **options of sample()} for ``sde`` before any work:
    the method is registered, its option names exist, steps and eps are valid.  Returns a copy."""
    if not isinstance(sampler, dict):
        raise ValueError(f"sampler must be a mapping like {{'method': 'pc', 'steps': 500}}, got {sampler!r}")
    options = dict(sampler)
    name = options.pop("method", "pc")
    if options.get("guidance_scale") is not None:
        check_number("guidance_scale", options["guidance_scale"])
    if options.get("dtype") is not None:
        check_dtype("dtype", options["dtype"])
    for key in ("labels", "guidance_scale", "dtype"):  # sample()'s own, checked per call
        options.pop(key, None)
    steps, eps = options.pop("steps", None), options.pop("eps", None)
    for key in ("shape", "num_samples", "x_T", "generator", "device", "progress", "callback", "return_info"):
        if key in options:
            raise ValueError(f"sampler option {key!r} is set by the caller, not the sampler configuration")
    _method_arguments(name, METHODS.get(name), sde, steps, eps, options)
    return dict(sampler)


def sample(model, sde: Union[str, SDE, None] = None, method: str = "pc", *,
           shape: Optional[Sequence[int]] = None, num_samples: Optional[int] = None,
           steps: Optional[int] = None, eps: Optional[float] = None, x_T: Optional[torch.Tensor] = None,
           generator: Optional[torch.Generator] = None, device=None, progress: bool = True,
           callback=None, return_info: bool = False, labels=None, guidance_scale: Optional[float] = None,
           dtype=None, **method_options):
    """Draw samples from a score model by a registered method (``METHODS.names()``).

    Args:
        model: ScoreModule, nn.Module or callable ``score(x, t)`` (x (B, ...), t (B,)).
        sde: SDE name or instance; defaults to the model's SDE (else "ve").
        method: "pc", "annealed_langevin", "langevin", "sde", "ode", "heun", "dpm_solver",
            "sde_adaptive", ...
        shape: full batch shape (B, ...); or ``num_samples`` with the model's data shape.
        steps: grid points or noise levels, for the methods that step on a grid (default ``sde.N``;
            ``heun`` 10, ``dpm_solver`` 20; a list of levels in ``schedule`` sets it); eps: final
            time in (0, T) (default ``sde.default_eps``).  Passing either to a method that does not
            use it (``ode``, ``annealed_langevin``, ...) is an error.
        x_T: start from this state (B, ...) instead of a prior draw (interpolation, encode-decode
            round trips, comparing samplers from the same noise).
        generator: torch.Generator for every random draw (same seed -> identical samples).
        callback: called with a ``SamplerStep`` (i, t, sigma, x, denoised) at every level visited.
        return_info: also return a :class:`SampleInfo` (NFE, wall time).
        labels: class labels (an int, or (B,)) of a class-conditional model ``score(x, t, labels)``;
            guidance_scale: classifier-free guidance w (``guidance.classifier_free``; default 1, the
            conditional score; 0 the unconditional one).  NFE counts model calls (2 per step for w
            other than 0 and 1).
        dtype: precision of the sampling: None follows the model's parameters; "bfloat16" / "float16" with
            a float32 model evaluates it under autocast (mixed precision; the solver state stays float32);
            "float64" / "float32" need a model of that dtype (or a plain score function).
        method_options: the method's own options, e.g. predictor=..., corrector=..., snr=...; for the methods
            on noise levels ``schedule="fitted"`` fits them to this model (``schedules.fitted_schedule``: a
            pilot of 120 NFE on 512 points the first time, cached; its cost in ``info.extra["schedule_pilot"]``).
    Returns:
        samples (B, ...) in model space, or (samples, info).
    """
    spec = METHODS.get(method)
    score_fn, sde, data_shape, model_device = resolve_model(model, sde)
    shape = resolve_shape(shape if x_T is None or shape is not None else tuple(x_T.shape), num_samples, data_shape)
    options = dict(method_options)
    device = torch.device(device) if device is not None else model_device
    pilot = None
    if isinstance(options.get("schedule"), str) and options["schedule"] == FITTED \
            and "sigmas" in inspect.signature(spec.fn).parameters:
        n = check_int("steps", spec.default_steps if steps is None else steps, minimum=2)
        options["schedule"], pilot = fitted_schedule(model, sde, n, check_eps(eps, sde), shape, device, progress)
    args = _method_arguments(method, spec, sde, steps, eps, options)
    score_fn, dtype = sampling_precision(model, score_fn, dtype, device)
    x = _start(spec, sde, shape, x_T, generator, device, dtype)
    if x is None:  # the method draws its own start
        options.update(shape=shape, device=device, dtype=dtype)
    with counted_run(score_fn, method) as (counter, info):
        fn = conditioned(counter, labels, guidance_scale, getattr(model, "num_classes", None))
        x = spec.fn(fn, sde, x, generator=generator, progress=progress, callback=callback, **args, **options)
    if pilot is not None:
        info.extra["schedule_pilot"] = pilot  # not in info.nfe: a one-off cost per model (cached)
    check_output(x, f"method {method!r}")
    return (x, info) if return_info else x


def ode_encode(model, x: torch.Tensor, sde: Union[str, SDE, None] = None, *, eps: Optional[float] = None,
               solver: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-5,
               time_variable: Optional[str] = None, return_info: bool = False):
    """Map data x (B, ...) at time eps to its latent code at T along the PF-ODE (eq. 13)."""
    score_fn, sde, data_shape, _ = resolve_model(model, sde)
    eps = check_eps(eps, sde)
    check_batch("x", x, data_shape, solver="ode_encode")
    with counted_run(score_fn, "ode_encode") as (counter, info):
        flow = PFODE(sde, counter, time_variable)
        z, _ = integrate(flow, x, flow.to_var(eps), flow.to_var(sde.T), solver=solver, rtol=rtol, atol=atol)
    check_output(z, "ode_encode")
    return (z, info) if return_info else z
