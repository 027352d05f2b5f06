"""sde_score: continuous-time score-based generative modelling (Song et al. 2021).

Layers, bottom up: SDEs, exact mixture targets and registries; samplers and likelihoods;
losses and networks; Lightning training.  The bottom two need only torch (+ torchsde,
torchdiffeq, scipy).
"""
from .registry import Registry
from .sdes import (SDE, SDES, CosineVPSDE, DiscreteVPSDE, ReverseSDE, SubVPSDE, VESDE, VPSDE, get_sde,
                   register_sde)
from .targets import TARGETS, GaussianMixture, get_target, register_target
from .sampling import (CORRECTORS, METHODS, PREDICTORS, SampleInfo, impute, ode_encode, optimized_schedule,
                       register_corrector, register_method, register_predictor, sample,
                       solve_inverse)
from .likelihood import LikelihoodResult, log_likelihood
from . import external, guidance
from .guidance import classifier_free, classifier_guided
from .models import NETWORKS, register_net
from .score_model import ScoreModel
from .losses import LOSSES, Loss, build_loss, register_loss

__version__ = "0.1.0"

__all__ = ["Registry", "SDE", "SDES", "ReverseSDE", "SubVPSDE", "VESDE", "VPSDE", "DiscreteVPSDE", "CosineVPSDE",
           "get_sde", "register_sde", "TARGETS", "GaussianMixture", "get_target", "register_target", "CORRECTORS",
           "METHODS", "PREDICTORS", "SampleInfo", "ode_encode", "register_corrector", "register_method",
           "register_predictor", "sample", "optimized_schedule", "impute", "solve_inverse", "log_likelihood",
           "LikelihoodResult",
           "external", "guidance", "classifier_free", "classifier_guided", "NETWORKS", "register_net", "ScoreModel",
           "LOSSES", "Loss", "build_loss", "register_loss", "__version__"]
