"""Generated image files for the image DataModule and config tests (nothing downloads)."""
import pickle

import numpy as np
from PIL import Image

from sde_score.image_data import CIFAR10_TEST, CIFAR10_TRAIN


def write_png_folder(root, n_per_class=6, size=16, classes=("cats", "dogs"), seed=0):
    """Random RGB PNGs in class sub-folders (or directly in root with classes=None); returns the levels."""
    rng = np.random.default_rng(seed)
    out = {}
    for c in classes or [None]:
        folder = root / c if c else root
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(a).save(folder / f"{i:03d}.png")
            out[(c, i)] = a
    return out


def write_cifar10(root, n=20, seed=0):
    """CIFAR-10's python layout: pickled dicts with bytes keys, uint8 (N, 3072) rows, label lists."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name in CIFAR10_TRAIN + CIFAR10_TEST:
        batch = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, n).tolist(),
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}
        with open(root / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
