"""PredictionWriter: the samples.npz / samples.png pair is never mismatched, whatever point a kill hits."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sde_score import callbacks
from sde_score.callbacks import PredictionWriter


class Killed(BaseException):
    """Stands for a kill -9 at that point: nothing after it runs."""


def _previous_run(out):
    out.mkdir()
    np.savez(out / "samples.npz", samples=np.zeros((2, 2)))
    (out / "samples.png").write_bytes(b"old picture")


def _merge(out, tmp_path):
    shard = tmp_path / "shard0.pt"
    torch.save({"index": torch.tensor([0]), "samples": torch.ones(3, 2), "sizes": torch.tensor([3])}, shard)
    PredictionWriter(str(out))._merge(SimpleNamespace(datamodule=None), [shard])


def _pair(out):
    npz = np.load(out / "samples.npz")["samples"] if (out / "samples.npz").exists() else None
    png = (out / "samples.png").read_bytes() if (out / "samples.png").exists() else None
    return npz, png


def test_both_files_are_new_after_a_run(tmp_path):
    out = tmp_path / "predict"
    _previous_run(out)
    _merge(out, tmp_path)
    npz, png = _pair(out)
    assert npz.shape == (3, 2) and png.startswith(b"\x89PNG")
    assert sorted(p.name for p in out.iterdir()) == ["samples.npz", "samples.png"]  # nothing staged is left


@pytest.mark.parametrize("where", ["save_samples_picture", "_publish"])
def test_a_kill_never_leaves_a_new_npz_beside_an_old_png(tmp_path, monkeypatch, where):
    out = tmp_path / "predict"
    _previous_run(out)

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(callbacks, where, killed)
    with pytest.raises(Killed):
        _merge(out, tmp_path)
    npz, png = _pair(out)
    if npz.shape == (3, 2):  # the new samples landed: the old picture must be gone
        assert png is None
    else:  # the old pair stands, untouched
        assert png == b"old picture"
