"""Time-conditioned score (or energy) networks: ``net(x, t)`` with x (B, ...) and t (B,)."""
from .embeddings import GaussianFourierEmbedding
from .mlp import ScoreMLP
from .unet import UNet

__all__ = ["GaussianFourierEmbedding", "ScoreMLP", "UNet"]
