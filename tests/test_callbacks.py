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


def test_warmup_ema_is_the_paper_codes_average():
    """The saved weights are the EMA with decay_n = min(decay, (1 + n) / (10 + n)) of the weights after
    each optimizer step (AveragedModel copies the first ones)."""
    import pytorch_lightning as pl

    from sde_score.callbacks import WarmupEMA, warmup_ema_decay
    from sde_score.data import Toy2DDataModule
    from sde_score.module import ScoreModule

    class Record(pl.Callback):
        def __init__(self):
            self.weights = []

        def on_train_batch_end(self, trainer, module, outputs, batch, i):
            self.weights.append(module.net.state_dict()["out.2.weight"].clone())

    assert warmup_ema_decay(0.999, 0) == 0.1 and warmup_ema_decay(0.999, 1) == 2 / 11
    assert warmup_ema_decay(0.9, 10 ** 6) == 0.9
    pl.seed_everything(0)
    net = {"class_path": "score_mlp", "init_args": {"data_shape": [2], "width": 16, "depth": 1}}
    module = ScoreModule(net, sde="vp", lr=1e-2)
    rec = Record()
    trainer = pl.Trainer(max_steps=6, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         callbacks=[rec, WarmupEMA(decay=0.999)])
    trainer.fit(module, Toy2DDataModule(n_train=512, n_val=64, n_test=64, batch_size=64))
    ema = rec.weights[0]
    for n, w in enumerate(rec.weights[1:], start=1):
        d = warmup_ema_decay(0.999, n)
        ema = d * ema + (1 - d) * w
    torch.testing.assert_close(module.net.state_dict()["out.2.weight"], ema)  # the average is in the module at the end
    with pytest.raises(ValueError, match="decay must lie in"):
        WarmupEMA(decay=1.0)
