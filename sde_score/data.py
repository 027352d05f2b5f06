"""Lightning DataModules: toy 2-D sets and exact mixtures, scikit-learn's 8x8 digits, user arrays.

Every module exposes ``data_shape``, ``scaler`` (data <-> model space, for bits/dim) and, for exact
mixtures, ``target``.  Batches are tensors in model space, or (x, labels) where the data have labels
(``num_classes`` not None: digits, the exact mixtures' components, moons, a user's labels array).
``predict_dataloader`` yields (batch index, batch size) pairs: each prediction batch is sampled with its
own seed, so DDP ranks sample disjoint shards and the result does not depend on the number of processes.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .checks import check_finite, check_int, check_number
from .targets import TARGETS, GaussianMixture, get_target
from .transforms import IDENTITY, AffineScaler


class _PredictRequests(Dataset):
    def __init__(self, num_samples: int, batch_size: int) -> None:
        self.sizes = [min(batch_size, num_samples - i) for i in range(0, num_samples, batch_size)]

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, i: int):
        return torch.tensor([i, self.sizes[i]])


class ArrayDataModule(pl.LightningDataModule):
    """Base: train/val/test tensors already in model space (subclasses fill them in ``setup``)."""

    def __init__(self, batch_size: int = 256, predict_samples: int = 2000, predict_batch_size: int = 1000,
                 num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.batch_size = check_int("batch_size", batch_size)
        self.predict_samples = check_int("predict_samples", predict_samples)
        self.predict_batch_size = check_int("predict_batch_size", predict_batch_size)
        self.num_workers = check_int("num_workers", num_workers, minimum=0)
        self.seed = seed
        self.train: Optional[torch.Tensor] = None
        self.val: Optional[torch.Tensor] = None
        self.test: Optional[torch.Tensor] = None
        self.labels: Dict[str, torch.Tensor] = {}  # split -> (N,) class indices, where the data have them
        self.num_classes: Optional[int] = None
        self.scaler: AffineScaler = IDENTITY
        self.target: Optional[GaussianMixture] = None

    @property
    def data_shape(self) -> Tuple[int, ...]:
        if self.train is None:
            self.setup("fit")
        return tuple(self.train.shape[1:])

    def _set_labels(self, labels: Optional[torch.Tensor], sizes: Tuple[int, int, int]) -> None:
        """Split (N,) labels (train, val, test in that order) and set num_classes; None: no labels."""
        if labels is None:
            return
        labels = labels.long()
        a, b, _ = sizes
        self.labels = {"train": labels[:a], "val": labels[a:a + b], "test": labels[a + b:]}
        self.num_classes = int(labels.max()) + 1

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        data = getattr(self, split)
        return DataLoader(self._dataset(data, self.labels.get(split), shuffle), batch_size=self.batch_size,
                          shuffle=shuffle, num_workers=self.num_workers,
                          drop_last=shuffle and len(data) >= self.batch_size)

    def _dataset(self, data: torch.Tensor, labels: Optional[torch.Tensor], train: bool) -> Dataset:
        return TensorDataset(data, labels) if labels is not None else _Unwrap(TensorDataset(data))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(_PredictRequests(self.predict_samples, self.predict_batch_size), batch_size=None)


class _Unwrap(Dataset):
    def __init__(self, ds: TensorDataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds[i][0]


def _checkerboard(n: int, g: torch.Generator) -> torch.Tensor:
    x1 = torch.rand(n, generator=g) * 4 - 2
    x2 = torch.rand(n, generator=g) - torch.randint(0, 2, (n,), generator=g).float() * 2
    x2 = x2 + (torch.floor(x1) % 2)
    return torch.stack([x1, x2], 1) * 2


TOY_SETS = ("moons", "swiss_roll", "checkerboard")


class Toy2DDataModule(ArrayDataModule):
    """2-D data: any named exact mixture (``sde_score.targets``; then ``target`` is set for exact
    evaluation) or moons / swiss_roll / checkerboard (scikit-learn / generated)."""

    def __init__(self, name: str = "ring8", n_train: int = 20000, n_val: int = 2000, n_test: int = 2000,
                 batch_size: int = 512, predict_samples: int = 2000, predict_batch_size: int = 1000,
                 num_workers: int = 0, seed: int = 0) -> None:
        super().__init__(batch_size, predict_samples, predict_batch_size, num_workers, seed)
        if name not in TARGETS and name not in TOY_SETS:
            raise ValueError(f"unknown toy data set {name!r}; expected a target ({', '.join(TARGETS.names())}) "
                             f"or one of {', '.join(TOY_SETS)}")
        self.name = name
        self.sizes = tuple(check_int(k, v) for k, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)))

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train is not None:
            return
        n = sum(self.sizes)
        g = torch.Generator().manual_seed(self.seed)
        labels = None
        if self.name in TARGETS:
            self.target = get_target(self.name)
            if self.target.data_shape != (2,):
                raise ValueError(f"target {self.name!r} is not 2-D; use TensorDataModule or a mixture module")
            x, labels = self.target.sample(n, g, return_labels=True)  # label: the component
        elif self.name == "moons":
            from sklearn.datasets import make_moons

            x, y = make_moons(n, noise=0.05, random_state=self.seed)
            x, labels = torch.from_numpy(x).float() * 2, torch.from_numpy(y)
        elif self.name == "swiss_roll":
            from sklearn.datasets import make_swiss_roll

            x = torch.from_numpy(make_swiss_roll(n, noise=0.5, random_state=self.seed)[0][:, [0, 2]]).float() / 3
        else:
            x = _checkerboard(n, g)
        a, b, _ = self.sizes
        self.train, self.val, self.test = x[:a], x[a:a + b], x[a + b:]
        self._set_labels(labels, self.sizes)


class Dequantized(Dataset):
    """Integer levels k -> model space scale * (k + u) / K + shift, u ~ U[0, 1)^D: fresh noise per
    access for training, a fixed seeded draw for evaluation (reproducible bits/dim).  ``levels``: an
    integer tensor (N, ...) or any sequence of them (e.g. images decoded on access); ``flip``: mirror
    the last axis with probability 1/2 (random horizontal flips)."""

    def __init__(self, levels, scaler: AffineScaler, fresh: bool, seed: int,
                 labels: Optional[torch.Tensor] = None, flip: bool = False) -> None:
        self.levels, self.scaler, self.fresh, self.labels, self.flip = levels, scaler, fresh, labels, flip
        self.seed, self.fixed = seed, None
        if not fresh and torch.is_tensor(levels):
            self.fixed = torch.rand(levels.shape, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.levels)

    def _noise(self, i: int, shape) -> torch.Tensor:
        if self.fresh:
            return torch.rand(shape)
        if self.fixed is not None:
            return self.fixed[i]
        return torch.rand(shape, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + i))

    def __getitem__(self, i):
        k = self.levels[i].float()
        if self.flip and bool(torch.rand(()) < 0.5):
            k = k.flip(-1)
        x = self.scaler.to_model((k + self._noise(i, k.shape)) / self.scaler.num_levels)
        return x if self.labels is None else (x, self.labels[i])


class DigitsDataModule(ArrayDataModule):
    """scikit-learn's ``load_digits``: 1797 8x8 images with 17 grey levels (0..16), shipped inside
    scikit-learn (no download).  Fixed-seed train/val/test split; uniform dequantization; model space
    [-1, 1] (``centered``) or [0, 1].  ``scaler`` records the map for bits/dim in data space."""

    num_levels = 17

    def __init__(self, batch_size: int = 128, val_fraction: float = 0.1, test_fraction: float = 0.2,
                 centered: bool = True, predict_samples: int = 64, predict_batch_size: int = 64,
                 num_workers: int = 0, seed: int = 0) -> None:
        super().__init__(batch_size, predict_samples, predict_batch_size, num_workers, seed)
        self.val_fraction = check_number("val_fraction", val_fraction, nonneg=True)
        self.test_fraction = check_number("test_fraction", test_fraction, nonneg=True)
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")
        self.scaler = AffineScaler(2.0, -1.0, self.num_levels) if centered else AffineScaler(1.0, 0.0, self.num_levels)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train is not None:
            return
        from sklearn.datasets import load_digits

        digits = load_digits()
        levels = torch.from_numpy(digits.images.astype(np.int64)).unsqueeze(1)  # (1797, 1, 8, 8)
        perm = torch.randperm(len(levels), generator=torch.Generator().manual_seed(self.seed))
        n_val, n_test = int(self.val_fraction * len(levels)), int(self.test_fraction * len(levels))
        self.test_levels = levels[perm[:n_test]]
        self.val_levels = levels[perm[n_test:n_test + n_val]]
        self.train_levels = levels[perm[n_test + n_val:]]
        self.train, self.val, self.test = self.train_levels, self.val_levels, self.test_levels
        labels = torch.from_numpy(digits.target.astype(np.int64))[perm]  # test, val, train order
        self.labels = {"test": labels[:n_test], "val": labels[n_test:n_test + n_val], "train": labels[n_test + n_val:]}
        self.num_classes = 10

    def _dataset(self, data: torch.Tensor, labels: Optional[torch.Tensor], train: bool) -> Dataset:
        return Dequantized(data, self.scaler, fresh=train, seed=self.seed + 1, labels=labels)

    def dequantized(self, split: str = "test") -> torch.Tensor:
        """The evaluation split in model space with its fixed dequantization noise (N, 1, 8, 8)."""
        self.setup()
        data = {"train": self.train, "val": self.val, "test": self.test}[split]
        ds = self._dataset(data, None, False)
        return torch.stack([ds[i] for i in range(len(ds))])


class TensorDataModule(ArrayDataModule):
    """A user's array (N, ...) from ``.npz`` (key ``key`` or its only array), ``.npy`` or ``.pt``,
    already in model space, split by fixed seed.  Non-finite values or too few samples are errors.
    ``labels_key``: an ``.npz`` array of N class indices >= 0 (batches are then (x, labels))."""

    def __init__(self, path: str, key: Optional[str] = None, val_fraction: float = 0.1, test_fraction: float = 0.1,
                 batch_size: int = 256, predict_samples: int = 1000, predict_batch_size: int = 1000,
                 num_workers: int = 0, seed: int = 0, labels_key: Optional[str] = None) -> None:
        super().__init__(batch_size, predict_samples, predict_batch_size, num_workers, seed)
        self.path, self.key, self.labels_key = Path(path), key, labels_key
        if labels_key is not None and self.path.suffix != ".npz":
            raise ValueError(f"labels_key needs an .npz file holding the data and the labels, got {str(self.path)!r}")
        if not self.path.is_file():
            raise ValueError(f"data file {str(self.path)!r} does not exist")
        if self.path.suffix not in (".npz", ".npy", ".pt"):
            raise ValueError(f"data file must be .npz, .npy or .pt, got {str(self.path)!r}")
        self.fractions = (check_number("val_fraction", val_fraction, nonneg=True),
                          check_number("test_fraction", test_fraction, nonneg=True))

    def _load(self) -> torch.Tensor:
        if self.path.suffix == ".pt":
            x = torch.load(self.path, weights_only=True)
        elif self.path.suffix == ".npy":
            x = torch.from_numpy(np.load(self.path, allow_pickle=False))
        else:
            with np.load(self.path, allow_pickle=False) as z:
                keys = list(z.keys())
                data_keys = [k for k in keys if k != self.labels_key]
                key = self.key or (data_keys[0] if len(data_keys) == 1 else None)
                if key not in keys:
                    raise ValueError(f"{str(self.path)!r} holds arrays {keys}; choose one with key=...")
                x = torch.from_numpy(z[key])
                if self.labels_key is not None:
                    self._raw_labels = self._check_labels(z, keys, len(x))
        if not torch.is_tensor(x) or x.dim() < 2 or not x.is_floating_point():
            raise ValueError(f"data must be a floating array of shape (N, ...), got "
                             f"{getattr(x, 'dtype', type(x))} {tuple(getattr(x, 'shape', ()))}")
        return check_finite(f"data in {str(self.path)!r}", x.float())

    def _check_labels(self, z, keys, n: int) -> torch.Tensor:
        if self.labels_key not in keys:
            raise ValueError(f"{str(self.path)!r} holds arrays {keys}, no labels_key {self.labels_key!r}")
        y = z[self.labels_key]
        if y.shape != (n,) or y.dtype.kind not in "iu" or (y < 0).any():
            raise ValueError(f"labels {self.labels_key!r} must be {n} integer class indices >= 0, got "
                             f"{y.dtype} {y.shape}")
        return torch.from_numpy(y.astype(np.int64))

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train is not None:
            return
        self._raw_labels = None
        x = self._load()
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed))
        n_val, n_test = (math.floor(f * len(x)) for f in self.fractions)
        if len(x) - n_val - n_test < 1:
            raise ValueError(f"{len(x)} samples leave none for training with fractions {self.fractions}")
        x = x[perm]
        self.test, self.val, self.train = x[:n_test], x[n_test:n_test + n_val], x[n_test + n_val:]
        if self._raw_labels is not None:
            y = self._raw_labels[perm]
            self.labels = {"test": y[:n_test], "val": y[n_test:n_test + n_val], "train": y[n_test + n_val:]}
            self.num_classes = int(y.max()) + 1
