"""Sampling from score models: ``sample(model, sde, method, ...)``, the PF-ODE encoder, imputation.

Modules: ``api`` (entry points), ``methods`` (registry and contract), ``model`` (model resolution,
counted runs, SampleInfo), ``state`` (checks, noise, progress, callback record), ``schedules`` (time
grids and noise levels), ``denoiser`` (Tweedie / EDM denoiser); one module per method: ``pc``,
``langevin``, ``reverse_sde``, ``ode``, ``heun``, ``dpm_solver``, ``sde_adaptive`` (with
``brownian``); ``impute`` (SMC and replacement), ``dps``, ``inverse``.  Every module of this package
is imported here, so a new method is one module whose function carries ``@register_method``: nothing
else names it.
"""
import importlib as _importlib
import pkgutil as _pkgutil

from .api import ode_encode, sample
from .denoiser import Denoiser, final_denoise, tweedie_denoise
from .dpm_solver import default_order, gaussian_response
from .impute import impute
from .inverse import solve_inverse
from .methods import METHODS, register_method
from .model import CountingScore, SampleInfo, counted_run, resolve_model, resolve_shape
from .ode import PFODE, integrate
from .pc import CORRECTORS, PREDICTORS, Corrector, Predictor, register_corrector, register_predictor
from .schedules import optimized_schedule, sigma_schedule, time_grid
from .state import SamplerStep

for _module in _pkgutil.iter_modules(__path__):  # each method module registers itself on import
    _importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "register_method", "sample", "ode_encode", "resolve_model", "resolve_shape", "counted_run",
           "CountingScore", "SampleInfo", "SamplerStep", "Denoiser", "final_denoise", "tweedie_denoise", "impute",
           "solve_inverse",
           "PFODE", "integrate", "CORRECTORS", "PREDICTORS", "Corrector", "Predictor", "register_corrector",
           "register_predictor", "optimized_schedule", "sigma_schedule", "time_grid", "default_order",
           "gaussian_response"]
