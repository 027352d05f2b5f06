"""ScoreModule: a time-conditioned network, its SDE and its score-matching objective in Lightning.

A ScoreModule follows the score-function protocol (``module(x, t)`` is the score), so
``sde_score.sample(module, ...)`` and ``log_likelihood(module, x)`` work on it directly.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Union

import pytorch_lightning as pl
import torch
from torch import nn

from .checks import check_choice, check_eps, check_int, check_number
from .checkpoints import read_checkpoint
from .losses import LOSSES, ImportanceTimeSampler, loss_options
from .models.registry import class_path_of, net_class, registered_net
from .sampling import sample
from .sdes import SDE, bcast, get_sde

PARAMETERIZATIONS = ("score", "energy")


def build_net(net: Union[nn.Module, Dict[str, Any]]) -> nn.Module:
    """An nn.Module, or one built from {"class_path": ..., "init_args": {...}} where class_path names a
    registered network (``sde_score.models.NETWORKS``).  Resolved by lookup: nothing is imported, so a
    config or checkpoint cannot make this call arbitrary code."""
    if isinstance(net, nn.Module):
        return net
    if not isinstance(net, dict) or "class_path" not in net:
        raise ValueError(f"net must be an nn.Module or a dict with class_path/init_args, got {net!r}")
    unknown = set(net) - {"class_path", "init_args"}
    if unknown:
        raise ValueError(f"net config has unknown keys {sorted(unknown)}; accepted: class_path, init_args")
    init_args = net.get("init_args") or {}
    if not isinstance(init_args, dict):
        raise ValueError(f"net init_args must be a mapping, got {init_args!r}")
    return net_class(net["class_path"])(**init_args)


def net_config(net: nn.Module) -> Dict[str, Any]:
    """The class_path/init_args a checkpoint records to rebuild ``net`` (a registered network)."""
    cls = type(net)
    if registered_net(class_path_of(cls)) is not cls:
        raise ValueError(f"{cls.__name__} is not a registered network, so checkpoints could not rebuild it "
                         f"safely; register it with @sde_score.register_net(\"name\") on the class")
    init_args = getattr(net, "init_args", None)
    if init_args is None:
        raise ValueError(f"{cls.__name__} does not record its constructor arguments (init_args); "
                         f"checkpoints could not rebuild it")
    return {"class_path": class_path_of(cls), "init_args": dict(init_args)}


class ScoreModule(pl.LightningModule):
    """Score model trained by score matching.

    Args:
        net: network ``net(x, t)`` (output shaped like x, or a scalar energy with
            ``parameterization="energy"``), or its class_path/init_args config.
        sde: SDE name ("ve", "vp", "subvp"); sde_kwargs: its hyper-parameters.
        loss: "dsm" (default), "smld", "ddpm", "ssm", "ism"; loss_kwargs: extra options
            (e.g. noise_t, n_slices for ssm/ism).
        likelihood_weighting, importance_sampling, reduce_mean, eps: DSM options (see ``losses``).
        scale_by_sigma: score = net output / sigma(t) (the net predicts -noise; Song 2021 code).
        lr, weight_decay, warmup_steps, grad_clip: Adam with linear warm-up, gradient-norm clipping.
        sampler: options for ``sample()`` in predict / validation images, e.g.
            {"method": "pc", "steps": 500, "predictor": "reverse_diffusion"}; sample_seed: base seed.
        val_sample_images: samples drawn and logged as a picture after each validation (0: none).
    """

    def __init__(self, net: Union[nn.Module, Dict[str, Any]], sde: str = "vp", sde_kwargs: Optional[dict] = None,
                 loss: str = "dsm", loss_kwargs: Optional[dict] = None, likelihood_weighting: bool = False,
                 importance_sampling: bool = False, reduce_mean: bool = False, eps: float = 1e-5,
                 parameterization: str = "score", scale_by_sigma: bool = True, lr: float = 2e-4,
                 weight_decay: float = 0.0, warmup_steps: int = 0, grad_clip: Optional[float] = 1.0,
                 sampler: Optional[dict] = None, sample_seed: int = 0, val_sample_images: int = 0) -> None:
        super().__init__()
        self.net = build_net(net)
        self.sde: SDE = get_sde(sde, **(sde_kwargs or {}))
        LOSSES.get(loss)  # unknown names raise, listing the registered ones
        self.loss_name = loss.lower()
        self.loss_kwargs = dict(loss_kwargs or {})
        unknown = set(self.loss_kwargs) - set(loss_options(loss))
        if unknown:
            raise ValueError(f"unknown loss_kwargs {sorted(unknown)} for loss {loss!r}; "
                             f"accepted: {sorted(loss_options(loss))}")
        if importance_sampling and not likelihood_weighting:
            raise ValueError("importance_sampling=True needs likelihood_weighting=True")
        self.parameterization = check_choice("parameterization", parameterization, PARAMETERIZATIONS)
        self.eps = check_eps(eps, self.sde)
        self.lr = check_number("lr", lr, positive=True)
        check_number("weight_decay", weight_decay, nonneg=True)
        check_int("warmup_steps", warmup_steps, minimum=0)
        if grad_clip is not None:
            check_number("grad_clip", grad_clip, positive=True)
        self.sampler = dict(sampler or {"method": "pc"})
        self.data_shape = tuple(getattr(self.net, "data_shape", ())) or None
        self._t_sampler = ImportanceTimeSampler(self.sde, self.eps) if importance_sampling else None
        self.save_hyperparameters({"net": net_config(self.net), "sde": sde, "sde_kwargs": dict(sde_kwargs or {}),
                                   "loss": loss, "loss_kwargs": self.loss_kwargs,
                                   "likelihood_weighting": likelihood_weighting,
                                   "importance_sampling": importance_sampling, "reduce_mean": reduce_mean,
                                   "eps": eps, "parameterization": parameterization,
                                   "scale_by_sigma": scale_by_sigma, "lr": lr, "weight_decay": weight_decay,
                                   "warmup_steps": warmup_steps, "grad_clip": grad_clip, "sampler": self.sampler,
                                   "sample_seed": sample_seed, "val_sample_images": val_sample_images})

    # -- the score ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Score s(x, t) (like x) for x (B, ...) and t (B,)."""
        if self.parameterization == "energy":
            need_graph = x.requires_grad or self.training
            with torch.enable_grad():
                xg = x if x.requires_grad else x.detach().requires_grad_(True)
                energy = self.net(xg, t)
                out = -torch.autograd.grad(energy.sum(), xg, create_graph=need_graph)[0]
        else:
            out = self.net(x, t)
        if self.hparams.scale_by_sigma:
            _, sigma = self.sde.alpha_sigma(t)
            out = out / bcast(sigma, out)
        return out

    def energy(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Unnormalised energy E(x, t) (B,) with score = -grad_x E (energy parameterization only)."""
        if self.parameterization != "energy":
            raise ValueError("energy() needs parameterization='energy'")
        e = self.net(x, t)
        if self.hparams.scale_by_sigma:
            e = e / self.sde.alpha_sigma(t)[1]
        return e

    # -- training -------------------------------------------------------------------------------
    def _loss(self, x: torch.Tensor) -> torch.Tensor:
        fn = LOSSES.get(self.loss_name)
        opts = dict(eps=self.eps, reduce_mean=self.hparams.reduce_mean, **self.loss_kwargs)
        if self.loss_name == "dsm":
            opts.update(likelihood_weighting=self.hparams.likelihood_weighting,
                        importance_sampling=self.hparams.importance_sampling, t_sampler=self._t_sampler)
        return fn(self, self.sde, x, **opts).mean()

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss ({loss.item()}) at global step {self.global_step}; "
                                     f"lower lr, clip gradients or check the data")
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=batch.shape[0])
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        with torch.enable_grad():  # ssm/ism/energy need input gradients
            loss = self._loss(batch)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=batch.shape[0])

    def test_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        with torch.enable_grad():
            loss = self._loss(batch)
        self.log("test/loss", loss, sync_dist=True, batch_size=batch.shape[0])

    def on_validation_epoch_end(self) -> None:
        n = self.hparams.val_sample_images
        if not n or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        from .callbacks import log_samples_picture

        x = self.generate(n, seed=self.hparams.sample_seed)
        log_samples_picture(self.trainer, self, x, f"epoch{self.current_epoch:03d}")

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.hparams.weight_decay)
        warm = self.hparams.warmup_steps
        if not warm:
            return opt
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warm))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        clip = gradient_clip_val if gradient_clip_val is not None else self.hparams.grad_clip
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")

    # -- sampling -------------------------------------------------------------------------------
    def generate(self, n: int, seed: int = 0, **overrides) -> torch.Tensor:
        """Draw n samples (model space) with the configured sampler and a seeded generator."""
        opts = {**self.sampler, **overrides}
        method = opts.pop("method", "pc")
        gen = torch.Generator(device=self.device).manual_seed(int(seed))
        was_training = self.training
        self.eval()
        try:
            return sample(self, method=method, num_samples=n, generator=gen, progress=False, **opts)
        finally:
            self.train(was_training)

    def predict_step(self, batch: torch.Tensor, batch_idx: int) -> Dict[str, Any]:
        index, size = int(batch[0]), int(batch[1])
        # one seed per prediction batch: shards of different DDP ranks never share noise
        x = self.generate(size, seed=self.hparams.sample_seed * 1_000_003 + index)
        return {"index": index, "samples": x}

    @classmethod
    def load(cls, path: str, map_location: Any = "cpu") -> "ScoreModule":
        """Load a checkpoint as plain data (``checkpoints.read_checkpoint``: no pickled objects, only
        registered classes; nothing else is imported or called).  Its state_dict holds the EMA weights
        when the EMAWeightAveraging callback was used."""
        _, stream = read_checkpoint(path, map_location)
        module = cls.load_from_checkpoint(stream, map_location=map_location, weights_only=True)
        return module.eval()
