"""Linear inverse problems y = A x + noise_std z reduce exactly to imputation.

With A = U S V^T (SVD, A (m, D) of full row rank), the coordinates x' = V^T x have their first m entries
observed, x'_{1:m} + (noise_std / S) z' = S^-1 U^T y with z' = U^T z ~ N(0, I), and the rest free.  Every
SDE here perturbs with isotropic noise, so in x' the forward process is the same and the score is
V^T s(V x', t): the posterior p(x | y) is the imputation of x'_{m+1:D} given x'_{1:m} (observed with noise
noise_std / S_i each) for the rotated model (Kawar et al. 2021, SNIPS / DDRM use the same spectral
reduction).  ``impute`` is the case A = a row selection.
"""
from __future__ import annotations

from typing import Optional, Union

import torch

from ..checks import check_batch, check_number
from ..sdes import SDE
from .impute import impute
from .model import resolve_model


def _operator_matrix(operator, D: int, data_shape) -> torch.Tensor:
    """A as an (m, D) float64 matrix: a tensor, or an object with ``A(x)`` applied to the D unit vectors."""
    if torch.is_tensor(operator):
        A = operator.to(torch.float64)
    elif callable(getattr(operator, "A", None)):
        eye = torch.eye(D, dtype=torch.float64).reshape((D,) + tuple(data_shape))
        A = torch.as_tensor(operator.A(eye), dtype=torch.float64).reshape(D, -1).T
    else:
        raise ValueError(f"operator must be an (m, D) tensor or an object with A(x), got {type(operator).__name__}")
    if A.dim() != 2 or A.shape[1] != D or not 0 < A.shape[0] < D:
        raise ValueError(f"operator must be (m, {D}) with 0 < m < {D}, got {tuple(A.shape)}")
    return A


def solve_inverse(model, y: torch.Tensor, operator, sde: Union[str, SDE, None] = None, *, noise_std: float = 0.0,
                  method: str = "smc", steps: Optional[int] = None, eps: Optional[float] = None,
                  data_shape=None, generator: Optional[torch.Generator] = None, progress: bool = True,
                  return_info: bool = False, **options):
    """Samples of p(x | y) for y = A x + noise_std z (B, m): ``impute`` in the SVD coordinates of A.

    Args:
        model, sde: as for ``sample`` / ``impute``; data_shape: one sample's shape when the model does not say.
        operator: A as an (m, D) tensor (D = prod(data_shape)) or an object with ``A(x)`` (x (N, *data_shape) ->
            (N, m)); full row rank.
        noise_std: std of the Gaussian observation noise (model space), >= 0; with noise the samples only
            approximately satisfy A x = y, as the posterior does.
        method, steps, eps, options: passed to ``impute`` ("smc" (default), "replacement" or "dps"; DPS's
            residual is ||y - A x0_hat|| in the original space).
    Returns (B, *data_shape), or (samples, SampleInfo).
    """
    noise_std = check_number("noise_std", noise_std, nonneg=True)
    score_fn, sde, model_shape, _ = resolve_model(model, sde)
    shape = tuple(model_shape or data_shape or ())
    if not shape:
        raise ValueError("give data_shape=(...) for a model that does not know its data shape")
    D = 1
    for d in shape:
        D *= int(d)
    y = check_batch("y", y)
    A = _operator_matrix(operator, D, shape)
    if y.dim() != 2 or y.shape[1] != A.shape[0]:
        raise ValueError(f"y must have shape (B, {A.shape[0]}) to match the operator, got {tuple(y.shape)}")
    U, S, Vh = torch.linalg.svd(A, full_matrices=True)
    if float(S.min()) <= 1e-10 * float(S.max()):
        raise ValueError("the operator must have full row rank (a singular value is ~0)")
    m, dtype = A.shape[0], y.dtype
    Vh = Vh.to(y.device)
    known = torch.zeros(y.shape[0], D, dtype=torch.float64, device=y.device)
    known[:, :m] = (y.to(torch.float64) @ U.to(y.device)) / S.to(y.device)
    mask = torch.arange(D, device=y.device) < m
    s_T = float(sde.edm_sigma(torch.tensor(sde.T, dtype=torch.float64)))
    if noise_std / float(S.min()) >= s_T:
        raise ValueError(f"noise_std / (smallest singular value of the operator) = {noise_std / float(S.min()):.4g} "
                         f"reaches the SDE's largest noise level sigma(T)/alpha(T) = {s_T:.4g}: that direction of y "
                         f"says less than the prior; lower noise_std or drop the weakest rows of the operator")
    coord_std = torch.zeros(D, dtype=torch.float64, device=y.device)
    coord_std[:m] = noise_std / S.to(y.device)  # the noise on x'_i = (U^T y)_i / S_i

    def rotated(xr: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # V^T s(V x', t) with row vectors
        x = (xr.to(torch.float64) @ Vh).to(xr.dtype).reshape((xr.shape[0],) + shape)
        return (score_fn(x, t).reshape(xr.shape[0], D).to(torch.float64) @ Vh.T).to(xr.dtype)

    if method == "dps":  # in SVD coordinates U^T (y - A x0_hat) = S * (y' - x0_hat'): weight the residual by S
        options["residual_weights"] = torch.cat([S, torch.zeros(D - m, dtype=S.dtype)]).to(y.device)
    out = impute(rotated, known.to(dtype), mask, sde, method, noise_std=coord_std, steps=steps, eps=eps,
                 generator=generator, progress=progress, return_info=return_info, **options)
    xr, info = out if return_info else (out, None)
    x = (xr.to(torch.float64) @ Vh).to(dtype).reshape((y.shape[0],) + shape)
    return (x, info) if return_info else x
