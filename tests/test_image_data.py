"""Image DataModules on generated files: PNG folders (PIL) and CIFAR-10 python batches (nothing downloads)."""
import math
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from image_files import write_cifar10, write_png_folder
from sde_score.image_data import CIFAR10DataModule, ImageFolderDataModule


def test_image_folder_labels_levels_and_dequantization(tmp_path):
    levels = write_png_folder(tmp_path)
    dm = ImageFolderDataModule(str(tmp_path), val_fraction=0.25, test_fraction=0.25, batch_size=4, random_flip=False)
    dm.setup()
    assert dm.data_shape == (3, 16, 16) and dm.num_classes == 2 and dm.class_names == ["cats", "dogs"]
    assert (len(dm.train), len(dm.val), len(dm.test)) == (6, 3, 3)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 16, 16) and y.dtype == torch.long and set(y.tolist()) <= {0, 1}
    assert x.min() >= -1 and x.max() < 1  # centred: 2 (k + u) / 256 - 1
    # every dequantized value falls back into its 8-bit level, and labels follow the sub-folders
    test = dm.dequantized("test")
    k = torch.floor((test + 1) / 2 * 256).to(torch.uint8)
    for i, path in enumerate(dm.test.paths):
        cls = path.parent.name
        assert torch.equal(k[i], torch.from_numpy(levels[(cls, int(path.stem))]).permute(2, 0, 1))
        assert dm.labels["test"][i] == dm.class_names.index(cls)
    assert torch.equal(test, dm.dequantized("test"))  # evaluation noise is fixed


def test_random_flips_mirror_training_images_only(tmp_path):
    write_png_folder(tmp_path, classes=None, n_per_class=8)
    dm = ImageFolderDataModule(str(tmp_path), val_fraction=0.0, test_fraction=0.0, centered=False)
    dm.setup()
    ds = dm._dataset(dm.train, None, True)
    k = dm.train[0].float()
    torch.manual_seed(0)
    seen = set()
    for _ in range(20):
        levels = torch.floor(ds[0] * 256)
        if torch.equal(levels, k):
            seen.add("same")
        elif torch.equal(levels, k.flip(-1)):
            seen.add("flipped")
        else:
            raise AssertionError("a training image is neither the image nor its mirror")
    assert seen == {"same", "flipped"}


def test_resolution_crops_and_resizes_and_grey(tmp_path):
    Image.fromarray(np.full((12, 20, 3), 200, np.uint8)).save(tmp_path / "wide.png")
    Image.fromarray(np.full((30, 30, 3), 10, np.uint8)).save(tmp_path / "square.jpg")
    with pytest.raises(ValueError, match="differ in size.*resolution"):
        ImageFolderDataModule(str(tmp_path), val_fraction=0, test_fraction=0).setup()
    dm = ImageFolderDataModule(str(tmp_path), resolution=8, channels=1, val_fraction=0, test_fraction=0,
                               centered=False)
    assert dm.data_shape == (1, 8, 8)
    x = dm.dequantized("train")
    assert sorted(torch.floor(x * 256).unique().tolist()) == [10.0, 200.0]


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ImageFolderDataModule(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="no images"):
        ImageFolderDataModule(str(tmp_path)).setup()
    write_png_folder(tmp_path, n_per_class=2)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "loose.png")
    with pytest.raises(ValueError, match="both directly and in sub-folders"):
        ImageFolderDataModule(str(tmp_path)).setup()
    with pytest.raises(ValueError, match="channels must be 1"):
        ImageFolderDataModule(str(tmp_path), channels=4)


def test_cifar10_reads_the_python_batches(tmp_path):
    write_cifar10(tmp_path)
    dm = CIFAR10DataModule(str(tmp_path), val_fraction=0.1, batch_size=8)
    dm.setup()
    assert dm.data_shape == (3, 32, 32) and dm.num_classes == 10
    assert (len(dm.train), len(dm.val), len(dm.test)) == (90, 10, 20)
    with open(tmp_path / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    torch.testing.assert_close(dm.test[3], torch.from_numpy(raw[b"data"][3].reshape(3, 32, 32)))
    assert dm.labels["test"].tolist() == raw[b"labels"]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 32, 32) and y.shape == (8,)


def test_cifar10_missing_files_and_foreign_pickles_are_refused(tmp_path):
    with pytest.raises(ValueError, match="lacks data_batch_1, .*test_batch.*nothing is downloaded"):
        CIFAR10DataModule(str(tmp_path))
    write_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(tmp_path / "data_batch_3", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        CIFAR10DataModule(str(tmp_path)).setup()


@pytest.mark.parametrize("centered, offset", [(True, 7.0), (False, 8.0)])
def test_bits_per_dim_has_the_paper_code_offset(tmp_path, centered, offset):
    """score_sde's likelihood: bpd = -logp / (D ln 2) + 7 - inverse_scaler(-1), i.e. +7 for data centred to
    [-1, 1] (inverse_scaler(-1) = 0) and +8 for [0, 1] (inverse_scaler(-1) = -1), with x = (255 k/255 + u)/256."""
    write_cifar10(tmp_path, n=2)
    dm = CIFAR10DataModule(str(tmp_path), centered=centered)
    logp, d = torch.tensor([-5000.0, 1234.5]), 3072
    torch.testing.assert_close(dm.scaler.bits_per_dim(logp, d), -logp / (d * math.log(2)) + offset)
