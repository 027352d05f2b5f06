"""ClassifierModule: a noise-conditional classifier p_t(y | x_t) trained in Lightning, for classifier
guidance (Song et al. 2021, Sec. 5 and App. I.4; ``sde_score.guidance.classifier_guided``).

Each step perturbs a labelled batch with the SDE's kernel, x_t = alpha(t) x_0 + sigma(t) z at
t ~ U(eps, T), and minimises the cross-entropy of the network's logits at (x_t, t).

    sde-score-classifier fit --config experiments/configs/digits_classifier.yaml
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Union

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F

from .checks import check_eps, check_int, check_number
from .models.registry import build_net, net_config
from .module import adam_with_warmup, load_checked
from .sdes import SDE, bcast, get_sde


class ClassifierModule(pl.LightningModule):
    """``classifier(x, t) -> logits (B, num_classes)`` of the class of a noisy x_t.

    Args:
        net: a registered network returning (B, num_classes) logits (``noise_classifier`` for images,
            ``score_mlp`` with ``out_dim=num_classes`` for vectors), or its class_path/init_args config.
        sde, sde_kwargs: the SDE whose perturbation the classifier sees (that of the score model it guides).
        eps: smallest training time.  lr, weight_decay, warmup_steps: Adam with linear warm-up.
    """

    def __init__(self, net: Union[nn.Module, Dict[str, Any]], sde: str = "vp", sde_kwargs: Optional[dict] = None,
                 eps: float = 1e-5, lr: float = 1e-3, weight_decay: float = 0.0, warmup_steps: int = 0) -> None:
        super().__init__()
        self.net = build_net(net)
        self.sde: SDE = get_sde(sde, **(sde_kwargs or {}))
        self.eps = check_eps(eps, self.sde)
        self.lr = check_number("lr", lr, positive=True)
        check_number("weight_decay", weight_decay, nonneg=True)
        check_int("warmup_steps", warmup_steps, minimum=0)
        net = net_config(self.net)
        self.save_hyperparameters()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.sde.check_t(t, x))

    def _step(self, batch, stage: str) -> torch.Tensor:
        if not isinstance(batch, (tuple, list)):
            raise ValueError("ClassifierModule needs labelled batches (x, labels); this DataModule yields none")
        x, labels = batch[0], batch[1]
        t = self.eps + (self.sde.T - self.eps) * torch.rand(x.shape[0], device=x.device, dtype=x.dtype)
        mean, std = self.sde.marginal_prob(x, t)
        x_t = mean + bcast(std, x) * torch.randn_like(x)
        logits = self(x_t, t)
        if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(f"the network must return logits (B, num_classes), got {tuple(logits.shape)}")
        loss = F.cross_entropy(logits, labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite classifier loss at global step {self.global_step}")
        acc = (logits.argmax(1) == labels).float().mean()
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=x.shape[0], sync_dist=stage != "train")
        self.log(f"{stage}/acc", acc, prog_bar=True, batch_size=x.shape[0], sync_dist=stage != "train")
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self):
        return adam_with_warmup(self, self.lr, self.hparams.weight_decay, self.hparams.warmup_steps)

    @classmethod
    def load(cls, path: str, map_location: Any = "cpu") -> "ClassifierModule":
        """Load a checkpoint as plain data (see ``checkpoints.read_checkpoint``), in eval mode."""
        return load_checked(cls, path, map_location)
