"""Sampling from score models: ``sample(model, sde, method, ...)`` and the PF-ODE encoder."""
from .api import METHODS, register_method, sample, ode_encode, resolve_model
from .common import SampleInfo, tweedie_denoise
from .impute import impute
from .ode import PFODE, integrate
from .schedules import optimized_schedule
from .pc import CORRECTORS, PREDICTORS, Corrector, Predictor, register_corrector, register_predictor

__all__ = ["METHODS", "register_method", "sample", "ode_encode", "resolve_model", "SampleInfo",
           "tweedie_denoise", "impute", "PFODE", "integrate", "CORRECTORS", "PREDICTORS", "Corrector", "Predictor",
           "register_corrector", "register_predictor", "optimized_schedule"]
