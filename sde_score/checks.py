"""Input validation shared by every layer: clear errors that name the bad value."""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch

# The score protocol of the whole package: score(x (B, ...), t (B,)) -> tensor like x.
ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_number(name: str, value: Any, *, positive: bool = False, nonneg: bool = False) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` if it is not a finite number
    (and, if asked, not positive / not non-negative)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if nonneg and v < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v


def check_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return ``value`` as an int >= ``minimum`` or raise ``ValueError``."""
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    v = int(value)
    return v


def check_eps(eps: Any, sde) -> float:
    """The smallest time of a sampler or likelihood as a float in (0, T); None means the SDE's
    default_eps."""
    eps = sde.default_eps if eps is None else check_number("eps", eps)
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps}")
    return eps


def check_finite(name: str, x: torch.Tensor) -> torch.Tensor:
    """Raise ``ValueError`` if ``x`` holds NaN or inf, naming how many entries are bad."""
    if not torch.is_tensor(x):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    return x


def check_choice(name: str, value: Any, choices: tuple) -> Any:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}")
    return value


HALF_DTYPES = (torch.float16, torch.bfloat16)
DTYPE_NAMES = {"float64": torch.float64, "double": torch.float64, "float32": torch.float32, "float": torch.float32,
               "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16,
               "half": torch.float16}


def check_dtype(name: str, value: Any) -> torch.dtype:
    """A floating torch dtype, given as one or by name ("float32", "bf16", ...)."""
    if isinstance(value, str):
        value = DTYPE_NAMES.get(value.removeprefix("torch."), value)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ValueError(f"{name} must be a floating dtype ({', '.join(DTYPE_NAMES)} or a torch.dtype), got {value!r}")
    return value


def check_labels(labels: Any, x: torch.Tensor, num_classes: Optional[int] = None) -> torch.Tensor:
    """``labels`` (an int for every sample, or (B,) class indices) as a long tensor (B,) on x's device,
    each in [0, num_classes) when that is known."""
    y = torch.as_tensor(labels, device=x.device)
    if y.dim() == 0:
        y = y.expand(x.shape[0])
    bad_range = num_classes is not None and bool((y >= num_classes).any())
    if y.shape != (x.shape[0],) or y.is_floating_point() or y.dtype == torch.bool or bad_range or bool((y < 0).any()):
        allowed = f"in [0, {num_classes})" if num_classes is not None else ">= 0"
        raise ValueError(f"labels must be an int or a tensor of shape ({x.shape[0]},) of class indices {allowed}, "
                         f"got {labels!r}")
    return y.long()


def check_batch(name: str, x: Any, data_shape=None, *, finite: bool = True, solver: str = "") -> torch.Tensor:
    """A floating tensor (B, ...) with B >= 1, of the model's ``data_shape`` when known, and finite
    (unless ``finite`` is False).  ``solver`` names an adaptive ODE solve that x enters: it needs
    float32 or float64 (its tolerances and the accumulated log-density lie below half precision)."""
    if not torch.is_tensor(x) or x.dim() < 2:
        raise ValueError(f"{name} must be a torch.Tensor of shape (B, ...), got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)}); give at least one sample")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got {x.dtype}; convert it, e.g. {name}.float()")
    if solver and x.dtype in HALF_DTYPES:
        raise ValueError(f"{solver} needs float32 or float64 {name}, got {x.dtype} (its ODE tolerances and the "
                         f"log-density lie below half precision); pass {name}.float() and a float32 model")
    if data_shape is not None and tuple(x.shape[1:]) != tuple(data_shape):
        raise ValueError(f"{name} has shape {tuple(x.shape)}; the model's data shape is {tuple(data_shape)}")
    return check_finite(name, x) if finite else x
