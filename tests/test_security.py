"""Checkpoints are data: loading one never imports or calls anything that is not allow-listed.

Each payload is a real checkpoint edited the way an attacker would (``torch.save`` of its dict), then
loaded through ``ScoreModule.load`` and through ``sde-score predict --ckpt_path``: none of them runs,
each gives a clear error naming what was refused.
"""
import copy
import os
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from torch import nn

from sde_score.checkpoints import read_checkpoint
from sde_score.cli import main as cli_main
from sde_score.data import Toy2DDataModule
from sde_score.models import ScoreMLP, register_net
from sde_score.module import ScoreModule, build_net


@pytest.fixture(scope="module")
def real_ckpt(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ckpt")
    pl.seed_everything(0)
    model = ScoreModule(ScoreMLP((2,), width=8, depth=1), sde="vp", sampler={"method": "pc", "steps": 10})
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(root))
    trainer.fit(model, Toy2DDataModule(n_train=256, n_val=64, n_test=64, batch_size=64))
    path = root / "real.ckpt"
    trainer.save_checkpoint(path)
    return path


def _payload(real: Path, tmp_path: Path, edit, name: str = "evil.ckpt") -> Path:
    ckpt = torch.load(real, weights_only=True)
    edit(ckpt["hyper_parameters"])
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


def _system(marker: Path) -> dict:
    return {"class_path": "os.system", "init_args": {"command": f"touch {marker}"}}


class _Reduce:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _predict_config(tmp_path: Path) -> Path:
    cfg = {"trainer": {"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
                       "default_root_dir": str(tmp_path)},
           "model": {"net": {"class_path": "sde_score.models.ScoreMLP",
                             "init_args": {"data_shape": [2], "width": 8, "depth": 1}},
                     "sde": "vp", "sampler": {"method": "pc", "steps": 10}},
           "data": {"class_path": "sde_score.data.Toy2DDataModule",
                    "init_args": {"n_train": 256, "n_val": 64, "n_test": 64, "predict_samples": 8,
                                  "predict_batch_size": 8}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _both_loaders_refuse(path: Path, tmp_path: Path, marker: Path, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ScoreModule.load(str(path))
    assert not marker.exists(), "the payload ran under ScoreModule.load"
    with pytest.raises(ValueError, match=match):
        cli_main(["predict", "--config", str(_predict_config(tmp_path)), "--ckpt_path", str(path)])
    assert not marker.exists(), "the payload ran under sde-score predict"


def test_net_class_path_callable_never_runs(real_ckpt, tmp_path):
    marker = tmp_path / "pwned"
    path = _payload(real_ckpt, tmp_path, lambda h: h.update(net=_system(marker)))
    _both_loaders_refuse(path, tmp_path, marker, "'os.system' is not an allowed class")


@pytest.mark.parametrize("where", ["sde_kwargs", "loss", "sampler", "top"])
def test_nested_class_path_never_runs(real_ckpt, tmp_path, where):
    marker = tmp_path / "pwned"

    def edit(h):
        if where == "top":
            h["_class_path"] = "os.system"
        else:
            h[where] = {**(h.get(where) or {}), "evil": _system(marker)}

    path = _payload(real_ckpt, tmp_path, edit)
    _both_loaders_refuse(path, tmp_path, marker, "is not an allowed class")


def test_class_path_to_a_module_with_import_side_effects_is_not_imported(real_ckpt, tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    pkg = tmp_path / "sitepkg"
    pkg.mkdir()
    (pkg / "sde_evil_net.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\nimport torch\n"
        "class Net(torch.nn.Module):\n    def __init__(self, **kw):\n        super().__init__()\n")
    monkeypatch.syspath_prepend(str(pkg))
    path = _payload(real_ckpt, tmp_path, lambda h: h.update(net={"class_path": "sde_evil_net.Net", "init_args": {}}))
    _both_loaders_refuse(path, tmp_path, marker, "'sde_evil_net.Net' is not an allowed class")
    assert "sde_evil_net" not in sys.modules


def test_reduce_pickle_is_refused(real_ckpt, tmp_path):
    marker = tmp_path / "pwned"
    path = _payload(real_ckpt, tmp_path, lambda h: h.update(sampler={"method": _Reduce(marker)}))
    assert not marker.exists()
    _both_loaders_refuse(path, tmp_path, marker, "pickled objects")


def test_untrusted_lightning_instantiator_is_refused(real_ckpt, tmp_path):
    path = _payload(real_ckpt, tmp_path, lambda h: h.update(_instantiator="os.system"))
    with pytest.raises(ValueError, match="_instantiator"):
        ScoreModule.load(str(path))


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", "truncated"])
def test_truncated_or_empty_checkpoint_is_named(real_ckpt, tmp_path, content):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(real_ckpt.read_bytes()[:4096] if content == "truncated" else content)
    with pytest.raises(ValueError, match=r"bad\.ckpt.* is truncated or not a checkpoint"):
        ScoreModule.load(str(path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ScoreModule.load(str(tmp_path / "missing.ckpt"))


def test_build_net_resolves_by_lookup_only():
    assert isinstance(build_net({"class_path": "sde_score.models.ScoreMLP", "init_args": {"width": 8}}), ScoreMLP)
    assert isinstance(build_net({"class_path": "sde_score.models.mlp.ScoreMLP"}), ScoreMLP)
    assert isinstance(build_net({"class_path": "score_mlp"}), ScoreMLP)
    for bad in ("os.system", "torch.nn.Linear", "builtins.eval", 3):
        with pytest.raises(ValueError, match="is not a registered network"):
            build_net({"class_path": bad, "init_args": {}})
    with pytest.raises(ValueError, match="unknown keys"):
        build_net({"class_path": "score_mlp", "init_args": {}, "extra": 1})


def test_real_checkpoint_loads_and_a_registered_user_net_round_trips(real_ckpt, tmp_path):
    loaded = ScoreModule.load(str(real_ckpt))
    ckpt, _ = read_checkpoint(real_ckpt)
    for k, v in loaded.state_dict().items():
        torch.testing.assert_close(v, ckpt["state_dict"][k])

    class UnregisteredNet(nn.Module):
        def __init__(self, width: int = 4) -> None:
            super().__init__()
            self.init_args = {"width": width}
            self.lin = nn.Linear(2, 2)

        def forward(self, x, t):
            return self.lin(x)

    with pytest.raises(ValueError, match="not a registered network"):
        ScoreModule(UnregisteredNet(), sde="vp")

    @register_net("test_security_user_net")
    class UserNet(UnregisteredNet):
        pass

    model = ScoreModule(UserNet(), sde="vp")
    path = tmp_path / "user.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": copy.deepcopy(dict(model.hparams)),
                "pytorch-lightning_version": pl.__version__}, path)
    back = ScoreModule.load(str(path))
    assert type(back.net) is UserNet
