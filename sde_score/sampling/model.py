"""The model side of every entry point (``sample``, ``ode_encode``, ``impute``, ``log_likelihood``,
``optimized_schedule``): which score function, SDE, data shape and device a model stands for, and
the counted, timed run that fills a :class:`SampleInfo`."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence, Tuple, Union

import torch

from ..checks import ScoreFn, check_int
from ..score_model import call_score
from ..sdes import SDE, get_sde


@dataclass
class SampleInfo:
    """What a run did: score evaluations (``nfe``, one per batched call), wall time in seconds, the
    method, and method details in ``extra``."""

    nfe: int = 0
    wall_time: float = 0.0
    method: str = ""
    extra: dict = field(default_factory=dict)


class CountingScore:
    """Wraps a score function, counts its evaluations (NFE, one per batched call) and checks that each
    returns a floating tensor shaped like x (a (1, D) or (B, 1) output would broadcast into finite
    garbage)."""

    def __init__(self, score_fn: ScoreFn) -> None:
        self.score_fn = score_fn
        self.nfe = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        self.nfe += 1
        out = call_score(self.score_fn, x, t, labels)
        if not torch.is_tensor(out) or not out.is_floating_point() or out.shape != x.shape:
            got = (f"a {out.dtype} tensor of shape {tuple(out.shape)}" if torch.is_tensor(out)
                   else f"a {type(out).__name__}")
            raise ValueError(f"the score model returned {got} for x of shape {tuple(x.shape)}; it must return a "
                             f"floating tensor shaped like x (wrap models that return other outputs)")
        return out


def model_dtype(model) -> torch.dtype:
    """The floating dtype of an ``nn.Module``'s parameters (samplers draw their noise in it), else the
    default dtype."""
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            if p.is_floating_point():
                return p.dtype
    return torch.get_default_dtype()


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


def resolve_shape(shape: Optional[Sequence[int]], num_samples: Optional[int], data_shape: Optional[tuple]) -> tuple:
    """The full batch shape (B, ...) from ``shape``, or from ``num_samples`` and the model's data shape."""
    if shape is not None:
        ok = all(isinstance(s, int) and not isinstance(s, bool) or
                 (torch.is_tensor(s) and s.dim() == 0 and not s.is_floating_point()) for s in shape)
        if not ok or len(shape) < 2 or any(int(s) < 1 for s in shape):
            raise ValueError(f"shape must be the full batch shape (B, ...) of positive integers, got {tuple(shape)}")
        shape = tuple(int(s) for s in shape)
        if data_shape is not None and shape[1:] != data_shape:
            raise ValueError(f"shape {shape} does not match the model's data shape {data_shape}")
        return shape
    if num_samples is None or data_shape is None:
        raise ValueError("give shape=(B, ...), or num_samples for a model that knows its data_shape")
    return (check_int("num_samples", num_samples),) + data_shape


@contextlib.contextmanager
def counted_run(score_fn: ScoreFn, method: str, grad: bool = False) -> Iterator[Tuple[CountingScore, SampleInfo]]:
    """Run a sampler on a counted score: yields (counting score, info); on exit ``info`` holds the NFE
    and the wall time (after the device has finished).  Gradients are off unless ``grad``."""
    counter = CountingScore(score_fn)
    info = SampleInfo(method=method)
    start = time.perf_counter()
    with torch.set_grad_enabled(grad):
        yield counter, info
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    info.nfe = counter.nfe
    info.wall_time = time.perf_counter() - start
