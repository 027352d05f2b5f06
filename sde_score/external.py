"""Outside models in: ``wrap`` turns a network that predicts noise, v, x0 or a denoised image, at any time
input, into a score model for ``sample``, ``log_likelihood``, ``impute`` and ``optimized_schedule``.

Every conversion lives here, for the kernel x_t = alpha x_0 + sigma eps of the model's SDE:
- eps (Ho et al. 2020):            score = -eps / sigma
- x0 / denoiser (Tweedie):         score = (alpha x0 - x) / sigma^2;  a *denoiser* (Karras et al. 2022,
  eq. 3) also takes the scaled input x / alpha and the noise level sigma_e = sigma / alpha
- v (Salimans & Ho 2022, Sec. 4):  with r = sqrt(alpha^2 + sigma^2) (1 for VP SDEs),
  v = (alpha eps - sigma x0) / r, so eps = sigma x / r^2 + alpha v / r
and their inverses (``prediction_from_score``).  Time inputs: ``t``; ``index`` (a DDPM table's integer
timestep N t / T - 1, ``DiscreteVPSDE.index``); ``sigma`` = sigma_e; ``log_sigma``; ``c_noise`` =
log(sigma_e) / 4 (EDM, Table 1).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Union

import torch
from torch import nn

from .checkpoints import load_plain
from .checks import check_choice
from .sdes import SDE, bcast, get_sde

PREDICTIONS = ("score", "eps", "v", "x0", "denoiser")
TIME_INPUTS = ("t", "index", "sigma", "log_sigma", "c_noise")


def score_from_prediction(prediction: str, out: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor,
                          sigma: torch.Tensor) -> torch.Tensor:
    """The score (like x) from a model's ``prediction`` at x_t = x; alpha, sigma (B,) of the kernel."""
    a, s = bcast(alpha, x), bcast(sigma, x)
    if prediction == "score":
        return out
    if prediction == "eps":
        return -out / s
    if prediction in ("x0", "denoiser"):
        return (a * out - x) / s ** 2
    if prediction == "v":
        r2 = a ** 2 + s ** 2
        return -(s * x / r2 + a * out / torch.sqrt(r2)) / s
    raise ValueError(f"unknown prediction {prediction!r}; expected one of {', '.join(PREDICTIONS)}")


