"""Feature extractors for sample-quality metrics (``sde_score.evaluation``): images (B, C, H, W) in [0, 1]
-> features (B, F).

- ``InceptionFeatures``: the 2048-d pool features of the Inception-v3 FID network, from a local TorchScript
  file (``inception-2015-12-05.pt`` of StyleGAN2-ADA / EDM, called as ``net(uint8 images, return_features=
  True)``); nothing downloads.  Images are quantized to 8 bits as a PNG would store them (values outside
  [0, 1] saturate there) and grey ones repeated to RGB.
- ``DigitsFeatureNet``: a small convolutional classifier of the 8x8 digits whose penultimate 128 features
  define "digits-FID" (``train_digits_feature_net`` trains it on the digits training split in seconds).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

from .checkpoints import load_plain
from .checks import check_int
from .io import atomic_path


class InceptionFeatures:
    """Inception-v3 FID features from a TorchScript file at ``path`` (e.g. EDM's ``inception-2015-12-05.pt``)."""

    def __init__(self, path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no Inception network at {str(path)!r}: give the local path of the TorchScript FID "
                             f"network (inception-2015-12-05.pt); nothing is downloaded")
        self.device = torch.device(device)
        self.net = torch.jit.load(str(path), map_location=self.device).eval()

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"images must have shape (B, 1 or 3, H, W), got {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        images = (x.to(self.device, torch.float32) * 255).round().clamp(0, 255).to(torch.uint8)
        return self.net(images, return_features=True).float()


class DigitsFeatureNet(nn.Module):
    """8x8 grey digits in [0, 1] -> 128 features (``forward``) -> 10 logits (``logits``)."""

    def __init__(self, width: int = 32, features: int = 128) -> None:
        super().__init__()
        self.init_args = dict(width=width, features=features)
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc = nn.Linear(2 * width * 16, features)
        self.head = nn.Linear(features, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.relu(self.conv2(h))
        return F.relu(self.fc(h.flatten(1)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self(x))

    def save(self, path: Union[str, Path]) -> None:
        with atomic_path(path) as tmp:
            torch.save({"init_args": self.init_args, "state_dict": self.state_dict()}, tmp)

    @classmethod
    def load(cls, path: Union[str, Path]) -> "DigitsFeatureNet":
        saved = load_plain(path)
        net = cls(**saved["init_args"])
        net.load_state_dict(saved["state_dict"])
        return net.eval()


def train_digits_feature_net(epochs: int = 40, seed: int = 0, batch_size: int = 64,
                             lr: float = 1e-3) -> Tuple[DigitsFeatureNet, float]:
    """Train ``DigitsFeatureNet`` on the digits training split (fresh dequantization noise per epoch) with
    cross-entropy and Adam.  Returns (the network in eval mode, its test-split accuracy)."""
    from .data import DigitsDataModule

    epochs = check_int("epochs", epochs)
    torch.manual_seed(seed)
    dm = DigitsDataModule(centered=False, seed=seed, batch_size=batch_size)
    dm.setup()
    net = DigitsFeatureNet()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(epochs):
        for x, y in dm.train_dataloader():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net.logits(x), y).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net.logits(dm.dequantized("test")).argmax(1) == dm.labels["test"]).float().mean().item()
    return net, acc


def digits_feature_net(path: Union[str, Path], seed: int = 0, epochs: int = 40) -> DigitsFeatureNet:
    """The digits-FID network saved at ``path``; trained (``train_digits_feature_net``) and saved there first
    when the file does not exist, so every later score uses the same features."""
    path = Path(path)
    if path.is_file():
        return DigitsFeatureNet.load(path)
    net, acc = train_digits_feature_net(epochs=epochs, seed=seed)
    print(f"trained the digits feature network: test accuracy {acc:.3f}; saved to {path}", flush=True)
    net.save(path)
    return net


def load_extractor(kind: str, path: Optional[Union[str, Path]] = None):
    """An extractor by name: "digits" (a saved ``DigitsFeatureNet``) or "inception" (TorchScript file)."""
    if kind == "digits":
        if path is None:
            raise ValueError("the digits extractor needs the path of a saved DigitsFeatureNet")
        return DigitsFeatureNet.load(path)
    if kind == "inception":
        if path is None:
            raise ValueError("the inception extractor needs the local path of inception-2015-12-05.pt")
        return InceptionFeatures(path)
    raise ValueError(f"unknown feature extractor {kind!r}; expected 'digits' or 'inception'")
