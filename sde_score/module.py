"""ScoreModule: a time-conditioned network, its SDE and its score-matching objective in Lightning.

A ScoreModule follows the score-function protocol (``module(x, t)`` is the score), so
``sde_score.sample(module, ...)`` and ``log_likelihood(module, x)`` work on it directly.
"""
from __future__ import annotations

import io
from typing import Any, Dict, Optional, Tuple, Union

import pytorch_lightning as pl
import torch
from torch import nn

from .checks import check_choice, check_int, check_number
from .checkpoints import read_checkpoint
from .external import TIME_INPUTS, time_input
from .io import check_writable_dir
from .losses import LOSSES, Loss, build_loss
from .models.registry import build_net, net_config
from .sampling import sample
from .sampling.api import check_sampler
from .sdes import SDE, bcast, get_sde

PARAMETERIZATIONS = ("score", "energy")
# ScoreModule arguments of checkpoints written before losses were objects (they now live in the loss)
_LEGACY_LOSS_KEYS = ("loss_kwargs", "likelihood_weighting", "importance_sampling", "reduce_mean", "eps")


def upgrade_hparams(hparams: Dict[str, Any]) -> Dict[str, Any]:
    """Saved hyper-parameters in today's form: a checkpoint from before loss objects (``loss`` a name,
    its options in ``loss_kwargs`` and module-level DSM options) gets the equivalent loss config.
    The old module passed ``eps`` and ``reduce_mean`` to every loss, the DSM flags to ``dsm`` only."""
    if not any(k in hparams for k in _LEGACY_LOSS_KEYS):
        return hparams
    h = dict(hparams)
    name = h.get("loss", "dsm")
    opts = dict(h.pop("loss_kwargs", None) or {})
    opts["reduce_mean"] = h.pop("reduce_mean", False)
    eps = h.pop("eps", 1e-5)
    flags = {k: h.pop(k, False) for k in ("likelihood_weighting", "importance_sampling")}
    cls = LOSSES.resolve(name)
    if "eps" in cls.__dataclass_fields__:
        opts["eps"] = eps
    if name == "dsm":
        opts.update(flags)
    h["loss"] = {"class_path": name, "init_args": opts}
    return h


def adam_with_warmup(module: pl.LightningModule, lr: float, weight_decay: float, warmup_steps: int):
    """Adam with a linear learning-rate warm-up over ``warmup_steps`` optimizer steps (0: none)."""
    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    if not warmup_steps:
        return opt
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup_steps))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def load_checked(cls, path: str, map_location: Any = "cpu", upgrade=None) -> pl.LightningModule:
    """A LightningModule of class ``cls`` from a checkpoint read as plain data (``read_checkpoint``: no
    pickled objects, only registered classes), its hyper-parameters first passed through ``upgrade``;
    returned in eval mode."""
    ckpt, stream = read_checkpoint(path, map_location)
    hparams = ckpt.get("hyper_parameters", {})
    upgraded = upgrade(hparams) if upgrade is not None else hparams
    if upgraded is not hparams:
        ckpt["hyper_parameters"] = upgraded
        stream = io.BytesIO()
        torch.save(ckpt, stream)
        stream.seek(0)
    return cls.load_from_checkpoint(stream, map_location=map_location, weights_only=True).eval()


