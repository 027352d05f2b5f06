"""NCSN++ and DDPM++ (Song et al. 2021, App. H; the paper code's ``NCSNpp`` class, which builds both).

One class, configured as in the paper code: ``nf`` channels times ``ch_mult`` per resolution,
``num_res_blocks`` residual blocks per resolution (DDPM or BigGAN blocks), self-attention at
``attn_resolutions``, FIR or naive resampling, progressive input (``input_skip`` / ``residual``) and output
(``output_skip`` / ``residual``) pyramids, Gaussian Fourier or sinusoidal time embedding, optional class
labels.  ``PAPER_CONFIGS`` holds the paper's CIFAR-10 networks ("NCSN++ cont. deep" for VE, "DDPM++ cont."
for VP); ``score_sde_key_map`` names each parameter as the paper code does, so its checkpoints load
(``sde_score.external.load_score_sde_checkpoint``).

Called as ``net(x, t, labels=None)``: x (B, C, H, W), t (B,) -> (B, C, H, W).  By default t is the SDE time
and the embedding sees ``time_scale * t`` (the paper's VP networks: the positional embedding of 999 t);
``sigma_input=True`` makes the second argument the noise level sigma, embedded as log sigma, with
``scale_by_sigma`` dividing the output by it (the paper's VE networks; wrap such a network with
``external.wrap(net, sde, time_input="sigma")``).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..checks import check_choice, check_int, check_number
from .embeddings import GaussianFourierEmbedding, LabelEmbedding, label_term, sinusoidal_embedding
from .fir import FIRConv2d, downsample_2d, fir_filter, naive_downsample_2d, naive_upsample_2d, upsample_2d
from .init import variance_scaling_
from .registry import register_net

RESBLOCKS = ("ddpm", "biggan")
PROGRESSIVE = ("none", "output_skip", "residual")
PROGRESSIVE_INPUT = ("none", "input_skip", "residual")
EMBEDDINGS = ("fourier", "positional")


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(ch // 4, 32), ch, eps=1e-6)


def _conv(cin: int, cout: int, kernel: int = 3, init_scale: float = 1.0, stride: int = 1,
          padding: Optional[int] = None) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2 if padding is None else padding)
    variance_scaling_(conv.weight, init_scale)
    nn.init.zeros_(conv.bias)
    return conv


def _linear(cin: int, cout: int) -> nn.Linear:
    layer = nn.Linear(cin, cout)
    variance_scaling_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _merge(x: torch.Tensor, h: torch.Tensor, rescale: bool) -> torch.Tensor:
    # skip_rescale keeps the variance of a residual sum of two unit-variance branches at one
    return (x + h) / math.sqrt(2.0) if rescale else x + h


class ChannelLinear(nn.Module):
    """A linear map over channels at every pixel (the paper code's NIN): weight (in, out), bias (out,)."""

    PAPER_NAMES = {"weight": "W", "bias": "b"}

    def __init__(self, cin: int, cout: int, init_scale: float = 0.1) -> None:
        super().__init__()
        self.weight = nn.Parameter(variance_scaling_(torch.empty(cin, cout), init_scale))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bchw,cd->bdhw", x, self.weight) + self.bias[None, :, None, None]


class AttentionBlock(nn.Module):
    """Single-head self-attention over pixels with a residual connection (DDPM's AttnBlock)."""

    PAPER_NAMES = {"norm": "GroupNorm_0", "q": "NIN_0", "k": "NIN_1", "v": "NIN_2", "out": "NIN_3"}

    def __init__(self, ch: int, skip_rescale: bool, init_scale: float) -> None:
        super().__init__()
        self.norm = _norm(ch)
        self.q, self.k, self.v = ChannelLinear(ch, ch), ChannelLinear(ch, ch), ChannelLinear(ch, ch)
        self.out = ChannelLinear(ch, ch, init_scale)
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = self.norm(x)
        q, k, v = (m(h).flatten(2).transpose(1, 2) for m in (self.q, self.k, self.v))  # (B, HW, C)
        a = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C)) v
        return _merge(x, self.out(a.transpose(1, 2).reshape(b, c, hh, ww)), self.skip_rescale)


