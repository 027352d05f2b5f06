"""Time-conditioned score (or energy) networks: ``net(x, t)`` with x (B, ...) and t (B,)."""
from .registry import NETWORKS, net_class, register_net, registered_net
from .embeddings import GaussianFourierEmbedding
from .mlp import ScoreMLP
from .unet import UNet
from .classifier import NoiseClassifier
from .diffusers_unet import DiffusersUNet
from .ncsnpp import NCSNpp, PAPER_CONFIGS, score_sde_key_map

__all__ = ["NETWORKS", "net_class", "register_net", "registered_net", "GaussianFourierEmbedding", "ScoreMLP",
           "UNet", "NoiseClassifier", "DiffusersUNet", "NCSNpp", "PAPER_CONFIGS", "score_sde_key_map"]
