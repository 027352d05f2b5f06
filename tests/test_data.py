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
    if name in ("ring8", "moons"):  # labelled: the mixture component, the moon
        batch, labels = batch
        assert dm.num_classes == {"ring8": 8, "moons": 2}[name] and labels.shape == (64,)
        assert labels.dtype == torch.long and labels.min() >= 0 and labels.max() < dm.num_classes
    else:
        assert dm.num_classes is None
    assert batch.shape == (64, 2)
    again = Toy2DDataModule(name, n_train=300, n_val=50, n_test=50)
    again.setup()
    assert torch.equal(dm.train, again.train)  # fixed seed


def test_digits_dequantization_and_scaler():
    dm = DigitsDataModule(batch_size=32)
    dm.setup()
    n = len(dm.train) + len(dm.val) + len(dm.test)
    assert n == 1797 and dm.data_shape == (1, 8, 8)
    x, labels = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert dm.num_classes == 10 and labels.shape == (32,)
    from sklearn.datasets import load_digits

    d = load_digits()  # each image's label is its sklearn target
    lookup = {tuple(img.astype(np.int64).flatten()): int(c) for img, c in zip(d.images, d.target)}
    for lev, c in zip(dm.test[:50], dm.labels["test"][:50]):
        assert lookup[tuple(lev.flatten().tolist())] == int(c)
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


def test_ring8_labels_are_the_components():
    dm = Toy2DDataModule("ring8", n_train=500, n_val=10, n_test=10)
    dm.setup()
    resp = dm.target.responsibilities(dm.train).argmax(1)
    assert (resp == dm.labels["train"]).float().mean() > 0.99  # modes 0.3 apart from radius 4: all but none


def test_tensor_datamodule_labels(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)).astype(np.float32), rng.integers(0, 4, 50)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    dm = TensorDataModule(str(tmp_path / "a.npz"), labels_key="y", val_fraction=0.0, test_fraction=0.0)
    xb, yb = next(iter(dm.train_dataloader() if dm.setup() is None else None))
    assert dm.num_classes == int(y.max()) + 1
    # each row keeps its own label through the shuffled split
    pairs = {tuple(np.round(r, 6)): int(c) for r, c in zip(x, y)}
    assert all(pairs[tuple(np.round(r.numpy(), 6))] == int(c) for r, c in zip(xb, yb))
    np.savez(tmp_path / "b.npz", x=x, y=y.astype(np.float32))
    with pytest.raises(ValueError, match="labels 'y' must be 50 integer class indices"):
        TensorDataModule(str(tmp_path / "b.npz"), labels_key="y").setup()
    with pytest.raises(ValueError, match="no labels_key 'z'"):
        TensorDataModule(str(tmp_path / "a.npz"), key="x", labels_key="z").setup()