def prediction_from_score(prediction: str, score: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor,
                          sigma: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`score_from_prediction`: what a ``prediction`` model outputs for this score."""
    a, s = bcast(alpha, x), bcast(sigma, x)
    eps = -s * score
    x0 = (x + s ** 2 * score) / a
    if prediction == "score":
        return score
    if prediction == "eps":
        return eps
    if prediction in ("x0", "denoiser"):
        return x0
    if prediction == "v":
        return (a * eps - s * x0) / torch.sqrt(a ** 2 + s ** 2)
    raise ValueError(f"unknown prediction {prediction!r}; expected one of {', '.join(PREDICTIONS)}")


def time_input(kind: str, t: torch.Tensor, sde: SDE) -> torch.Tensor:
    """What a model takes as its time argument at times t (B,)."""
    if kind == "t":
        return t
    if kind == "index":
        return sde.index(t) if hasattr(sde, "index") else t * (sde.N / sde.T) - 1
    s = sde.edm_sigma(t)
    if kind == "sigma":
        return s
    if kind == "log_sigma":
        return torch.log(s)
    if kind == "c_noise":
        return 0.25 * torch.log(s)
    raise ValueError(f"unknown time_input {kind!r}; expected one of {', '.join(TIME_INPUTS)}")


def time_from_input(kind: str, value: torch.Tensor, sde: SDE) -> torch.Tensor:
    """The inverse of :func:`time_input`: t (B,) from what a model was given."""
    if kind == "t":
        return value
    if kind == "index":
        return (value + 1) * (sde.T / (len(sde.table) if hasattr(sde, "table") else sde.N))
    s = {"sigma": value, "log_sigma": torch.exp(value), "c_noise": torch.exp(4 * value)}.get(kind)
    if s is None:
        raise ValueError(f"unknown time_input {kind!r}; expected one of {', '.join(TIME_INPUTS)}")
    return sde.t_from_edm_sigma(s)


class ExternalModel(nn.Module):
    """A wrapped outside network as a score model ``model(x, t, labels=None)`` with ``sde``, ``data_shape``
    and ``num_classes``; see :func:`wrap`."""

    def __init__(self, net: Callable, sde: SDE, prediction: str, time_input_kind: str,
                 output: Union[None, str, Callable], learned_variance: bool, labels: Optional[str],
                 data_shape: Optional[Sequence[int]], num_classes: Optional[int]) -> None:
        super().__init__()
        self.net, self.sde = net, sde
        self.prediction, self.time_input_kind = prediction, time_input_kind
        self.output, self.learned_variance, self.labels_keyword = output, learned_variance, labels
        self.data_shape = tuple(int(d) for d in data_shape) if data_shape is not None else None
        self.num_classes = num_classes

    def _unwrap(self, out, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.output, str):
            out = getattr(out, self.output)
        elif callable(self.output):
            out = self.output(out)
        if self.learned_variance:  # (B, 2C, ...): the mean's C channels, then the variance's
            if not torch.is_tensor(out) or out.dim() < 2 or out.shape[1] != 2 * x.shape[1]:
                raise ValueError(f"learned_variance expects {2 * x.shape[1]} output channels, got "
                                 f"{tuple(out.shape) if torch.is_tensor(out) else type(out).__name__}")
            out = out[:, : x.shape[1]]
        if not torch.is_tensor(out):
            raise ValueError(f"the wrapped network returned a {type(out).__name__}; pass output='sample' (or a "
                             f"callable) to take the prediction tensor from it")
        return out

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        t = self.sde.check_t(t, x)
        alpha, sigma = self.sde.alpha_sigma(t)
        x_in = x / bcast(alpha, x) if self.prediction == "denoiser" else x
        tau = time_input(self.time_input_kind, t, self.sde)
        if labels is None:
            out = self.net(x_in, tau)
        elif self.labels_keyword:
            out = self.net(x_in, tau, **{self.labels_keyword: labels})
        else:
            out = self.net(x_in, tau, labels)
        out = self._unwrap(out, x)
        return score_from_prediction(self.prediction, out.to(x.dtype), x, alpha.to(x.dtype), sigma.to(x.dtype))


def wrap(net: Callable, sde: Union[str, SDE], *, prediction: str = "eps", time_input: Optional[str] = None,
         output: Union[None, str, Callable] = None, learned_variance: bool = False, labels: Optional[str] = None,
         data_shape: Optional[Sequence[int]] = None, num_classes: Optional[int] = None) -> ExternalModel:
    """An outside network as a score model for every sampler and the likelihood.

    Args:
        net: ``net(x_in, time) -> prediction`` (an ``nn.Module`` or any callable).
        sde: the SDE (name or instance) whose kernel the network was trained on, e.g. ``DiscreteVPSDE(
            scheduler.alphas_cumprod)`` for a DDPM table.
        prediction: "eps" (default), "v", "x0", "denoiser" (EDM: input x / alpha, see module doc) or "score".
        time_input: "t", "index", "sigma", "log_sigma", "c_noise" (default: "sigma" for a denoiser, else "t").
        output: attribute name (e.g. "sample" for diffusers' ``UNet2DOutput``) or callable taking the
            prediction tensor from what ``net`` returns.  learned_variance: the output holds 2C channels
            (mean, variance; improved DDPM / guided diffusion): use the first C.
        labels: the keyword by which ``net`` takes class labels (e.g. "class_labels"); None: positional.
        data_shape, num_classes: recorded on the model (``sample(num_samples=...)``, label checks).
    """
    sde = get_sde(sde) if isinstance(sde, str) else sde
    if not isinstance(sde, SDE):
        raise ValueError(f"sde must be an SDE name or instance, got {sde!r}")
    if not callable(net):
        raise ValueError(f"net must be callable as net(x, time), got {type(net).__name__}")
    check_choice("prediction", prediction, PREDICTIONS)
    kind = ("sigma" if prediction == "denoiser" else "t") if time_input is None else time_input
    check_choice("time_input", kind, TIME_INPUTS)
    if output is not None and not isinstance(output, str) and not callable(output):
        raise ValueError(f"output must be an attribute name or a callable, got {output!r}")
    return ExternalModel(net, sde, prediction, kind, output, bool(learned_variance), labels, data_shape, num_classes)


_DIFFUSERS_PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}


def from_diffusers(unet, scheduler, *, labels: Optional[str] = "class_labels",
                   num_classes: Optional[int] = None) -> "tuple[ExternalModel, SDE]":
    """(model, sde) for a diffusers ``UNet2DModel``-like network and its scheduler (nothing downloads: pass
    objects you built or loaded yourself).

    - A DDPM-family scheduler (``DDPMScheduler``, ``DDIMScheduler``, ... with ``alphas_cumprod`` and
      ``config.prediction_type`` "epsilon" / "v_prediction" / "sample"): ``DiscreteVPSDE(alphas_cumprod)``,
      the UNet called at the table's integer timesteps (``time_input="index"``); learned-variance
      schedulers ("learned", "learned_range") keep the mean's channels.
    - ``ScoreSdeVeScheduler``: ``VESDE(sigma_min, sigma_max, N)``; its NCSN++ UNet takes sigma and returns
      the score (diffusers' Fourier-embedding UNet divides by sigma itself)."""
    cfg = scheduler.config
    data_shape = None
    ucfg = getattr(unet, "config", None)
    if ucfg is not None and getattr(ucfg, "sample_size", None) is not None:
        size = ucfg.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        data_shape = (ucfg.in_channels,) + size
    if hasattr(cfg, "sigma_min") and hasattr(cfg, "sigma_max") and not hasattr(scheduler, "alphas_cumprod"):
        from .sdes import VESDE

        sde = VESDE(float(cfg.sigma_min), float(cfg.sigma_max), int(cfg.num_train_timesteps))
        model = wrap(unet, sde, prediction="score", time_input="sigma", output="sample", labels=labels,
                     data_shape=data_shape, num_classes=num_classes)
        return model, sde
    if not hasattr(scheduler, "alphas_cumprod"):
        raise ValueError(f"{type(scheduler).__name__} has neither alphas_cumprod (DDPM family) nor sigma_min/"
                         f"sigma_max (ScoreSdeVeScheduler)")
    from .sdes import DiscreteVPSDE

    kind = getattr(cfg, "prediction_type", "epsilon")
    if kind not in _DIFFUSERS_PREDICTIONS:
        raise ValueError(f"unsupported prediction_type {kind!r}; expected one of {', '.join(_DIFFUSERS_PREDICTIONS)}")
    sde = DiscreteVPSDE(torch.as_tensor(scheduler.alphas_cumprod, dtype=torch.float64))
    learned = getattr(cfg, "variance_type", None) in ("learned", "learned_range")
    model = wrap(unet, sde, prediction=_DIFFUSERS_PREDICTIONS[kind], time_input="index", output="sample",
                 learned_variance=learned, labels=labels, data_shape=data_shape, num_classes=num_classes)
    return model, sde


def load_score_sde_checkpoint(path, net: nn.Module, *, ema: bool = True,
                              key_map: Optional[Dict[str, Optional[str]]] = None, map_location: Any = "cpu") -> dict:
    """Load a checkpoint of the paper code (score_sde / score_sde_pytorch, ``torch.save(dict(optimizer=...,
    model=..., ema=..., step=...))``) into ``net``, read as plain data (nothing is unpickled or imported).

    ``model``: the state dict of the ``DataParallel``-wrapped network (keys start with ``module.``, stripped
    here); ``key_map`` renames the rest (paper name -> ``net``'s name, None for an entry ``net`` does not
    hold); for a :class:`~sde_score.models.NCSNpp` it defaults to ``score_sde_key_map(net)``.  ``ema``: the
    ``ExponentialMovingAverage`` state, whose ``shadow_params`` list the paper network's trainable
    parameters in its order (the checkpoint's key order); with ``ema=True`` (the weights the paper samples
    and evaluates with) they replace the raw ones.  Returns {"step", "ema_decay", "num_updates"}."""
    ckpt = load_plain(path, map_location=map_location)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"{str(path)!r} is not a score_sde checkpoint (no 'model' state dict)")
    if key_map is None and hasattr(net, "paper_order"):
        from .models.ncsnpp import score_sde_key_map

        key_map = score_sde_key_map(net)
    state, order = {}, []
    for key, value in ckpt["model"].items():
        key = key[len("module."):] if key.startswith("module.") else key
        ours = (key_map or {}).get(key, key)
        if ours is not None:
            state[ours] = value
            order.append(ours)
    missing, unexpected = set(net.state_dict()) - set(state), set(state) - set(net.state_dict())
    if missing or unexpected:
        raise ValueError(f"{str(path)!r} does not fit {type(net).__name__}: missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]} (give key_map for renamed parameters)")
    net.load_state_dict(state)
    info = {"step": int(ckpt.get("step", 0)), "ema_decay": None, "num_updates": None}
    if ema:
        if "ema" not in ckpt:
            raise ValueError(f"{str(path)!r} holds no 'ema' state; pass ema=False for the raw weights")
        shadow = ckpt["ema"]["shadow_params"]
        named = dict(net.named_parameters())
        params = [named[k] for k in order if k in named and named[k].requires_grad]
        if len(shadow) != len(params) or any(s.shape != p.shape for s, p in zip(shadow, params)):
            raise ValueError(f"the EMA's {len(shadow)} shadow parameters do not match {type(net).__name__}'s "
                             f"{len(params)} trainable parameters in the checkpoint's order")
        with torch.no_grad():
            for p, s in zip(params, shadow):
                p.copy_(s)
        info.update(ema_decay=float(ckpt["ema"].get("decay", float("nan"))), num_updates=ckpt["ema"].get("num_updates"))
    return info


__all__ = ["PREDICTIONS", "TIME_INPUTS", "ExternalModel", "prediction_from_score", "score_from_prediction",
           "time_from_input", "time_input", "wrap", "from_diffusers", "load_score_sde_checkpoint"]
