"""DataModules: splits, scaling/dequantization, validation of user files."""
import numpy as np
import pytest
import torch

from sde_score.data import DigitsDataModule, TensorDataModule, Toy2DDataModule


@pytest.mark.parametrize("name", ["ring8", "moons", "swiss_roll", "checkerboard"])
def test_toy_sets(name):
    dm = Toy2DDataModule(name, n_train=300, n_val=50, n_test=50, batch_size=64)
    dm.setup()
    assert dm.data_shape == (2,) and dm.train.shape == (300, 2) and torch.isfinite(dm.train).all()
    assert (dm.target is not None) == (name == "ring8")
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (64, 2)
    again = Toy2DDataModule(name, n_train=300, n_val=50, n_test=50)
    again.setup()
    assert torch.equal(dm.train, again.train)  # fixed seed


def test_digits_dequantization_and_scaler():
    dm = DigitsDataModule(batch_size=32)
    dm.setup()
    n = len(dm.train) + len(dm.val) + len(dm.test)
    assert n == 1797 and dm.data_shape == (1, 8, 8)
    x = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 8, 8) and x.min() >= -1 and x.max() <= 1
    # dequantized values map back into their integer bins
    test = dm.dequantized("test")
    levels = dm.scaler.to_data(test) * 17
    assert torch.equal(torch.floor(levels).long(), dm.test.long())
    assert torch.equal(test, dm.dequantized("test"))  # evaluation noise is fixed
    assert dm.scaler.num_levels == 17 and dm.scaler.scale == 2.0


def test_tensor_datamodule(tmp_path):
    x = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    np.savez(tmp_path / "a.npz", x=x)
    dm = TensorDataModule(str(tmp_path / "a.npz"))
    dm.setup()
    assert dm.data_shape == (3,) and len(dm.train) == 80
    torch.save(torch.from_numpy(x), tmp_path / "a.pt")
    assert TensorDataModule(str(tmp_path / "a.pt")).data_shape == (3,)


def test_tensor_datamodule_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        TensorDataModule(str(tmp_path / "missing.npz"))
    bad = np.ones((10, 2), dtype=np.float32)
    bad[3, 1] = np.nan
    np.savez(tmp_path / "nan.npz", x=bad)
    with pytest.raises(ValueError, match="contains 1 non-finite"):
        TensorDataModule(str(tmp_path / "nan.npz")).setup()
    np.savez(tmp_path / "two.npz", a=bad, b=bad)
    with pytest.raises(ValueError, match="choose one with key"):
        TensorDataModule(str(tmp_path / "two.npz")).setup()
    np.save(tmp_path / "flat.npy", np.ones(5, dtype=np.float32))
    with pytest.raises(ValueError, match=r"shape \(N, \.\.\.\)"):
        TensorDataModule(str(tmp_path / "flat.npy")).setup()
    with pytest.raises(ValueError, match="unknown toy data set 'spiral'"):
        Toy2DDataModule("spiral")
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction must be < 1"):
        DigitsDataModule(val_fraction=0.5, test_fraction=0.5)
