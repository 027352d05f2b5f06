"""Image DataModules without torchvision: a folder of images (PIL) and CIFAR-10's python batch files.

8-bit images are 256 levels per channel, uniformly dequantized as the digits are, x_data = (k + u) / 256,
then mapped to model space: [-1, 1] with ``centered`` (the paper's centering, 2 x - 1), else [0, 1].  The
``scaler`` then gives bits/dim in data space with the paper code's offset (7 bits centred, 8 in [0, 1]:
``transforms``).  Training images are decoded per access (large folders need not fit in memory; use
``num_workers``), with fresh noise and optional random horizontal flips; evaluation images have a fixed
seeded noise.  Nothing downloads: the files must be on disk.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .checks import check_int, check_number
from .data import ArrayDataModule, Dequantized
from .transforms import AffineScaler

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)


def _split(n: int, fractions: Tuple[float, float], seed: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded permutation of range(n) cut into (train, val, test) index tensors."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val, n_test = (int(f * n) for f in fractions)
    if n - n_val - n_test < 1:
        raise ValueError(f"{n} images leave none for training with val/test fractions {fractions}")
    return perm[n_val + n_test:], perm[n_test:n_test + n_val], perm[:n_test]


class _ImageFiles:
    """Lazily decoded images: uint8 (C, H, W) per index, centre-cropped to a square and resized when
    ``resolution`` is given."""

    def __init__(self, paths: Sequence[Path], channels: int, resolution: Optional[int]) -> None:
        self.paths, self.channels, self.resolution = list(paths), channels, resolution

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.paths[i]) as img:
            img = img.convert("RGB" if self.channels == 3 else "L")
            if self.resolution is not None:
                w, h = img.size
                s = min(w, h)
                img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
                img = img.resize((self.resolution, self.resolution), Image.BICUBIC)
            a = np.asarray(img, dtype=np.uint8)
        a = a[:, :, None] if a.ndim == 2 else a
        return torch.from_numpy(a.copy()).permute(2, 0, 1)


class _ImageDataModule(ArrayDataModule):
    """Base for 8-bit image sets: splits hold indexable uint8 images (C, H, W)."""

    num_levels = 256

    def __init__(self, batch_size: int, centered: bool, random_flip: bool, predict_samples: int,
                 predict_batch_size: int, num_workers: int, seed: int) -> None:
        super().__init__(batch_size, predict_samples, predict_batch_size, num_workers, seed)
        self.random_flip = bool(random_flip)
        self.scaler = AffineScaler(2.0, -1.0, self.num_levels) if centered else AffineScaler(1.0, 0.0, self.num_levels)

    @property
    def data_shape(self) -> Tuple[int, ...]:
        if self.train is None:
            self.setup("fit")
        return tuple(self.train[0].shape)

    def _dataset(self, data, labels: Optional[torch.Tensor], train: bool):
        return Dequantized(data, self.scaler, fresh=train, seed=self.seed + 1, labels=labels,
                           flip=train and self.random_flip)

    def dequantized(self, split: str = "test", limit: Optional[int] = None) -> torch.Tensor:
        """The first ``limit`` images of a split in model space with their fixed dequantization noise."""
        self.setup()
        ds = self._dataset(getattr(self, split), None, False)
        return torch.stack([ds[i] for i in range(min(len(ds), limit or len(ds)))])


class ImageFolderDataModule(_ImageDataModule):
    """Images under ``root``: in class sub-folders (labels = sorted sub-folder names) or all directly in it
    (no labels).  ``resolution``: centre-crop to a square and resize to it (bicubic); without it every
    image must have the same size.  ``channels``: 3 (RGB) or 1 (grey).  Seeded train/val/test split."""

    def __init__(self, root: str, resolution: Optional[int] = None, channels: int = 3, centered: bool = True,
                 random_flip: bool = True, val_fraction: float = 0.05, test_fraction: float = 0.05,
                 batch_size: int = 128, predict_samples: int = 64, predict_batch_size: int = 64,
                 num_workers: int = 0, seed: int = 0) -> None:
        super().__init__(batch_size, centered, random_flip, predict_samples, predict_batch_size, num_workers, seed)
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"image folder {str(self.root)!r} does not exist")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
        self.channels = channels
        self.resolution = None if resolution is None else check_int("resolution", resolution, minimum=1)
        self.fractions = (check_number("val_fraction", val_fraction, nonneg=True),
                          check_number("test_fraction", test_fraction, nonneg=True))
        self.class_names: List[str] = []

    def _files(self) -> Tuple[List[Path], Optional[torch.Tensor]]:
        def images(folder: Path) -> List[Path]:
            return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

        top = images(self.root)
        classes = {p: images(p) for p in sorted(self.root.iterdir()) if p.is_dir() and not p.name.startswith(".")}
        if top and any(classes.values()):
            raise ValueError(f"{str(self.root)!r} holds images both directly and in sub-folders; put them all in "
                             f"class sub-folders (labelled) or all directly in it (unlabelled)")
        if top:
            return top, None
        paths, labels = [], []
        for k, found in enumerate(classes.values()):
            paths += found
            labels += [k] * len(found)
        if not paths:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {str(self.root)!r} or its sub-folders")
        self.class_names = [c.name for c in classes]
        return paths, torch.tensor(labels, dtype=torch.long)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train is not None:
            return
        paths, labels = self._files()
        if self.resolution is None:
            self._check_same_size(paths)
        tr, va, te = _split(len(paths), self.fractions, self.seed)
        self.train, self.val, self.test = (_ImageFiles([paths[i] for i in idx], self.channels, self.resolution)
                                           for idx in (tr, va, te))
        if labels is not None:
            self.labels = {"train": labels[tr], "val": labels[va], "test": labels[te]}
            self.num_classes = len(self.class_names)

    @staticmethod
    def _check_same_size(paths: Iterable[Path]) -> None:
        from PIL import Image

        sizes = {}
        for p in paths:
            with Image.open(p) as img:
                sizes.setdefault(img.size, p)
        if len(sizes) > 1:
            (a, pa), (b, pb) = list(sizes.items())[:2]
            raise ValueError(f"images differ in size ({pa.name}: {a}, {pb.name}: {b}); give resolution=... to "
                             f"crop and resize them to one square size")


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles CIFAR-10's batch files: dicts, lists, strings, numbers and numpy arrays; any other class
    (a pickle that would import or call something) is refused."""

    # _codecs.encode: how protocol-2 pickles written by Python 3 spell bytes (it only encodes a string)
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR-10 batch file holds only arrays "
                                     f"and lists")


