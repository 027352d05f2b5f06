"""diffusers' ``UNet2DModel`` as a ScoreModule network (train it from YAML like the package's own).

diffusers is optional (``pip install -e ".[diffusers]"``); it is imported when the network is built.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import torch
from torch import nn

from ..checks import check_number
from .embeddings import network_labels
from .registry import register_net


@register_net("diffusers_unet")
class DiffusersUNet(nn.Module):
    """``net(x, t, labels=None) = UNet2DModel(x, time_scale * t, class_labels).sample``.

    Args:
        data_shape: (C, H, W) of one sample.
        unet: ``UNet2DModel`` keyword arguments (block_out_channels, layers_per_block, ...); sample_size,
            in_channels and out_channels follow data_shape.
        time_scale: diffusers' sinusoidal embedding expects DDPM's integer timesteps: t in [0, 1] is scaled by
            it (1000 by default).
        num_classes: class-conditional: one embedding per class plus the null label (``num_classes``).
    """

    def __init__(self, data_shape: Sequence[int] = (1, 8, 8), unet: Optional[Dict[str, Any]] = None,
                 time_scale: float = 1000.0, num_classes: Optional[int] = None) -> None:
        super().__init__()
        try:
            from diffusers import UNet2DModel
        except ImportError as err:  # pragma: no cover - diffusers is in the test extra
            raise ImportError("the 'diffusers_unet' network needs diffusers: pip install -e \".[diffusers]\"") from err
        self.data_shape = tuple(int(d) for d in data_shape)
        if len(self.data_shape) != 3:
            raise ValueError(f"DiffusersUNet needs data_shape (C, H, W), got {self.data_shape}")
        self.time_scale = check_number("time_scale", time_scale, positive=True)
        self.num_classes = num_classes
        self.init_args = dict(data_shape=list(self.data_shape), unet=dict(unet or {}), time_scale=time_scale,
                              num_classes=num_classes)
        kwargs = dict(unet or {})
        c, h, w = self.data_shape
        kwargs.update(sample_size=(h, w) if h != w else h, in_channels=c, out_channels=c)
        if num_classes is not None:
            kwargs["num_class_embeds"] = num_classes + 1  # the last one is the null label
        self.unet = UNet2DModel(**kwargs)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        class_labels = network_labels(self.num_classes, labels, x.shape[0], x.device)
        return self.unet(x, t * self.time_scale, class_labels=class_labels).sample