class ScoreModule(pl.LightningModule):
    """Score model trained by score matching.

    Args:
        net: network ``net(x, t)`` (output shaped like x, or a scalar energy with
            ``parameterization="energy"``), or its class_path/init_args config.
        sde: SDE name ("ve", "vp", "subvp"); sde_kwargs: its hyper-parameters.
        loss: a ``losses.Loss``, a registered name ("dsm" (default), "smld", "ddpm", "ssm", "ism") or
            {"class_path": name, "init_args": {...}}, e.g. {"class_path": "dsm", "init_args":
            {"likelihood_weighting": True, "importance_sampling": True}}.
        scale_by_sigma: score = net output / sigma(t) (the net predicts -noise; Song 2021 code).
        time_input: what the network is given as time: "t" (default), "sigma" (sigma(t) / alpha(t): the
            paper's VE NCSN++, ``NCSNpp(sigma_input=True)``), "log_sigma", "c_noise", "index"
            (``external.TIME_INPUTS``).
        compile_net: compile the network with ``torch.compile`` (in place: checkpoints keep their keys); True
            for the default backend (inductor) or a backend's name ("aot_eager", "eager": capture only).  For
            score parameterizations with losses that need no gradient of the score in x (dsm, smld, ddpm):
            compiled graphs do not support the double backward of energies, ssm and ism.  The first steps
            pay the compilation; ``experiments/bench_compile.py`` measures what it buys.
        lr, weight_decay, warmup_steps, grad_clip: Adam with linear warm-up, gradient-norm clipping.
        sampler: options for ``sample()`` in predict / validation images, e.g.
            {"method": "pc", "steps": 500, "predictor": "reverse_diffusion"}; sample_seed: base seed.
        val_sample_images: samples drawn and logged as a picture after each validation (0: none).
        num_classes: a class-conditional model (the network gets a label embedding; batches are
            (x, labels)); label_dropout: the fraction of training labels replaced by the null label
            (``null_label`` = num_classes), which trains the unconditional score for classifier-free
            guidance (Ho & Salimans 2022 use 0.1-0.2).
    """

    def __init__(self, net: Union[nn.Module, Dict[str, Any]], sde: str = "vp", sde_kwargs: Optional[dict] = None,
                 loss: Union[str, Dict[str, Any], Loss] = "dsm", parameterization: str = "score",
                 scale_by_sigma: bool = True, lr: float = 2e-4,
                 weight_decay: float = 0.0, warmup_steps: int = 0, grad_clip: Optional[float] = 1.0,
                 sampler: Optional[dict] = None, sample_seed: int = 0, val_sample_images: int = 0,
                 num_classes: Optional[int] = None, label_dropout: float = 0.0, time_input: str = "t",
                 compile_net: Union[bool, str] = False) -> None:
        super().__init__()
        check_choice("time_input", time_input, TIME_INPUTS)
        if num_classes is not None:
            num_classes = check_int("num_classes", num_classes)
            if isinstance(net, dict):  # a config: the network gets the label embedding
                given = (net.get("init_args") or {}).get("num_classes", num_classes)
                if given != num_classes:
                    raise ValueError(f"net has num_classes={given}, the module num_classes={num_classes}")
                net = {**net, "init_args": {**(net.get("init_args") or {}), "num_classes": num_classes}}
        self.net = build_net(net)
        self.num_classes: Optional[int] = getattr(self.net, "num_classes", None)
        if num_classes is not None and self.num_classes != num_classes:
            raise ValueError(f"num_classes={num_classes} needs a network built with num_classes={num_classes}, "
                             f"got {type(self.net).__name__} with num_classes={self.num_classes}")
        self.label_dropout = check_number("label_dropout", label_dropout, nonneg=True)
        if self.label_dropout > 1 or (self.label_dropout and self.num_classes is None):
            raise ValueError(f"label_dropout must lie in [0, 1] and needs num_classes, got {label_dropout} "
                             f"with num_classes={self.num_classes}")
        self.sde: SDE = get_sde(sde, **(sde_kwargs or {}))
        self.loss = build_loss(loss)
        self.loss.check(self.sde)
        self.parameterization = check_choice("parameterization", parameterization, PARAMETERIZATIONS)
        if compile_net:
            if parameterization == "energy" or self.loss.differentiates_score:
                raise ValueError(f"compile_net=True does not support the {parameterization!r} parameterization with "
                                 f"the {type(self.loss).__name__} (compiled graphs have no double backward); "
                                 f"use a score network with dsm, smld or ddpm")
            self.net.compile(**({"backend": compile_net} if isinstance(compile_net, str) else {}))
        self.lr = check_number("lr", lr, positive=True)
        check_number("weight_decay", weight_decay, nonneg=True)
        check_int("warmup_steps", warmup_steps, minimum=0)
        if grad_clip is not None:
            check_number("grad_clip", grad_clip, positive=True)
        self.sampler = check_sampler(sampler or {"method": "pc"}, self.sde)
        check_int("sample_seed", sample_seed, minimum=0)
        check_int("val_sample_images", val_sample_images, minimum=0)
        self.data_shape = tuple(getattr(self.net, "data_shape", ())) or None
        # save_hyperparameters reads this frame's arguments: net and loss are saved as the plain
        # class_path/init_args data that checkpoints may hold and build_net / build_loss rebuild
        net, loss, sampler = net_config(self.net), LOSSES.config_of(self.loss), self.sampler
        self.save_hyperparameters()

    # -- the score ------------------------------------------------------------------------------
    @property
    def null_label(self) -> Optional[int]:
        """The label index that means "no label" (the unconditional score), or None if unconditional."""
        return self.num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Score s(x, t) (like x) for x (B, ...) and t (B,) in [0, T] (a float is broadcast; t takes x's dtype);
        labels (B,) for a class-conditional model (None or ``null_label``: the unconditional score)."""
        t = self.sde.check_t(t, x)
        if labels is not None and self.num_classes is None:
            raise ValueError("this ScoreModule is unconditional (num_classes=None): it takes no labels")
        t_net = time_input(self.hparams.time_input, t, self.sde)
        args = (t_net,) if self.num_classes is None else (t_net, labels)
        if self.parameterization == "energy":
            need_graph = x.requires_grad or self.training
            with torch.enable_grad():
                xg = x if x.requires_grad else x.detach().requires_grad_(True)
                energy = self.net(xg, *args)
                out = -torch.autograd.grad(energy.sum(), xg, create_graph=need_graph)[0]
        else:
            out = self.net(x, *args)
        if self.hparams.scale_by_sigma:
            _, sigma = self.sde.alpha_sigma(t)
            if bool((sigma == 0).any()):
                raise ValueError(f"scale_by_sigma divides the score by sigma(t) = 0 at t = 0 ({self.sde.name!r} SDE); "
                                 f"evaluate it at t > 0 (samplers stop at eps = {self.sde.default_eps:g})")
            out = out / bcast(sigma, out)
        return out

    def energy(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Unnormalised energy E(x, t) (B,) with score = -grad_x E (energy parameterization only)."""
        if self.parameterization != "energy":
            raise ValueError("energy() needs parameterization='energy'")
        e = self.net(x, time_input(self.hparams.time_input, t, self.sde))
        if self.hparams.scale_by_sigma:
            e = e / self.sde.alpha_sigma(t)[1]
        return e

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.trainer.is_global_zero:  # not at the first save, after training steps
            for cb in self.trainer.checkpoint_callbacks:
                if getattr(cb, "dirpath", None):
                    check_writable_dir(cb.dirpath, "the checkpoint dirpath")

    # -- training -------------------------------------------------------------------------------
    def _split(self, batch) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(x, labels) of a batch: a tensor, or (x, labels) from a labelled DataModule.  An unconditional
        model ignores labels; a conditional one needs them."""
        x, labels = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
        if self.num_classes is None:
            return x, None
        if labels is None:
            raise ValueError("a class-conditional ScoreModule (num_classes set) needs batches (x, labels); "
                             "this DataModule yields no labels")
        return x, labels

    def _loss(self, batch, drop_labels: bool = False) -> Tuple[torch.Tensor, int]:
        x, labels = self._split(batch)
        if labels is not None and drop_labels and self.label_dropout:
            drop = torch.rand(labels.shape, device=labels.device) < self.label_dropout
            labels = torch.where(drop, torch.full_like(labels, self.null_label), labels)
        return self.loss(self, x, labels=labels).mean(), x.shape[0]

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, n = self._loss(batch, drop_labels=True)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss ({loss.item()}) at global step {self.global_step}; "
                                     f"lower lr, clip gradients or check the data")
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=n)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        with torch.enable_grad():  # ssm/ism/energy need input gradients
            loss, n = self._loss(batch)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=n)

    def test_step(self, batch, batch_idx: int) -> None:
        with torch.enable_grad():
            loss, n = self._loss(batch)
        self.log("test/loss", loss, sync_dist=True, batch_size=n)

    def on_validation_epoch_end(self) -> None:
        n = self.hparams.val_sample_images
        if not n or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        from .callbacks import log_samples_picture

        x = self.generate(n, seed=self.hparams.sample_seed)
        log_samples_picture(self.trainer, self, x, f"epoch{self.current_epoch:03d}")

    def configure_optimizers(self):
        return adam_with_warmup(self, self.lr, self.hparams.weight_decay, self.hparams.warmup_steps)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        clip = gradient_clip_val if gradient_clip_val is not None else self.hparams.grad_clip
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")

    # -- sampling -------------------------------------------------------------------------------
    def generate(self, n: int, seed: int = 0, **overrides) -> torch.Tensor:
        """Draw n samples (model space) with the configured sampler and a seeded generator.  A sampler
        ``labels`` entry (conditional models) is an int or a list, cycled over the n samples."""
        opts = {**self.sampler, **overrides}
        method = opts.pop("method", "pc")
        if isinstance(opts.get("labels"), (list, tuple)):
            cycle = torch.as_tensor(opts["labels"], dtype=torch.long)
            opts["labels"] = cycle[torch.arange(n) % len(cycle)].to(self.device)
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
        return load_checked(cls, path, map_location, upgrade_hparams)