class Resample(nn.Module):
    """Halve (``down``) or double the resolution: FIR filter or average pooling / nearest neighbour, with an
    optional 3x3 convolution (``with_conv``, ``out_ch`` channels)."""

    def __init__(self, in_ch: int, out_ch: Optional[int], down: bool, with_conv: bool, fir: bool,
                 fir_kernel: Sequence[float]) -> None:
        super().__init__()
        out_ch = out_ch or in_ch
        self.down, self.fir, self.with_conv = down, fir, with_conv
        self.PAPER_NAMES = {"conv": "Conv2d_0" if fir else "Conv_0"}
        if with_conv:
            if fir:
                self.conv = FIRConv2d(in_ch, out_ch, 3, up=not down, down=down, fir_kernel=fir_kernel)
            else:
                self.conv = _conv(in_ch, out_ch, 3, stride=2 if down else 1, padding=0 if down else 1)
        if fir and not with_conv:  # FIRConv2d holds its own filter
            self.register_buffer("filt", fir_filter(fir_kernel, 1.0 if down else 4.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fir:
            if self.with_conv:
                return self.conv(x)
            return downsample_2d(x, self.filt) if self.down else upsample_2d(x, self.filt)
        if self.down:  # the stride-2 conv sees one extra row and column on the bottom-right, as in DDPM
            return self.conv(F.pad(x, (0, 1, 0, 1))) if self.with_conv else naive_downsample_2d(x)
        x = naive_upsample_2d(x)
        return self.conv(x) if self.with_conv else x


class ResBlock(nn.Module):
    """GroupNorm, swish, 3x3 conv, plus the time embedding; GroupNorm, swish, dropout, 3x3 conv; plus the
    skip.  ``kind="ddpm"``: DDPM's block (skip through a channel map when channels change);
    ``kind="biggan"``: BigGAN's block, which can also resample (``up``/``down``, FIR or naive) both branches
    (skip through a 1x1 conv when channels or resolution change)."""

    def __init__(self, kind: str, in_ch: int, out_ch: Optional[int], temb_dim: int, dropout: float,
                 skip_rescale: bool, init_scale: float, up: bool = False, down: bool = False, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        out_ch = out_ch or in_ch
        self.kind, self.up, self.down, self.fir, self.skip_rescale = kind, up, down, fir, skip_rescale
        self.norm0, self.conv0 = _norm(in_ch), _conv(in_ch, out_ch)
        self.temb = _linear(temb_dim, out_ch)
        self.norm1, self.dropout = _norm(out_ch), nn.Dropout(dropout)
        self.conv1 = _conv(out_ch, out_ch, init_scale=init_scale)
        if kind == "ddpm":
            self.skip = ChannelLinear(in_ch, out_ch) if in_ch != out_ch else None
        else:
            self.skip = _conv(in_ch, out_ch, 1) if in_ch != out_ch or up or down else None
        self.PAPER_NAMES = {"norm0": "GroupNorm_0", "conv0": "Conv_0", "temb": "Dense_0", "norm1": "GroupNorm_1",
                            "conv1": "Conv_1", "skip": "NIN_0" if kind == "ddpm" else "Conv_2"}
        if fir and (up or down):
            self.register_buffer("filt", fir_filter(fir_kernel, 4.0 if up else 1.0), persistent=False)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return upsample_2d(x, self.filt) if self.fir else naive_upsample_2d(x)
        if self.down:
            return downsample_2d(x, self.filt) if self.fir else naive_downsample_2d(x)
        return x

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm0(x))
        h, x = self._resample(h), self._resample(x)
        h = self.conv0(h) + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv1(self.dropout(F.silu(self.norm1(h))))
        if self.skip is not None:
            x = self.skip(x)
        return _merge(x, h, self.skip_rescale)


class Combine(nn.Module):
    """Input pyramid into the features: a 1x1 conv of the pyramid, concatenated (``cat``) or added (``sum``)."""

    PAPER_NAMES = {"conv": "Conv_0"}

    def __init__(self, pyramid_ch: int, ch: int, method: str) -> None:
        super().__init__()
        self.conv, self.method = _conv(pyramid_ch, ch, 1), method

    def forward(self, pyramid: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        p = self.conv(pyramid)
        return torch.cat([p, h], dim=1) if self.method == "cat" else p + h


@register_net("ncsnpp")
class NCSNpp(nn.Module):
    """NCSN++ / DDPM++ score network; see the module docstring and ``PAPER_CONFIGS``.

    Args:
        data_shape: (C, H, W), H = W divisible by 2^(len(ch_mult) - 1).
        nf, ch_mult, num_res_blocks, attn_resolutions, dropout: width, per-resolution multipliers, blocks per
            resolution, resolutions (in pixels) with self-attention, dropout rate.
        resblock: "biggan" (resamples inside the blocks) or "ddpm" (separate resampling layers).
        resamp_with_conv, fir, fir_kernel: resampling layers with a 3x3 conv; FIR filter (else average pooling
            / nearest neighbour) and its 1-D kernel.
        skip_rescale: residual sums divided by sqrt(2).
        progressive: "none", "output_skip" (an output image pyramid summed over resolutions), "residual".
        progressive_input: "none", "input_skip" (the downsampled input combined in at each resolution),
            "residual"; progressive_combine: "sum" or "cat".
        embedding: "fourier" (Gaussian Fourier features, std ``fourier_scale``) or "positional" (DDPM's
            sinusoidal embedding of ``time_scale * t``).
        sigma_input, scale_by_sigma: the second argument is sigma (embedded as log sigma), and the output is
            divided by it (the paper's VE networks); otherwise it is t, and a ScoreModule does its own scaling.
        centered: inputs are centred data (else in [0, 1], mapped to [-1, 1] first, as the paper's VE nets).
        init_scale: scale of the last convolution of every block (0: start as the identity).
        num_classes: class-conditional: an embedding per class plus the null label.
    """

    def __init__(self, data_shape: Sequence[int] = (3, 32, 32), nf: int = 128, ch_mult: Sequence[int] = (1, 2, 2, 2),
                 num_res_blocks: int = 4, attn_resolutions: Sequence[int] = (16,), dropout: float = 0.1,
                 resblock: str = "biggan", resamp_with_conv: bool = True, fir: bool = False,
                 fir_kernel: Sequence[int] = (1, 3, 3, 1), skip_rescale: bool = True, progressive: str = "none",
                 progressive_input: str = "none", progressive_combine: str = "sum", embedding: str = "fourier",
                 fourier_scale: float = 1.0, time_scale: float = 1.0, sigma_input: bool = False,
                 scale_by_sigma: bool = False, centered: bool = True, init_scale: float = 0.0,
                 num_classes: Optional[int] = None) -> None:
        super().__init__()
        self.init_args = dict(data_shape=[int(d) for d in data_shape], nf=nf, ch_mult=list(ch_mult),
                              num_res_blocks=num_res_blocks, attn_resolutions=list(attn_resolutions), dropout=dropout,
                              resblock=resblock, resamp_with_conv=resamp_with_conv, fir=fir,
                              fir_kernel=list(fir_kernel), skip_rescale=skip_rescale, progressive=progressive,
                              progressive_input=progressive_input, progressive_combine=progressive_combine,
                              embedding=embedding, fourier_scale=fourier_scale, time_scale=time_scale,
                              sigma_input=sigma_input, scale_by_sigma=scale_by_sigma, centered=centered,
                              init_scale=init_scale, num_classes=num_classes)
        self.data_shape = tuple(self.init_args["data_shape"])
        channels, res = self._check_shape(self.data_shape, len(ch_mult))
        nf = check_int("nf", nf, minimum=4)
        num_res_blocks = check_int("num_res_blocks", num_res_blocks, minimum=1)
        self.resblock = check_choice("resblock", resblock, RESBLOCKS)
        self.progressive = check_choice("progressive", progressive, PROGRESSIVE)
        self.progressive_input = check_choice("progressive_input", progressive_input, PROGRESSIVE_INPUT)
        combine = check_choice("progressive_combine", progressive_combine, ("sum", "cat"))
        self.embedding = check_choice("embedding", embedding, EMBEDDINGS)
        self.time_scale = check_number("time_scale", time_scale, positive=True)
        if scale_by_sigma and not sigma_input:
            raise ValueError("scale_by_sigma=True needs sigma_input=True (the network divides by the sigma it is "
                             "given); with t as input let the ScoreModule scale (its scale_by_sigma)")
        if sigma_input and self.embedding != "fourier":
            raise ValueError("sigma_input=True embeds log sigma with Fourier features: set embedding='fourier'")
        self.sigma_input, self.scale_by_sigma, self.centered = bool(sigma_input), bool(scale_by_sigma), bool(centered)
        self.skip_rescale, self.nf = bool(skip_rescale), nf
        self.num_classes = num_classes
        self.num_resolutions = len(ch_mult)
        self.attn_resolutions = tuple(int(r) for r in attn_resolutions)
        resolutions = [res // 2 ** i for i in range(self.num_resolutions)]
        self.paper_order: List[str] = []  # module paths in the paper code's all_modules order

        def add(path: str, module: nn.Module) -> nn.Module:
            self.paper_order.append(path)
            return module

        temb_dim = 4 * nf
        if self.embedding == "fourier":
            self.fourier = add("fourier", GaussianFourierEmbedding(2 * nf, fourier_scale))
        self.temb = nn.ModuleList([add("temb.0", _linear(2 * nf if self.embedding == "fourier" else nf, temb_dim)),
                                   add("temb.1", _linear(temb_dim, temb_dim))])
        self.label_embed = LabelEmbedding(num_classes, temb_dim) if num_classes is not None else None

        def block(path: str, cin: int, cout: Optional[int] = None, **kw) -> ResBlock:
            return add(path, ResBlock(self.resblock, cin, cout, temb_dim, dropout, self.skip_rescale, init_scale,
                                      fir=fir, fir_kernel=fir_kernel, **kw))

        def attention(path: str, ch: int) -> AttentionBlock:
            return add(path, AttentionBlock(ch, self.skip_rescale, init_scale))

        def resample(path: str, cin: int, cout: Optional[int] = None, *, down: bool, conv: bool) -> Resample:
            return add(path, Resample(cin, cout, down, conv, fir, fir_kernel))

        self.conv_in = add("conv_in", _conv(channels, nf))
        skips, ch, pyramid_ch = [nf], nf, channels
        self.down = nn.ModuleList()
        for lvl in range(self.num_resolutions):
            level = nn.Module()
            level.blocks, level.attns = nn.ModuleList(), nn.ModuleList()
            with_attn = resolutions[lvl] in self.attn_resolutions
            for b in range(num_res_blocks):
                level.blocks.append(block(f"down.{lvl}.blocks.{b}", ch, nf * ch_mult[lvl]))
                ch = nf * ch_mult[lvl]
                if with_attn:
                    level.attns.append(attention(f"down.{lvl}.attns.{b}", ch))
                skips.append(ch)
            if lvl != self.num_resolutions - 1:
                level.downsample = (block(f"down.{lvl}.downsample", ch, down=True) if self.resblock == "biggan"
                                    else resample(f"down.{lvl}.downsample", ch, down=True, conv=resamp_with_conv))
                if self.progressive_input == "input_skip":
                    level.pyramid = add(f"down.{lvl}.pyramid", Combine(pyramid_ch, ch, combine))
                    ch = 2 * ch if combine == "cat" else ch
                elif self.progressive_input == "residual":
                    level.pyramid = resample(f"down.{lvl}.pyramid", pyramid_ch, ch, down=True, conv=True)
                    pyramid_ch = ch
                skips.append(ch)
            self.down.append(level)
        self.mid = nn.ModuleList([block("mid.0", ch), attention("mid.1", ch), block("mid.2", ch)])
        self.up = nn.ModuleList([nn.Module() for _ in range(self.num_resolutions)])
        pyramid_ch = 0
        for lvl in reversed(range(self.num_resolutions)):
            level = self.up[lvl]
            level.blocks = nn.ModuleList()
            for b in range(num_res_blocks + 1):
                level.blocks.append(block(f"up.{lvl}.blocks.{b}", ch + skips.pop(), nf * ch_mult[lvl]))
                ch = nf * ch_mult[lvl]
            if resolutions[lvl] in self.attn_resolutions:
                level.attn = attention(f"up.{lvl}.attn", ch)
            top = lvl == self.num_resolutions - 1
            if self.progressive == "output_skip" or (self.progressive == "residual" and top):
                out_ch = channels if self.progressive == "output_skip" else ch
                level.pyramid_norm = add(f"up.{lvl}.pyramid_norm", _norm(ch))
                level.pyramid_conv = add(f"up.{lvl}.pyramid_conv", _conv(
                    ch, out_ch, init_scale=init_scale if self.progressive == "output_skip" else 1.0))
                pyramid_ch = out_ch
            elif self.progressive == "residual":
                level.pyramid_up = resample(f"up.{lvl}.pyramid_up", pyramid_ch, ch, down=False, conv=True)
                pyramid_ch = ch
            if lvl != 0:
                level.upsample = (block(f"up.{lvl}.upsample", ch, up=True) if self.resblock == "biggan"
                                  else resample(f"up.{lvl}.upsample", ch, down=False, conv=resamp_with_conv))
        if self.progressive != "output_skip":
            self.out_norm = add("out_norm", _norm(ch))
            self.conv_out = add("conv_out", _conv(ch, channels, init_scale=init_scale))
        self.fir = fir
        if fir:  # the parameter-free pyramid resampling of output_skip / input_skip
            self.register_buffer("up_filt", fir_filter(fir_kernel, 4.0), persistent=False)
            self.register_buffer("down_filt", fir_filter(fir_kernel, 1.0), persistent=False)

    @staticmethod
    def _check_shape(data_shape, levels: int):
        if len(data_shape) != 3 or data_shape[1] != data_shape[2] or data_shape[1] % 2 ** (levels - 1):
            raise ValueError(f"NCSNpp needs data_shape (C, H, H) with H divisible by 2^(len(ch_mult) - 1) = "
                             f"{2 ** (levels - 1)}, got {tuple(data_shape)}")
        return data_shape[0], data_shape[1]

    def _time_embedding(self, t: torch.Tensor) -> torch.Tensor:
        if self.sigma_input:
            return self.fourier(torch.log(t))
        if self.embedding == "fourier":
            return self.fourier(self.time_scale * t)
        return sinusoidal_embedding(self.time_scale * t, self.nf)

    def _pyramid_up(self, pyramid: torch.Tensor) -> torch.Tensor:
        return upsample_2d(pyramid, self.up_filt) if self.fir else naive_upsample_2d(pyramid)

    def _pyramid_down(self, pyramid: torch.Tensor) -> torch.Tensor:
        return downsample_2d(pyramid, self.down_filt) if self.fir else naive_downsample_2d(pyramid)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        temb = self.temb[1](F.silu(self.temb[0](self._time_embedding(t))))
        temb = temb + label_term(self.label_embed, labels, x)
        if not self.centered:
            x = 2 * x - 1
        pyramid = x
        hs = [self.conv_in(x)]
        for lvl, level in enumerate(self.down):
            for b, blk in enumerate(level.blocks):
                h = blk(hs[-1], temb)
                if len(level.attns):
                    h = level.attns[b](h)
                hs.append(h)
            if lvl != self.num_resolutions - 1:
                h = level.downsample(hs[-1], temb) if self.resblock == "biggan" else level.downsample(hs[-1])
                if self.progressive_input == "input_skip":
                    pyramid = self._pyramid_down(pyramid)
                    h = level.pyramid(pyramid, h)
                elif self.progressive_input == "residual":
                    pyramid = _merge(level.pyramid(pyramid), h, self.skip_rescale)
                    h = pyramid
                hs.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](hs[-1], temb)), temb)
        pyramid = None
        for lvl in reversed(range(self.num_resolutions)):
            level = self.up[lvl]
            for blk in level.blocks:
                h = blk(torch.cat([h, hs.pop()], dim=1), temb)
            if hasattr(level, "attn"):
                h = level.attn(h)
            if hasattr(level, "pyramid_conv"):
                new = level.pyramid_conv(F.silu(level.pyramid_norm(h)))
                pyramid = new if pyramid is None else self._pyramid_up(pyramid) + new
            elif hasattr(level, "pyramid_up"):
                pyramid = _merge(level.pyramid_up(pyramid), h, self.skip_rescale)
                h = pyramid
            if lvl != 0:
                h = level.upsample(h, temb) if self.resblock == "biggan" else level.upsample(h)
        h = pyramid if self.progressive == "output_skip" else self.conv_out(F.silu(self.out_norm(h)))
        if self.scale_by_sigma:
            h = h / t.reshape(-1, 1, 1, 1)
        return h


def paper_local_name(module: nn.Module, key: str) -> str:
    """A state-dict key relative to ``module`` as the paper code names it (each block's ``PAPER_NAMES``)."""
    head, _, rest = key.partition(".")
    name = getattr(module, "PAPER_NAMES", {}).get(head, head)
    return name if not rest else f"{name}.{paper_local_name(getattr(module, head), rest)}"


def score_sde_key_map(net: NCSNpp) -> Dict[str, Optional[str]]:
    """The paper code's state-dict key (without ``module.``) -> this network's key, for every entry of its
    state dict; the paper's ``sigmas`` buffer (its noise table, which the SDE holds here) maps to None."""
    mapping: Dict[str, Optional[str]] = {"sigmas": None}
    for i, path in enumerate(net.paper_order):
        module = net.get_submodule(path)
        for key in module.state_dict():
            mapping[f"all_modules.{i}.{paper_local_name(module, key)}"] = f"{path}.{key}"
    return mapping


# The paper's CIFAR-10 networks (score_sde configs ve/cifar10_ncsnpp_deep_continuous.py and
# vp/cifar10_ddpmpp_continuous.py): NCSN++ cont. (deep) takes sigma; DDPM++ cont. takes t (embedding 999 t)
# and predicts the noise (score = -output / sigma(t)).
PAPER_CONFIGS: Dict[str, Dict] = {
    "ncsnpp_deep_ve": dict(data_shape=(3, 32, 32), nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=8,
                           attn_resolutions=(16,), dropout=0.1, resblock="biggan", resamp_with_conv=True, fir=True,
                           fir_kernel=(1, 3, 3, 1), skip_rescale=True, progressive="none",
                           progressive_input="residual", progressive_combine="sum", embedding="fourier",
                           fourier_scale=16.0, sigma_input=True, scale_by_sigma=True, centered=False,
                           init_scale=0.0),
    "ddpmpp_vp": dict(data_shape=(3, 32, 32), nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=4, attn_resolutions=(16,),
                      dropout=0.1, resblock="biggan", resamp_with_conv=True, fir=False, fir_kernel=(1, 3, 3, 1),
                      skip_rescale=True, progressive="none", progressive_input="none", progressive_combine="sum",
                      embedding="positional", time_scale=999.0, centered=True, init_scale=0.0),
}


def from_score_sde_config(model: Mapping[str, Any], data: Mapping[str, Any]) -> Dict[str, Any]:
    """NCSNpp keyword arguments for a paper-code config's ``model`` and ``data`` sections (dicts, e.g.
    ``config.model.to_dict()``), for its ``ncsnpp`` networks trained with ``continuous=True``: a Fourier
    network takes sigma (as the paper's VE networks), a positional one t (embedding (num_scales - 1) t)."""
    fixed = dict(name="ncsnpp", conditional=True, normalization="GroupNorm", nonlinearity="swish",
                 attention_type="ddpm", conv_size=3)
    for key, want in fixed.items():
        if key in model and model[key] != want:
            raise ValueError(f"model.{key}={model[key]!r} is not supported (NCSNpp builds {key}={want!r})")
    need = {"model": ("nf", "ch_mult", "num_res_blocks", "attn_resolutions", "dropout", "resblock_type",
                      "resamp_with_conv", "fir", "fir_kernel", "skip_rescale", "progressive", "progressive_input",
                      "progressive_combine", "scale_by_sigma", "init_scale"),
            "data": ("num_channels", "image_size", "centered")}
    for section, keys in need.items():
        missing = [k for k in keys if k not in (model if section == "model" else data)]
        if missing:
            raise ValueError(f"the paper config's {section} section lacks {', '.join(missing)}")
    embedding = str(model.get("embedding_type", "fourier")).lower()
    return dict(data_shape=(int(data["num_channels"]), int(data["image_size"]), int(data["image_size"])),
                nf=int(model["nf"]), ch_mult=tuple(model["ch_mult"]), num_res_blocks=int(model["num_res_blocks"]),
                attn_resolutions=tuple(model["attn_resolutions"]), dropout=float(model["dropout"]),
                resblock=str(model["resblock_type"]).lower(), resamp_with_conv=bool(model["resamp_with_conv"]),
                fir=bool(model["fir"]), fir_kernel=tuple(model["fir_kernel"]),
                skip_rescale=bool(model["skip_rescale"]), progressive=str(model["progressive"]).lower(),
                progressive_input=str(model["progressive_input"]).lower(),
                progressive_combine=str(model["progressive_combine"]).lower(), embedding=embedding,
                fourier_scale=float(model.get("fourier_scale", 16.0)),
                time_scale=float(model.get("num_scales", 1000) - 1) if embedding == "positional" else 1.0,
                sigma_input=embedding == "fourier", scale_by_sigma=bool(model["scale_by_sigma"]),
                centered=bool(data["centered"]), init_scale=float(model["init_scale"]))
