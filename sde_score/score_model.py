"""The model protocol shared by losses and samplers: a score function that knows its SDE.

``ScoreModule`` is one (trained networks); :class:`ScoreModel` makes one from a bare
``score(x, t)`` callable, e.g. an exact mixture score, so that losses, which read the SDE from
the model, accept it.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from .checks import ScoreFn
from .sdes import SDE, get_sde


class ScoreModel:
    """``score_fn(x, t)`` (x (B, ...), t (B,), output like x) with its SDE and optional data shape."""

    def __init__(self, score_fn: ScoreFn, sde: Union[str, SDE], data_shape: Optional[Sequence[int]] = None) -> None:
        if not callable(score_fn):
            raise ValueError(f"score_fn must be callable as score(x, t), got {type(score_fn).__name__}")
        self.score_fn = score_fn
        self.sde = get_sde(sde) if isinstance(sde, str) else sde
        if not isinstance(self.sde, SDE):
            raise ValueError(f"sde must be an SDE name or instance, got {sde!r}")
        self.data_shape = tuple(int(s) for s in data_shape) if data_shape is not None else None

    def __call__(self, x: torch.Tensor, t: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return call_score(self.score_fn, x, t, labels)


def model_sde(model) -> SDE:
    """The SDE a model carries (``model.sde``), or a ValueError saying how to give it one."""
    sde = getattr(model, "sde", None)
    if not isinstance(sde, SDE):
        raise ValueError(f"{type(model).__name__} has no SDE (.sde); wrap a bare score function as "
                         f"sde_score.ScoreModel(score_fn, sde)")
    return sde


def call_score(model, x: torch.Tensor, t: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
    """``model(x, t)``, or ``model(x, t, labels)`` when labels are given (unconditional models need not
    accept them)."""
    return model(x, t) if labels is None else model(x, t, labels)