def read_cifar10_batch(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """One python batch file -> (images uint8 (N, 3, 32, 32), labels int64 (N,))."""
    with open(path, "rb") as f:
        batch = _PlainUnpickler(f, encoding="bytes").load()
    try:
        data, labels = batch[b"data"], batch[b"labels"]
    except (TypeError, KeyError) as err:
        raise ValueError(f"{str(path)!r} is not a CIFAR-10 python batch (no b'data' / b'labels')") from err
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ValueError(f"{str(path)!r}: expected uint8 data (N, 3072) and N labels, got {data.dtype} "
                         f"{data.shape} and {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


class CIFAR10DataModule(_ImageDataModule):
    """CIFAR-10 from the python version's batch files in ``root`` (``data_batch_1`` .. ``data_batch_5``,
    ``test_batch``, as in cifar-10-python.tar.gz, extracted; nothing downloads).  Train: the 50 000 training
    images less a seeded ``val_fraction``; test: the 10 000 test images; labels always.  The paper trains
    with ``random_flip`` and evaluates bits/dim on the test set with uniform dequantization."""

    def __init__(self, root: str, centered: bool = True, random_flip: bool = True, val_fraction: float = 0.02,
                 batch_size: int = 128, predict_samples: int = 64, predict_batch_size: int = 64,
                 num_workers: int = 0, seed: int = 0) -> None:
        super().__init__(batch_size, centered, random_flip, predict_samples, predict_batch_size, num_workers, seed)
        self.root = Path(root)
        missing = [n for n in CIFAR10_TRAIN + CIFAR10_TEST if not (self.root / n).is_file()]
        if missing:
            raise ValueError(f"CIFAR-10 folder {str(self.root)!r} lacks {', '.join(missing)}: it must hold the python "
                             f"batch files {', '.join(CIFAR10_TRAIN + CIFAR10_TEST)} (cifar-10-python.tar.gz, "
                             f"extracted: the cifar-10-batches-py folder); nothing is downloaded")
        self.val_fraction = check_number("val_fraction", val_fraction, nonneg=True)
        self.num_classes = 10

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train is not None:
            return
        train = [read_cifar10_batch(self.root / n) for n in CIFAR10_TRAIN]
        x, y = np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train])
        tx, ty = read_cifar10_batch(self.root / CIFAR10_TEST[0])
        tr, va, _ = _split(len(x), (self.val_fraction, 0.0), self.seed)
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        self.train, self.val, self.test = x[tr], x[va], torch.from_numpy(tx)
        self.labels = {"train": y[tr], "val": y[va], "test": torch.from_numpy(ty)}
