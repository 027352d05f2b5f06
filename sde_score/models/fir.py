"""FIR up- and down-sampling in pure torch (no compiled extension): StyleGAN2's ``upfirdn2d`` and the
resampling layers NCSN++ builds on it (Karras et al. 2020, "Analyzing and improving the image quality of
StyleGAN", App. B; Song et al. 2021, App. H.1 "FIR").

``upfirdn2d``: upsample by zero insertion, pad, convolve with a 2-D filter, downsample by striding.
A 1-D kernel k is used as the separable filter k k^T / sum(k k^T), so a constant image stays constant
(times ``factor^2`` when upsampling, where zero insertion divided the mean by it).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .init import variance_scaling_


def fir_filter(kernel: Sequence[float], gain: float = 1.0) -> torch.Tensor:
    """The normalised separable 2-D filter (k, k) of a 1-D kernel, times ``gain``."""
    k = torch.as_tensor([float(v) for v in kernel], dtype=torch.float64)
    if k.dim() != 1 or len(k) < 1 or float(k.sum()) == 0:
        raise ValueError(f"fir_kernel must be a non-empty 1-D sequence with a non-zero sum, got {kernel!r}")
    k2 = torch.outer(k, k)
    return (k2 / k2.sum() * gain).float()


def upfirdn2d(x: torch.Tensor, filt: torch.Tensor, up: int = 1, down: int = 1,
              pad: Tuple[int, int] = (0, 0)) -> torch.Tensor:
    """x (B, C, H, W): zero-insertion upsampling by ``up``, padding (before, after) on both axes (negative
    crops), true convolution with ``filt`` (kh, kw), then every ``down``-th pixel."""
    b, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(b, c, h, 1, w, 1), (0, up - 1, 0, 0, 0, up - 1)).reshape(b, c, h * up, w * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    weight = torch.flip(filt, (0, 1)).to(x)[None, None].expand(c, 1, *filt.shape)
    x = F.conv2d(x, weight, groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


def upsample_2d(x: torch.Tensor, filt: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 2H, 2W) with the FIR filter (``fir_filter(k, gain=factor**2)``)."""
    p = filt.shape[0] - factor
    return upfirdn2d(x, filt, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x: torch.Tensor, filt: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H/2, W/2) with the FIR filter (``fir_filter(k)``)."""
    p = filt.shape[0] - factor
    return upfirdn2d(x, filt, down=factor, pad=((p + 1) // 2, p // 2))


def naive_upsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Nearest-neighbour upsampling (each pixel repeated factor x factor)."""
    return x.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)


def naive_downsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Average pooling over factor x factor blocks."""
    return F.avg_pool2d(x, factor)


class FIRConv2d(nn.Module):
    """A 3x3 (odd ``kernel``) convolution fused with FIR upsampling (``up``: transposed convolution at stride
    2, then the filter) or downsampling (``down``: the filter, then convolution at stride 2), or plain.
    weight (out, in, k, k), bias (out,)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, up: bool = False, down: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1), init_scale: float = 1.0) -> None:
        super().__init__()
        if up and down:
            raise ValueError("FIRConv2d resamples up or down, not both")
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"kernel must be odd and >= 1, got {kernel}")
        self.weight = nn.Parameter(variance_scaling_(torch.empty(out_ch, in_ch, kernel, kernel), init_scale))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.up, self.down, self.kernel = up, down, kernel
        self.register_buffer("filt", fir_filter(fir_kernel, gain=4.0 if up else 1.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, taps = self.kernel, self.filt.shape[0]
        if self.up:
            # the transposed convolution of the flipped kernel is the convolution of zero-inserted x; the
            # filter then interpolates: padding p aligns the result with upsample_2d followed by the conv
            w = torch.flip(self.weight, (2, 3)).transpose(0, 1)
            x = F.conv_transpose2d(x, w, stride=2)
            p = (taps - 2) - (k - 1)
            x = upfirdn2d(x, self.filt, pad=((p + 1) // 2 + 1, p // 2 + 1))
        elif self.down:
            p = (taps - 2) + (k - 1)
            x = F.conv2d(upfirdn2d(x, self.filt, pad=((p + 1) // 2, p // 2)), self.weight, stride=2)
        else:
            x = F.conv2d(x, self.weight, padding=k // 2)
        return x + self.bias[None, :, None, None]


__all__ = ["fir_filter", "upfirdn2d", "upsample_2d", "downsample_2d", "naive_upsample_2d", "naive_downsample_2d",
           "FIRConv2d"]
